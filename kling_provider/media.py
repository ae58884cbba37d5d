"""Small media helpers for tasks downstream of a Kling download: probe a video, grab a thumbnail.

Used by the example media pipeline and catalog DAGs, and meant for users' own media tasks. They
call the ``ffprobe``/``ffmpeg`` binaries (Debian package ``ffmpeg``) in a subprocess; where those
are missing, :class:`MediaToolMissingError` says so, and Airflow tasks turn it into a skip.
"""

from __future__ import annotations

import json
import shutil
import subprocess  # nosec B404  # ffprobe/ffmpeg only, fixed arguments, no shell
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from kling_provider.exceptions import KlingError

__all__ = ["MediaToolMissingError", "local_path", "probe_video", "thumbnail"]


class MediaToolMissingError(KlingError):
    """Raised when ffmpeg/ffprobe is not installed, so the media step cannot run here."""


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise MediaToolMissingError(
            f"{name} is not installed, so this media step cannot run here. Install the ffmpeg "
            "package (Debian: apt-get install ffmpeg) on the workers.")
    return path


def local_path(uri: str) -> Path | None:
    """The local file behind a ``file://`` URI or plain path; ``None`` for remote storage."""
    parts = urlsplit(uri)
    if parts.scheme == "file":
        return Path(unquote(parts.path))
    if parts.scheme == "":
        return Path(uri)
    return None


def probe_video(path: Path) -> dict[str, Any]:
    """Duration (s), resolution and codec of the first video stream."""
    result = subprocess.run(  # noqa: S603  # nosec B603  # fixed binary, path an argument, no shell
        [_tool("ffprobe"), "-v", "error", "-select_streams", "v:0", "-show_entries",
         "stream=codec_name,width,height:format=duration", "-of", "json", str(path)],
        capture_output=True, text=True, check=False, timeout=120)
    if result.returncode != 0:
        raise KlingError(f"ffprobe could not read {path}: {result.stderr.strip()[:500]}")
    info = json.loads(result.stdout)
    streams = info.get("streams") or [{}]
    return {
        "duration": float(info.get("format", {}).get("duration") or 0.0),
        "width": streams[0].get("width"),
        "height": streams[0].get("height"),
        "codec": streams[0].get("codec_name"),
    }


def thumbnail(path: Path, target: Path | None = None, *, at_seconds: float = 0.5) -> Path:
    """Write a JPEG of the frame at ``at_seconds`` (default: beside the video, ``.jpg``)."""
    target = target or path.with_suffix(".jpg")
    result = subprocess.run(  # noqa: S603  # nosec B603  # fixed binary, paths arguments, no shell
        [_tool("ffmpeg"), "-v", "error", "-y", "-ss", f"{at_seconds}", "-i", str(path),
         "-frames:v", "1", str(target)],
        capture_output=True, text=True, check=False, timeout=120)
    if result.returncode != 0 or not target.exists():
        # Very short clips have no frame at 0.5 s: fall back to the first frame.
        if at_seconds > 0:
            return thumbnail(path, target, at_seconds=0)
        raise KlingError(f"ffmpeg could not extract a thumbnail of {path}: "
                         f"{result.stderr.strip()[:500]}")
    return target
