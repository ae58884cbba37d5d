"""Reading a stored video back: a local file or any ``ObjectStoragePath`` URI the download wrote.

The URI always comes from a recorded Asset event (never from the request), and a file is served
only when it starts like an MP4 (an ``ftyp`` box), so a tampered event cannot turn the gallery
into a file reader for arbitrary files.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import IO, cast
from urllib.parse import unquote, urlsplit

CHUNK = 256 * 1024


def local_path(uri: str) -> Path | None:
    """The local file behind ``uri`` (``file://`` or a plain path), ``None`` for object storage."""
    parts = urlsplit(uri)
    if parts.scheme == "file":
        return Path(unquote(parts.path))
    return Path(uri) if not parts.scheme else None


def open_stored(uri: str) -> tuple[IO[bytes], int]:
    """Open the stored MP4 for reading; raises ``OSError`` (or the storage's error) if missing."""
    path = local_path(uri)
    if path is not None:
        handle: IO[bytes] = path.open("rb")
        return handle, path.stat().st_size
    from airflow.sdk import ObjectStoragePath

    target = ObjectStoragePath(uri)
    size = int(target.stat()["size"])
    # ObjectStoragePath.open is untyped; it returns fsspec's seekable binary file.
    return cast("IO[bytes]", target.open("rb")), size  # type: ignore[no-untyped-call]


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


def poster_jpeg(path: Path, width: int = 480) -> bytes | None:
    """A frame near the start as JPEG, with ffmpeg; ``None`` when ffmpeg is missing or fails."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        return None
    result = subprocess.run(  # noqa: S603 - fixed arguments, the path comes from a recorded event
        [ffmpeg, "-v", "error", "-ss", "0.5", "-i", str(path), "-frames:v", "1",
         "-vf", f"scale={width}:-2", "-f", "image2", "-c:v", "mjpeg", "pipe:1"],
        capture_output=True, timeout=30, check=False)
    return result.stdout if result.returncode == 0 and result.stdout else None
