"""Reading a stored video back, only when the provider provably stored it.

The URI comes from a recorded Asset event, which any DAG author can write. So a file is served
only when all of these hold (:func:`open_verified`):

- it lies under one of the roots the operator of the api-server configured (``[kling]
  video_roots``): local paths resolved first (a symlink out of a root is refused), object storage
  only under a root with the same scheme, connection id and bucket (so it is opened through the
  connection the download used);
- its ``<file>.kling.json`` sidecar, written by the download (:mod:`kling_provider._storage.identity`),
  names the same generation (or, like the event, none), the size of the open file, and the
  SHA-256 of its bytes (hashed from the handle that is then served);
- it is a regular file that starts like an MP4 (an ``ftyp`` box).

The poster frame is taken by ffmpeg from that same verified handle, the input format forced to
MP4, the file protocol only, with a timeout and an output cap.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import shutil
import stat
import subprocess  # nosec B404  # ffmpeg only, fixed arguments, see poster_jpeg
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast
from urllib.parse import unquote, urlsplit

from kling_provider._storage.identity import SIDECAR_SUFFIX, read_sidecar

CHUNK = 256 * 1024
#: A sidecar is a few hundred bytes; anything much larger is not one.
SIDECAR_LIMIT = 64 * 1024
POSTER_TIMEOUT = 30.0
#: One 480-pixel-wide JPEG frame is tens of kB.
POSTER_LIMIT = 2_000_000
_DIGESTS: OrderedDict[tuple[Any, ...], str] = OrderedDict()
_DIGESTS_KEPT = 256


class NotServedError(Exception):
    """Why a stored file is not served (for the log; the client learns only "no such video")."""


@dataclass(frozen=True)
class Roots:
    """Where the provider's downloads may be served from."""

    local: tuple[Path, ...] = ()
    remote: tuple[str, ...] = ()  #: ``scheme://[conn_id@]bucket/prefix/``, ending with "/"


def parse_roots(text: str) -> Roots:
    """``[kling] video_roots``: comma- or newline-separated absolute paths and storage URIs."""
    local: list[Path] = []
    remote: list[str] = []
    for item in (part.strip() for part in text.replace("\n", ",").split(",")):
        if item.startswith("file://"):
            item = unquote(urlsplit(item).path)
        if "://" in item:
            remote.append(item.rstrip("/") + "/")
        elif item and Path(item).is_absolute():
            local.append(Path(item))
    return Roots(tuple(local), tuple(remote))


def configured_roots() -> Roots:
    # Airflow's configuration: read when a video is served, not when the plugin loads
    from airflow.configuration import conf

    return parse_roots(conf.get("kling", "video_roots", fallback="") or "")


@dataclass
class Stored:
    """An open, verified stored video: serve ``handle``, ``size`` bytes (from the handle)."""

    handle: IO[bytes]
    size: int
    sha256: str
    local: bool = field(default=False)


def local_path(uri: str) -> Path | None:
    """The local file behind ``uri`` (``file://`` or a plain path), ``None`` for object storage."""
    parts = urlsplit(uri)
    if parts.scheme == "file":
        return Path(unquote(parts.path))
    return Path(uri) if not parts.scheme else None


def open_verified(uri: str, generation_id: str | None, roots: Roots) -> Stored:
    """Open the file ``uri`` names if the provider stored it there; else :class:`NotServedError`."""
    path = local_path(uri)
    if path is not None:
        return _open_local(uri, path, generation_id, roots)
    return _open_remote(uri, generation_id, roots)


def _open_local(uri: str, path: Path, generation_id: str | None, roots: Roots) -> Stored:
    if not path.is_absolute():
        raise NotServedError(f"{uri!r} is not an absolute file URI")
    try:
        resolved = path.resolve(strict=True)
    except (OSError, RuntimeError) as error:
        raise NotServedError(f"{uri!r} is gone ({type(error).__name__})") from None
    if uri != resolved.as_uri():  # the download records exactly this form; see store.owner_dag
        raise NotServedError(f"{uri!r} is not the resolved file URI {resolved.as_uri()!r}")
    if not any(resolved.is_relative_to(root.resolve()) for root in roots.local):
        raise NotServedError(f"{resolved} is under no [kling] video_roots entry")
    try:  # O_NOFOLLOW: a symlink swapped in after resolve() is not opened
        fd = os.open(resolved, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        raise NotServedError(f"{resolved} cannot be opened ({type(error).__name__})") from None
    handle = os.fdopen(fd, "rb")
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotServedError(f"{resolved} is not a regular file")
        record = _local_sidecar(resolved)
        key = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
        return _verified(handle, info.st_size, record, generation_id, key, local=True)
    except BaseException:
        handle.close()
        raise


def _local_sidecar(video: Path) -> dict[str, Any] | None:
    try:
        fd = os.open(video.parent / f"{video.name}{SIDECAR_SUFFIX}",
                     os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        text = handle.read(SIDECAR_LIMIT + 1)
    try:
        record = json.loads(text) if len(text) <= SIDECAR_LIMIT else None
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _remote_root(uri: str, roots: Roots) -> str | None:
    parts = urlsplit(uri)
    if parts.query or parts.fragment or posixpath.normpath(parts.path or "/") != parts.path:
        return None  # "..", "." or "//" in the key: not a form the download writes
    return next((root for root in roots.remote if uri.startswith(root)), None)


def _open_remote(uri: str, generation_id: str | None, roots: Roots) -> Stored:
    if _remote_root(uri, roots) is None:
        raise NotServedError(f"{uri!r} is under no [kling] video_roots entry")
    # Airflow's storage path: only for a remote video root
    from airflow.sdk import ObjectStoragePath

    # The connection id is part of the root (scheme://conn_id@bucket/...): the one the download
    # used, since the download records its destination with it.
    target = ObjectStoragePath(uri)
    try:
        # ObjectStoragePath.open is untyped; it returns fsspec's seekable binary file.
        handle = cast("IO[bytes]", target.open("rb"))  # type: ignore[no-untyped-call]
    except (OSError, ValueError) as error:
        raise NotServedError(f"{uri!r} is gone ({type(error).__name__})") from None
    try:
        size = getattr(handle, "size", None)
        if not isinstance(size, int):
            size = int(target.stat()["size"])
        details = getattr(handle, "details", None) or {}
        key = (uri, size, str(details.get("ETag") or details.get("mtime") or details.get(
            "created") or ""))
        return _verified(handle, size, read_sidecar(target), generation_id, key)
    except BaseException:
        handle.close()
        raise


def _verified(handle: IO[bytes], size: int, record: dict[str, Any] | None,
              generation_id: str | None, key: tuple[Any, ...], *, local: bool = False) -> Stored:
    if record is None:
        raise NotServedError("no identity sidecar: not stored by the provider")
    if record.get("generation_id") != generation_id:
        raise NotServedError(f"the sidecar names generation {record.get('generation_id')!r}, the "
                        f"event {generation_id!r}")
    if record.get("size") != size:
        raise NotServedError(f"the sidecar records {record.get('size')!r} bytes, the file has {size}")
    if not looks_like_mp4(handle):
        raise NotServedError("not an MP4 (no ftyp box)")
    digest = _DIGESTS.get(key) or _sha256(handle)
    if digest != record.get("sha256"):
        raise NotServedError("the file's SHA-256 differs from its sidecar")
    _DIGESTS[key] = digest
    _DIGESTS.move_to_end(key)
    while len(_DIGESTS) > _DIGESTS_KEPT:
        _DIGESTS.popitem(last=False)
    return Stored(handle, size, digest, local=local)


def _sha256(handle: IO[bytes]) -> str:
    digest = hashlib.sha256()
    handle.seek(0)
    while chunk := handle.read(CHUNK):
        digest.update(chunk)
    handle.seek(0)
    return digest.hexdigest()


def looks_like_mp4(handle: IO[bytes]) -> bool:
    head = handle.read(12)
    handle.seek(0)
    return len(head) >= 8 and head[4:8] == b"ftyp"


def iter_bytes(handle: IO[bytes], start: int, length: int) -> Iterator[bytes]:
    """``length`` bytes from ``start`` in bounded chunks; closes the handle when done."""
    try:
        handle.seek(start)
        remaining = length
        while remaining > 0:
            data = handle.read(min(CHUNK, remaining))
            if not data:
                return
            remaining -= len(data)
            yield data
    finally:
        handle.close()


def poster_jpeg(handle: IO[bytes], width: int = 480) -> bytes | None:
    """A frame near the start of a verified local video as JPEG, ``None`` if ffmpeg can't.

    ffmpeg reads the already-verified open file (``/dev/fd/N``), never a path again, as MP4
    only, through the file protocol only.
    """
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        return None
    fd = handle.fileno()
    try:
        result = subprocess.run(  # noqa: S603  # nosec B603  # fixed arguments, no shell
            [ffmpeg, "-nostdin", "-v", "error", "-protocol_whitelist", "file", "-f", "mp4",
             "-ss", "0.5", "-i", f"file:/dev/fd/{fd}", "-frames:v", "1",
             "-vf", f"scale={width}:-2", "-f", "image2", "-c:v", "mjpeg",
             "-fs", str(POSTER_LIMIT), "pipe:1"],
            capture_output=True, timeout=POSTER_TIMEOUT, check=False, pass_fds=(fd,))
    except subprocess.TimeoutExpired:
        return None
    jpeg = result.stdout
    ok = result.returncode == 0 and 0 < len(jpeg) <= POSTER_LIMIT and jpeg[:2] == b"\xff\xd8"
    return jpeg if ok else None
