"""A download's attempts and checks, answer by answer: what is retried (and after how long),
what is refused at once, and what the size, encoding and MP4 checks accept (``_download``).

The scripted answers go through httpx (the path for chunked or compressed bodies); the
simulator tests in ``test_download.py`` take the socket path. Both end in the same checks.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from kling_provider._storage import download as _download
from kling_provider._storage import lock as _lock
from kling_provider._storage.download import download, origin
from kling_provider._storage.hosts import HostPolicy
from kling_provider._storage.identity import VideoIdentity
from kling_provider.exceptions import KlingDownloadError
from tests.conftest import SECRET_KEY, FakeClock, Script
from tests.test_download import MP4

URL = "https://cdn.test/v.mp4"


def video(status: int = 200) -> httpx.Response:
    return httpx.Response(status, content=MP4 if status == 200 else b"busy")


def pieces(*chunks: bytes) -> Iterator[bytes]:
    yield from chunks  # streamed: no Content-Length


def test_transient_answers_are_retried_after_2_then_4_s(mock_hook: Any, clock: FakeClock,
                                                        tmp_path: Path) -> None:
    script = Script(video(503), video(429), video())
    result = mock_hook(script).download_video(URL, tmp_path / "v.mp4")
    assert clock.sleeps == [2.0, 4.0]
    assert result.downloaded and result.size == len(MP4)
    assert (tmp_path / "v.mp4").read_bytes() == MP4


def test_three_failed_attempts_say_so_and_leave_nothing(mock_hook: Any, clock: FakeClock,
                                                        tmp_path: Path) -> None:
    script = Script(video(502), httpx.ConnectError("refused"), video(500))
    with pytest.raises(KlingDownloadError,
                       match=r"after 3 attempts: HTTP 500\. Nothing was left") as error:
        mock_hook(script).download_video(URL, tmp_path / "v.mp4")
    assert clock.sleeps == [2.0, 4.0]  # none after the last attempt
    assert "cdn.test" in str(error.value) and list(tmp_path.iterdir()) == []


def test_a_definite_http_error_is_not_retried(mock_hook: Any, clock: FakeClock,
                                              tmp_path: Path) -> None:
    script = Script(video(404))
    with pytest.raises(KlingDownloadError, match=r"failed with HTTP 404; nothing was written"):
        mock_hook(script).download_video(URL, tmp_path / "v.mp4")
    assert clock.sleeps == [] and len(script.requests) == 1


def test_sizes_that_disagree_are_refused_before_writing(mock_hook: Any, clock: FakeClock,
                                                        tmp_path: Path) -> None:
    with pytest.raises(KlingDownloadError,
                       match=rf"has {len(MP4) + 1} bytes but the server announces {len(MP4)}"):
        mock_hook(Script(video())).download_video(URL, tmp_path / "v.mp4",
                                                  expected_size=len(MP4) + 1)
    assert clock.sleeps == [] and list(tmp_path.iterdir()) == []


def test_a_short_body_is_retried_and_named(mock_hook: Any, clock: FakeClock,
                                           tmp_path: Path) -> None:
    short = [httpx.Response(200, content=pieces(MP4)) for _ in range(3)]
    with pytest.raises(KlingDownloadError, match=rf"got {len(MP4)} of {len(MP4) + 5} bytes"):
        mock_hook(Script(*short)).download_video(URL, tmp_path / "v.mp4",
                                                 expected_size=len(MP4) + 5)
    assert clock.sleeps == [2.0, 4.0] and list(tmp_path.iterdir()) == []


def test_the_announced_length_counts_for_nothing_when_compressed(mock_hook: Any,
                                                                 tmp_path: Path) -> None:
    packed = gzip.compress(MP4)
    answer = httpx.Response(200, content=packed, headers={"Content-Encoding": "gzip"})
    assert answer.headers["content-length"] == str(len(packed))
    result = mock_hook(Script(answer)).download_video(URL, tmp_path / "v.mp4",
                                                      expected_size=len(MP4))
    assert (tmp_path / "v.mp4").read_bytes() == MP4 and result.size == len(MP4)


def test_without_a_length_max_bytes_stops_the_body(mock_hook: Any, tmp_path: Path) -> None:
    answer = httpx.Response(200, content=pieces(MP4, MP4))
    with pytest.raises(KlingDownloadError, match=rf"exceeded max_bytes={len(MP4) + 1};"):
        mock_hook(Script(answer)).download_video(URL, tmp_path / "v.mp4",
                                                 max_bytes=len(MP4) + 1)
    assert list(tmp_path.iterdir()) == []


def test_a_body_of_exactly_max_bytes_is_stored(mock_hook: Any, tmp_path: Path) -> None:
    answer = httpx.Response(200, content=pieces(MP4))
    result = mock_hook(Script(answer)).download_video(URL, tmp_path / "v.mp4",
                                                      max_bytes=len(MP4))
    assert result.size == len(MP4) == (tmp_path / "v.mp4").stat().st_size


def test_the_mp4_check_reads_across_tiny_chunks(mock_hook: Any, tmp_path: Path) -> None:
    answer = httpx.Response(200, content=pieces(*(MP4[i:i + 1] for i in range(12)), MP4[12:]))
    result = mock_hook(Script(answer)).download_video(URL, tmp_path / "v.mp4")
    assert result.sha256 == hashlib.sha256(MP4).hexdigest()
    assert (tmp_path / "v.mp4").read_bytes() == MP4


def test_the_mp4_check_names_the_first_bytes_and_can_be_turned_off(mock_hook: Any,
                                                                   tmp_path: Path) -> None:
    page = b"<html>please log in</html>"
    byte_by_byte = pieces(*(page[i:i + 1] for i in range(len(page))))
    with pytest.raises(KlingDownloadError, match=r"first bytes b'<html>please'\)"):
        mock_hook(Script(httpx.Response(200, content=byte_by_byte))).download_video(
            URL, tmp_path / "v.mp4")
    result = mock_hook(Script(httpx.Response(200, content=page))).download_video(
        URL, tmp_path / "p.bin", verify_mp4=False)
    assert (tmp_path / "p.bin").read_bytes() == page and result.size == len(page)


def test_a_rerun_reports_the_recorded_size_and_hash(mock_hook: Any, tmp_path: Path) -> None:
    hook = mock_hook(Script(video()))
    first = hook.download_video(URL, tmp_path / "v.mp4", generation_id="g-1")
    again = hook.download_video(URL, tmp_path / "v.mp4", generation_id="g-1")
    assert first.downloaded and not again.downloaded
    assert (again.size, again.sha256, again.uri) == (
        len(MP4), hashlib.sha256(MP4).hexdigest(), (tmp_path / "v.mp4").resolve().as_uri())


@pytest.mark.parametrize(("url", "same"), [
    ("https://api.example.test:443/files/v.mp4", True),  # the default port, written out
    ("https://API.example.test/files/v.mp4", True),
    ("https://api.example.test:8443/files/v.mp4", False),
    ("http://api.example.test:443/files/v.mp4", False),
])
def test_the_key_goes_to_the_api_origin_however_it_is_written(
        mock_hook: Any, tmp_path: Path, url: str, same: bool) -> None:
    script = Script(video())
    mock_hook(script).download_video(url, tmp_path / "v.mp4")
    sent = script.requests[0].headers.get("authorization")
    assert sent == (f"Bearer {SECRET_KEY}" if same else None)
    assert (origin(url) == origin("https://api.example.test")) is same


def test_backoff_doubles_up_to_30_s(tmp_path: Path) -> None:
    sleeps: list[float] = []
    script = Script(*[video(503)] * 6)
    with httpx.Client(transport=httpx.MockTransport(script)) as client, \
            pytest.raises(KlingDownloadError, match="after 6 attempts"):
        download(client, URL, tmp_path / "v.mp4", auth_headers={}, api_url="https://api.test",
                 overwrite=False, verify_mp4=True, attempts=6, sleep=sleeps.append,
                 hosts=HostPolicy())
    assert sleeps == [2.0, 4.0, 8.0, 16.0, 30.0] and len(script.requests) == 6


def test_a_part_file_removed_meanwhile_as_stale_means_another_attempt(
        mock_hook: Any, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A second download of the same video, starting while this one waits for the name's
    claim, removes this one's temporary file as left over (what ``remove_stale_parts`` does)."""
    real_claim = _lock.claim
    removed: list[str] = []

    @contextmanager
    def claim_after_a_stale_sweep(target: Any) -> Iterator[None]:
        if not removed:
            removed.extend(p.name for p in tmp_path.glob("*.part"))
            _download.remove_stale_parts(target, VideoIdentity.of("g-1", URL))
        with real_claim(target):
            yield

    monkeypatch.setattr(_download, "claim", claim_after_a_stale_sweep)
    result = mock_hook(Script(video(), video())).download_video(URL, tmp_path / "v.mp4",
                                                                generation_id="g-1")
    assert len(removed) == 1 and clock.sleeps == [2.0]  # one more attempt, after the usual wait
    assert f"{removed[0]} was removed before it was stored); retrying" in caplog.text
    assert result.downloaded and (tmp_path / "v.mp4").read_bytes() == MP4


def test_the_same_video_stored_meanwhile_by_another_run_is_kept(
        mock_hook: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    real_claim = _lock.claim
    other = mock_hook(Script(video()))

    @contextmanager
    def claim_after_another_run(target: Any) -> Iterator[None]:
        monkeypatch.setattr(_download, "claim", real_claim)
        other.download_video(URL, target, generation_id="g-1")  # finishes first
        with real_claim(target):
            yield

    this = mock_hook(Script(video()))
    monkeypatch.setattr(_download, "claim", claim_after_another_run)
    caplog.set_level("INFO", logger="kling_provider")
    result = this.download_video(URL, tmp_path / "v.mp4", generation_id="g-1")
    assert (result.downloaded, result.uri, result.size, result.sha256) == (
        False, (tmp_path / "v.mp4").resolve().as_uri(), len(MP4), hashlib.sha256(MP4).hexdigest())
    assert (f"Keeping {tmp_path / 'v.mp4'}: another run stored "
            f"{VideoIdentity.of('g-1', URL).describe()} there meanwhile") in caplog.messages
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4", "v.mp4.kling.json"]
