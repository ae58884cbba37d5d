"""Which generation a stored video belongs to: file names and the ``<file>.kling.json`` sidecar.

Why a sidecar: Kling names every video ``output.mp4`` and the API publishes no checksum, so
neither the name nor the size says whose video a file holds. Object metadata would, but only on
some backends (S3 and GCS differ, local disks and fsspec's memory store have none); a small JSON
file beside the video works on every ``pathlib.Path`` and ``ObjectStoragePath`` alike. It records
the generation id (or, for a bare ``video_url``, that URL without its signature), the size and
the SHA-256 of the bytes written, so a later run keeps a file only when it provably holds the
video it is asked for.

Ordering makes a crash harmless: the old sidecar is removed before a video is replaced, and the
new one is written (atomically, temp file then rename) only after the video is in place. A video
without a sidecar is therefore "of unknown origin": it is never kept as some generation's video
and never silently overwritten. :func:`choose_target` makes the one decision that follows: keep,
store beside, or replace.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import posixpath
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from kling_provider._api.network import redact_url
from kling_provider.exceptions import KlingDownloadError

log = logging.getLogger("kling_provider")

SIDECAR_SUFFIX = ".kling.json"
SIDECAR_FORMAT = 1
HASH_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class VideoIdentity:
    """What names one generation's video: its id when known, else its URL without the query."""

    generation_id: str | None
    video_url: str

    @classmethod
    def of(cls, generation_id: str | None, video_url: str) -> VideoIdentity:
        return cls(generation_id=generation_id or None, video_url=redact_url(video_url))

    @property
    def token(self) -> str:
        """A short file-name-safe token: the generation's UUID, or a hash of the URL."""
        if self.generation_id:
            head = self.generation_id.split(":", 1)[0]
            return _safe_token(head) or _digest(self.generation_id)
        return _digest(self.video_url)

    def describe(self) -> str:
        return (f"generation {self.generation_id!r}" if self.generation_id
                else f"video {self.video_url!r}")

    def matches(self, record: dict[str, Any]) -> bool:
        """The sidecar names this video (by generation id when both know one, else by URL)."""
        if self.generation_id and record.get("generation_id"):
            return bool(record["generation_id"] == self.generation_id)
        return bool(record.get("video_url") == self.video_url)


def default_file_name(identity: VideoIdentity, api_file_name: str | None) -> str:
    """The name a video gets in a folder destination: ``<generation uuid>.mp4``.

    The API's own name (always ``output.mp4``) only contributes its extension: two generations
    downloaded into one folder can never share a name.
    """
    extension = posixpath.splitext(unquote(api_file_name or "") or urlsplit(
        identity.video_url).path)[1].lower()
    if not extension or len(extension) > 6 or not extension[1:].isalnum():
        extension = ".mp4"
    return f"{identity.token}{extension}"


def beside_name(name: str, identity: VideoIdentity) -> str:
    """``clip.mp4`` -> ``clip.<generation uuid>.mp4``: where a video goes when ``clip.mp4`` is taken."""
    stem, extension = posixpath.splitext(name)
    return f"{stem}.{identity.token}{extension or '.mp4'}"


def sidecar_of(target: Any) -> Any:
    """The sidecar path of a stored video (works for ``Path`` and ``ObjectStoragePath``)."""
    return target.parent / f"{target.name}{SIDECAR_SUFFIX}"


def read_sidecar(target: Any) -> dict[str, Any] | None:
    """The sidecar's record, or ``None`` when missing or unreadable (then: unknown origin)."""
    sidecar = sidecar_of(target)
    try:
        if not sidecar.exists():
            return None
        with sidecar.open("rb") as handle:
            record = json.loads(handle.read().decode("utf-8"))
    except (OSError, ValueError):
        log.warning("Unreadable identity file %s: treating %s as of unknown origin", sidecar,
                    target)
        return None
    return record if isinstance(record, dict) else None


def write_sidecar(target: Any, identity: VideoIdentity, *, size: int, sha256: str,
                  model: str | None = None) -> None:
    """Record whose video ``target`` holds; temp file then rename, like the video itself."""
    record = {"format": SIDECAR_FORMAT, "generation_id": identity.generation_id,
              "video_url": identity.video_url, "size": size, "sha256": sha256, "model": model}
    sidecar = sidecar_of(target)
    temporary = target.parent / f".{sidecar.name}.{uuid.uuid4().hex}.part"
    with temporary.open("wb") as handle:
        handle.write(json.dumps(record, indent=1).encode("utf-8"))
    temporary.rename(sidecar)


def forget(target: Any) -> None:
    """Remove a sidecar before its video is replaced, so a crash never mislabels a file."""
    sidecar = sidecar_of(target)
    if sidecar.exists():
        sidecar.unlink()


def file_sha256(path: Any) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


Holding = Literal["absent", "this", "other"]


def holding(target: Any, identity: VideoIdentity, expected_size: int | None,
            size_of: Any) -> tuple[Holding, str]:
    """What ``target`` holds: nothing, this video (verified), or something else (and what)."""
    if not target.exists():
        return "absent", ""
    record = read_sidecar(target)
    if record is None:
        return "other", "a file of unknown origin (no identity file beside it)"
    if not identity.matches(record):
        owner = record.get("generation_id") or record.get("video_url")
        return "other", f"the video of {owner!r}"
    size = size_of(target)
    if size != record.get("size") or (expected_size is not None and size != expected_size):
        return "other", f"an incomplete or changed copy ({size} bytes)"
    if file_sha256(target) != record.get("sha256"):
        return "other", "a changed copy (its SHA-256 differs from the identity file)"
    return "this", ""


def _safe_token(text: str) -> str:
    return "".join(c for c in text if c.isalnum() or c in "-_")[:64]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def resolve_destination(destination: Any, file_name: str) -> Any:
    """A path or ObjectStoragePath; a trailing ``/`` or an existing directory gets ``file_name``."""
    if isinstance(destination, (str, os.PathLike)) and not _is_uri(str(destination)):
        text = os.fspath(destination)
        path = Path(text)
        if text.endswith(("/", os.sep)) or path.is_dir():
            return path / file_name
        return path
    if isinstance(destination, str):
        # Airflow's storage path: only for a URI destination
        from airflow.sdk import ObjectStoragePath

        target = ObjectStoragePath(destination)
        return target / file_name if destination.endswith("/") else target
    if str(destination).endswith("/") or (destination.exists() and destination.is_dir()):
        return destination / file_name
    return destination


def _is_uri(text: str) -> bool:
    return "://" in text


def _size_of(path: Any) -> int:
    stat = path.stat()
    return int(stat["size"] if isinstance(stat, Mapping) else stat.st_size)


def choose_target(target: Any, identity: VideoIdentity, expected_size: int | None,
                  overwrite: bool) -> tuple[Any, bool]:
    """Where to store the video, and whether a verified copy of it is already there.

    ``overwrite=False``: a file proven (sidecar + size + SHA-256) to hold this video is kept; a
    file holding anything else stays untouched and the video goes beside it, named after its
    generation, with a warning.
    """
    if overwrite:
        return target, False
    state, what = holding(target, identity, expected_size, _size_of)
    if state != "other":
        return target, state == "this"
    beside = target.parent / beside_name(target.name, identity)
    beside_state, beside_what = holding(beside, identity, expected_size, _size_of)
    if beside_state == "other":
        raise KlingDownloadError(
            f"Cannot store {identity.describe()}: {target} holds {what} and {beside} holds "
            f"{beside_what}. Neither is overwritten; pass overwrite=True or another destination."
        )
    if beside_state == "absent":
        log.warning("%s holds %s, not %s: storing it beside, at %s (overwrite=True replaces "
                    "instead).", target, what, identity.describe(), beside)
    return beside, beside_state == "this"
