"""Streaming, atomic, credential-scoped video download.

Used by :meth:`KlingHook.download_video` (and through it by the download operator). Generated
videos live on a CDN, not on the API host, so the API key is only attached to URLs on the API's
own origin, and redirects are followed by hand to re-check that on every hop. Bytes go to a
temporary sibling of the destination which is renamed into place only when the size matches and
the file starts with an MP4 ``ftyp`` box: a failure at any point leaves nothing at the destination.

Every stored video carries its identity (:mod:`kling_provider._storage.identity`): folder destinations
name it after its generation, and a ``<file>.kling.json`` sidecar records whose bytes it holds. An
existing file is kept only when it provably holds *this* video; a file holding anything else is
never reported as the new video: the new one is stored beside it (or replaces it with
``overwrite=True``). That decision is made again, under a claim on the name (:mod:`._lock`),
right before the finished file is renamed into place, so runs storing different generations
under one name at the same moment each end with their own video.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

import httpx

from kling_provider._api.network import redact_url, transport_cause
from kling_provider._checks import DEFAULT_MAX_BYTES
from kling_provider._storage.body import body_chunks
from kling_provider._storage.hashing import ThreadedSha256
from kling_provider._storage.hosts import HostPolicy, check_url
from kling_provider._storage.identity import (
    VideoIdentity,
    choose_target,
    default_file_name,
    forget,
    read_sidecar,
    resolve_destination,
    write_sidecar,
)
from kling_provider._storage.lock import claim
from kling_provider.exceptions import KlingDownloadError, KlingValidationError

log = logging.getLogger("kling_provider")

MAX_REDIRECTS = 5
PART_SUFFIX = ".part"


class WritablePath(Protocol):
    """What a destination must offer: ``pathlib.Path`` and Airflow's ``ObjectStoragePath`` both do."""

    @property
    def name(self) -> str: ...
    @property
    def parent(self) -> Any: ...
    def open(self, mode: str = ...) -> Any: ...
    def exists(self) -> bool: ...
    def unlink(self) -> None: ...
    def stat(self) -> Any: ...
    def rename(self, target: Any) -> Any: ...


@dataclass(frozen=True)
class DownloadResult:
    """Where the video ended up and how big it is."""

    uri: str
    size: int
    downloaded: bool  #: False when a file already holding this very video was kept (re-run).
    sha256: str = ""  #: of the stored bytes, as recorded in the ``.kling.json`` sidecar.


def origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


def check_video_url(url: str) -> None:
    """Only absolute http(s) URLs: ``file://`` or ``ftp://`` from a response must never be opened."""
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise KlingValidationError(
            f"Invalid parameter 'video_url'={url!r}: only absolute http:// or https:// URLs are "
            "downloaded."
        )


def download(
    client: httpx.Client,
    url: str,
    destination: Any,
    *,
    auth_headers: Mapping[str, str],
    api_url: str,
    expected_size: int | None = None,
    file_name: str | None = None,
    generation_id: str | None = None,
    overwrite: bool,
    max_bytes: int | None = None,
    verify_mp4: bool,
    attempts: int = 3,
    sleep: Callable[[float], None] = time.sleep,
    hosts: HostPolicy | None = None,
) -> DownloadResult:
    """Stream ``url`` into ``destination`` atomically; retry whole attempts on transient faults.

    ``generation_id`` names the video: folder destinations store it as ``<generation uuid>.mp4``
    and its sidecar records it (without it, the URL minus its query identifies the video).
    ``max_bytes`` defaults to :data:`DEFAULT_MAX_BYTES`; ``hosts`` says which non-public
    addresses URLs may point at (:mod:`._hosts`; the client's transport enforces it on connect).
    """
    check_video_url(url)
    hosts = hosts or HostPolicy()
    max_bytes = DEFAULT_MAX_BYTES if max_bytes is None else max_bytes
    _check_size(expected_size, max_bytes)  # the API's file_size: refused before any request
    identity = VideoIdentity.of(generation_id, url)
    target = resolve_destination(destination, default_file_name(identity, file_name))
    chosen, kept = choose_target(target, identity, expected_size, overwrite)
    if kept:  # verified before any request: a re-run does not download again
        record = read_sidecar(chosen) or {}
        log.info("Keeping %s: it already holds %s (%s bytes, SHA-256 verified)", chosen,
                 identity.describe(), record.get("size"))
        return DownloadResult(uri=_uri(chosen), size=int(record.get("size") or 0),
                              downloaded=False, sha256=str(record.get("sha256") or ""))
    remove_stale_parts(target, identity)
    last: BaseException | None = None
    for attempt in range(1, attempts + 1):
        try:
            return _attempt(client, url, target, identity, auth_headers=auth_headers,
                            api_url=api_url, expected_size=expected_size, hosts=hosts,
                            max_bytes=max_bytes, verify_mp4=verify_mp4, overwrite=overwrite)
        except _RetryableError as exc:
            last = exc  # its message already names the cause (refused, DNS, TLS, ...)
            if attempt < attempts:
                log.warning("Download attempt %d/%d of %s failed (%s); retrying",
                            attempt, attempts, redact_url(url), exc)
                sleep(min(2.0 ** attempt, 30.0))
    raise KlingDownloadError(
        f"Could not download {redact_url(url)} to {target} after {attempts} attempts: {last}. "
        "Nothing was left at the destination."
    )


class _RetryableError(Exception):
    """A failed attempt that a fresh attempt may fix (network drop, truncation, 5xx)."""


def _uri(path: Any) -> str:
    if isinstance(path, Path):
        return path.resolve().as_uri()
    return str(path)


def _attempt(client: httpx.Client, url: str, target: WritablePath, identity: VideoIdentity, *,
             auth_headers: Mapping[str, str], api_url: str, expected_size: int | None,
             hosts: HostPolicy, max_bytes: int, verify_mp4: bool,
             overwrite: bool) -> DownloadResult:
    api_origin = origin(api_url)
    current = url
    for _hop in range(MAX_REDIRECTS + 1):
        check_video_url(current)
        check_url(current, hosts)  # every hop: a redirect may point anywhere
        # The key goes only to the API's own origin; a CDN (or a redirect to one) never sees it.
        headers = dict(auth_headers) if origin(current) == api_origin else {}
        try:
            with client.stream("GET", current, headers=headers) as response:
                if response.is_redirect:
                    current = urljoin(current, response.headers.get("location", ""))
                    continue
                if response.status_code >= 500 or response.status_code == 429:
                    raise _RetryableError(f"HTTP {response.status_code}")
                if response.status_code != 200:
                    raise KlingDownloadError(
                        f"Downloading {redact_url(current)} failed with HTTP "
                        f"{response.status_code}; nothing was written to {target}."
                    )
                return _store(response, target, identity, expected_size=expected_size,
                              max_bytes=max_bytes, verify_mp4=verify_mp4, overwrite=overwrite)
        except httpx.TransportError as exc:
            raise _RetryableError(f"{type(exc).__name__}: {transport_cause(exc)}") from exc
    raise KlingDownloadError(
        f"Downloading {redact_url(url)} was redirected more than {MAX_REDIRECTS} times."
    )


@dataclass(frozen=True)
class _Staged:
    """A complete, checked download in its temporary file, not yet at its destination."""

    temporary: Any
    size: int
    sha256: str


def _store(response: httpx.Response, target: WritablePath, identity: VideoIdentity, *,
           expected_size: int | None, max_bytes: int, verify_mp4: bool,
           overwrite: bool) -> DownloadResult:
    staged = _stage(response, target, identity, expected_size=expected_size,
                    max_bytes=max_bytes, verify_mp4=verify_mp4)
    try:
        return _place(staged, target, identity, overwrite=overwrite)
    finally:
        _discard(staged.temporary)


def _stage(response: httpx.Response, target: WritablePath, identity: VideoIdentity, *,
           expected_size: int | None, max_bytes: int, verify_mp4: bool) -> _Staged:
    length_header = response.headers.get("content-length")
    announced = int(length_header) if length_header and length_header.isdigit() else None
    if "content-encoding" in response.headers:
        announced = None  # the header then counts compressed bytes, not what we write
    if expected_size is not None and announced is not None and expected_size != announced:
        raise KlingDownloadError(
            f"The API says the video has {expected_size} bytes but the server announces "
            f"{announced}; refusing to store a video that may be incomplete."
        )
    want = expected_size if expected_size is not None else announced
    _check_size(want, max_bytes)
    limit = max_bytes if want is None else want  # never read past what was announced
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.parent / f"{part_prefix(target, identity)}{uuid.uuid4().hex}{PART_SUFFIX}"
    written = 0
    head = b""
    try:
        with temporary.open("wb") as sink, ThreadedSha256() as digest:
            for chunk in body_chunks(response, limit, digest.buffer):  # stops at the limit
                if len(head) < 12:
                    head += bytes(chunk[: 12 - len(head)])
                written += len(chunk)
                if written > limit:
                    raise KlingDownloadError(
                        f"The server sent more than the {want} bytes announced; download stopped."
                        if want is not None else
                        f"The video exceeded max_bytes={max_bytes}; download stopped.")
                digest.update(chunk)  # hashed in a thread while this one writes and reads on
                sink.write(chunk)
            sha256 = digest.hexdigest()
        if want is not None and written != want:
            raise _RetryableError(f"got {written} of {want} bytes")
        if verify_mp4 and head[4:8] != b"ftyp":
            raise KlingDownloadError(
                f"The downloaded file does not start like an MP4 (no 'ftyp' box; first bytes "
                f"{head[:12]!r}); not stored at {target}."
            )
    except BaseException:
        _discard(temporary)
        raise
    return _Staged(temporary, written, sha256)


def _place(staged: _Staged, target: WritablePath, identity: VideoIdentity, *,
           overwrite: bool) -> DownloadResult:
    """Move a finished download into place, deciding again under the name's claim: another run
    may have stored a video there since this one looked (then this one goes beside it)."""
    with claim(target):
        chosen, kept = choose_target(target, identity, staged.size, overwrite)
        if kept:
            log.info("Keeping %s: another run stored %s there meanwhile", chosen,
                     identity.describe())
            return DownloadResult(uri=_uri(chosen), size=staged.size, downloaded=False,
                                  sha256=staged.sha256)
        if not staged.temporary.exists():  # removed as stale by a download of the same video
            raise _RetryableError(f"{staged.temporary} was removed before it was stored")
        forget(chosen)  # first: a crash from here on leaves a video of unknown origin, never a lie
        if chosen.exists():
            chosen.unlink()
        staged.temporary.rename(chosen)
        write_sidecar(chosen, identity, size=staged.size, sha256=staged.sha256)
    log.info("Stored %s: %d bytes at %s", identity.describe(), staged.size, chosen)
    return DownloadResult(uri=_uri(chosen), size=staged.size, downloaded=True,
                          sha256=staged.sha256)


def _check_size(size: int | None, max_bytes: int) -> None:
    if size is not None and size > max_bytes:
        raise KlingDownloadError(
            f"The video has {size} bytes, more than max_bytes={max_bytes}; not downloaded.")


def _discard(path: WritablePath) -> None:
    try:
        if path.exists():
            path.unlink()
    except OSError:  # pragma: no cover - best effort: the original error matters more
        log.warning("Could not remove temporary file %s", path)


def part_prefix(target: WritablePath, identity: VideoIdentity) -> str:
    """Temporary files of one generation's download to ``target`` start with this."""
    return f".{target.name}.{identity.token}."


def remove_stale_parts(target: WritablePath, identity: VideoIdentity) -> None:
    """Remove temporary files a killed earlier attempt of this download left beside ``target``
    (a SIGKILL runs no cleanup). Other generations' temporary files are never touched."""
    prefix = part_prefix(target, identity)
    try:
        stale = [p for p in target.parent.iterdir()
                 if p.name.startswith(prefix) and p.name.endswith(PART_SUFFIX)]
    except (FileNotFoundError, NotADirectoryError):
        return
    for path in stale:
        log.info("Removing %s, left by an earlier attempt that was killed", path)
        _discard(path)
