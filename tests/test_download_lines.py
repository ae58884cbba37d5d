"""What a download says and decides at its edges, as a user reads it in the task log (``_download``).

The lines a user reads to know where a video went (stored, kept, retried, a stale temporary
file removed), the error of a network fault, a redirect to a relative path, a size announced
at exactly ``max_bytes``, ``overwrite=True`` over another file, and which URLs share the API's
origin (the only one the key is sent to). Scripted answers through httpx, real files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from kling_provider._storage import download as _download
from kling_provider._storage.download import check_video_url, origin, part_prefix
from kling_provider._storage.identity import VideoIdentity
from kling_provider.exceptions import KlingDownloadError, KlingValidationError
from tests.conftest import Script
from tests.test_download import MP4

URL = "https://cdn.test/v.mp4"
GENERATION = VideoIdentity.of("g-1", URL).describe()


@pytest.fixture(autouse=True)
def _info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="kling_provider")


def test_a_stored_video_and_a_rerun_that_keeps_it_say_where_and_how_big(
        mock_hook: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    target = tmp_path / "v.mp4"
    mock_hook(Script(httpx.Response(200, content=MP4))).download_video(
        URL, target, generation_id="g-1")
    assert f"Stored {GENERATION}: {len(MP4)} bytes at {target}" in caplog.messages
    mock_hook(Script()).download_video(URL, target, generation_id="g-1")
    assert (f"Keeping {target}: it already holds {GENERATION} ({len(MP4)} bytes, SHA-256 "
            "verified)") in caplog.messages


def test_a_retried_attempt_is_said_with_its_number_url_and_cause(
        mock_hook: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    mock_hook(Script(httpx.Response(503), httpx.Response(200, content=MP4))).download_video(
        URL, tmp_path / "v.mp4")
    assert f"Download attempt 1/3 of {URL} failed (HTTP 503); retrying" in caplog.messages


def test_a_stale_temporary_file_is_removed_and_named(
        mock_hook: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    target: Any = tmp_path / "v.mp4"  # a WritablePath (a Path's open() is typed narrower)
    stale = tmp_path / f"{part_prefix(target, VideoIdentity.of('g-1', URL))}dead{_download.PART_SUFFIX}"
    stale.write_bytes(b"half")
    mock_hook(Script(httpx.Response(200, content=MP4))).download_video(
        URL, target, generation_id="g-1")
    assert not stale.exists()
    assert f"Removing {stale}, left by an earlier attempt that was killed" in caplog.messages


def test_a_temporary_file_that_cannot_be_removed_is_named(caplog: pytest.LogCaptureFixture) -> None:
    class Stuck:
        def exists(self) -> bool:
            return True

        def unlink(self) -> None:
            raise PermissionError("read-only")

        def __str__(self) -> str:
            return "/videos/.v.mp4.x.part"

    _download._discard(Stuck())  # type: ignore[arg-type]
    assert "Could not remove temporary file /videos/.v.mp4.x.part" in caplog.messages


def test_a_network_fault_names_its_kind(mock_hook: Any, tmp_path: Path) -> None:
    faults = Script(*[httpx.ConnectError("refused")] * 3)
    with pytest.raises(KlingDownloadError, match=r"after 3 attempts: ConnectError: "):
        mock_hook(faults).download_video(URL, tmp_path / "v.mp4")


def test_a_redirect_to_a_relative_path_is_followed_on_the_same_host(
        mock_hook: Any, tmp_path: Path) -> None:
    script = Script(httpx.Response(302, headers={"Location": "/store/v2.mp4"}),
                    httpx.Response(200, content=MP4))
    mock_hook(script).download_video(URL, tmp_path / "v.mp4")
    assert [str(r.url) for r in script.requests] == [URL, "https://cdn.test/store/v2.mp4"]
    assert (tmp_path / "v.mp4").read_bytes() == MP4


def test_a_size_announced_at_exactly_max_bytes_is_stored(mock_hook: Any, tmp_path: Path) -> None:
    answer = httpx.Response(200, content=MP4)
    assert answer.headers["content-length"] == str(len(MP4))
    result = mock_hook(Script(answer)).download_video(URL, tmp_path / "v.mp4",
                                                      max_bytes=len(MP4))
    assert result.size == len(MP4)
    with pytest.raises(KlingDownloadError, match=rf"more than max_bytes={len(MP4) - 1}; not"):
        mock_hook(Script(httpx.Response(200, content=MP4))).download_video(
            URL, tmp_path / "w.mp4", max_bytes=len(MP4) - 1)


def test_overwrite_replaces_another_file_at_the_name(mock_hook: Any, tmp_path: Path) -> None:
    target = tmp_path / "v.mp4"
    target.write_bytes(b"someone else's video")
    result = mock_hook(Script(httpx.Response(200, content=MP4))).download_video(
        URL, target, generation_id="g-1", overwrite=True)
    assert result.uri == target.resolve().as_uri() and target.read_bytes() == MP4


def test_a_url_that_is_not_http_is_refused_saying_what_is_allowed() -> None:
    with pytest.raises(KlingValidationError) as refused:
        check_video_url("ftp://cdn.test/v.mp4")
    assert str(refused.value) == ("Invalid parameter 'video_url'='ftp://cdn.test/v.mp4': only "
                                  "absolute http:// or https:// URLs are downloaded.")


@pytest.mark.parametrize(("url", "expected"), [
    ("http://Example.TEST/a.mp4", ("http", "example.test", 80)),
    ("https://example.test/a.mp4", ("https", "example.test", 443)),
    ("http://example.test:8080/a.mp4", ("http", "example.test", 8080)),
])
def test_an_origin_is_scheme_lower_cased_host_and_port_with_defaults(
        url: str, expected: tuple[str, str, int]) -> None:
    assert origin(url) == expected
    assert origin(url.replace("/a.mp4", "/other")) == expected


def test_overwrite_downloads_again_even_over_a_verified_copy(mock_hook: Any,
                                                             tmp_path: Path) -> None:
    target = tmp_path / "v.mp4"
    mock_hook(Script(httpx.Response(200, content=MP4))).download_video(
        URL, target, generation_id="g-1")
    again = Script(httpx.Response(200, content=MP4))
    result = mock_hook(again).download_video(URL, target, generation_id="g-1", overwrite=True)
    assert result.downloaded and len(again.requests) == 1
