"""The media helpers: probe and thumbnail with ffmpeg, and a clear error where it is missing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from kling_provider.media import MediaToolMissingError, local_path, probe_video, thumbnail
from kling_provider.testing.simulator import sample_video

HAS_FFMPEG = bool(shutil.which("ffmpeg") and shutil.which("ffprobe"))


@pytest.fixture
def video(tmp_path: Path) -> Path:
    path = tmp_path / "clip.mp4"
    path.write_bytes(sample_video())
    return path


@pytest.mark.skipif(not HAS_FFMPEG, reason="ffmpeg/ffprobe not installed (make test installs it)")
def test_probe_and_thumbnail(video: Path) -> None:
    assert probe_video(video) == {"duration": pytest.approx(1.0), "width": 160, "height": 90,
                                  "codec": "h264"}
    jpeg = thumbnail(video)
    assert jpeg == video.with_suffix(".jpg")
    assert jpeg.read_bytes()[:2] == b"\xff\xd8"


def test_missing_ffmpeg_is_named(video: Path, monkeypatch: pytest.MonkeyPatch,
                                 tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(MediaToolMissingError, match="ffprobe is not installed.*apt-get install"):
        probe_video(video)
    with pytest.raises(MediaToolMissingError, match="ffmpeg is not installed"):
        thumbnail(video)


def test_local_path() -> None:
    assert local_path("file:///data/kling/a%20b.mp4") == Path("/data/kling/a b.mp4")
    assert local_path("/data/x.mp4") == Path("/data/x.mp4")
    assert local_path("s3://bucket/x.mp4") is None
