"""The hook against the simulator: a real HTTP server (API + CDN origins) on loopback.

The simulator shares the test's fake clock, so generations progress exactly as fast as the hook
sleeps between polls, without any wall-clock waiting.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from kling_provider._runtime.client import ASYNC_CLIENTS
from kling_provider.exceptions import (
    KlingDownloadError,
    KlingGenerationFailedError,
    KlingNetworkError,
    KlingSubmissionUncertainError,
    KlingValidationError,
)
from kling_provider.hooks.kling import KlingHook, aclose_shared_clients
from kling_provider.testing.simulator import Faults, KlingSimulator
from tests.conftest import SECRET_KEY, FakeClock, run_async

pytestmark = pytest.mark.integration

RACCOON: dict[str, Any] = {"prompt": "A cheerful white raccoon running through a sequoia forest",
           "aspect_ratio": "16:9", "duration": "5", "cfg_scale": 0.9}


def test_create_wait_download_playable_mp4(sim_hook: KlingHook, simulator: KlingSimulator,
                                           tmp_path: Path) -> None:
    generation_id = sim_hook.create_generation("klingai/v2-master-text-to-video", **RACCOON)
    assert re.fullmatch(r"[0-9a-f-]{36}:kling-video/v2/master/text-to-video", generation_id)
    generation = sim_hook.wait_for_generation(generation_id, poll_interval=10, timeout=1800)
    assert generation.status == "completed"
    # Priced from the simulator's price list: $1.40 for a 5 s v2-master video. The legacy body
    # reports credits only (tokens_used); the USD comes from the x-aimlapi-usd-spent header.
    assert (generation.credits_used, generation.usd_spent) == (2_800_000, 1.40)
    result = sim_hook.download_video(generation.video_url or "", tmp_path / "out.mp4",
                                     expected_size=generation.file_size)
    data = (tmp_path / "out.mp4").read_bytes()
    assert result.size == len(data) == generation.file_size
    assert data[4:8] == b"ftyp"
    assert simulator.ledger.count(method="POST") == 1
    cdn = simulator.ledger.entries(origin="cdn")
    assert len(cdn) == 1 and "authorization" not in cdn[0].headers
    # no temporary left behind; the sidecar says whose video it is
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4", "out.mp4.kling.json"]


def test_each_generation_serves_its_own_playable_bytes(sim_hook: KlingHook,
                                                       simulator: KlingSimulator) -> None:
    ids = [sim_hook.create_generation("klingai/v2.1-master-text-to-video", prompt=p)
           for p in ("a", "b")]
    videos = [sim_hook.wait_for_generation(i, poll_interval=60) for i in ids]
    served = [httpx.get(v.video_url or "").content for v in videos]
    assert served[0] != served[1]  # a test can tell the two videos apart ...
    assert len(served[0]) == len(served[1]) == videos[0].file_size  # ... by content, not size
    assert served == [simulator.video_of(i) for i in ids]
    assert all(s.startswith(simulator.video) and s[4:8] == b"ftyp" for s in served)


@pytest.mark.parametrize("family", ["legacy", "unified"])
def test_both_endpoint_families(simulator: KlingSimulator, kling_env: Callable[..., None],
                                clock: FakeClock, family: str) -> None:
    kling_env(simulator.base_url, endpoint_family=family)
    hook = KlingHook(clock=clock)
    generation_id = hook.create_generation("kling-video/v1.6/pro/image-to-video",
                                           image_url="https://x.test/cat.png", prompt="cat")
    generation = hook.wait_for_generation(generation_id, poll_interval=30)
    assert generation.video_url
    posts = simulator.ledger.entries(method="POST")
    assert posts[0].path == {"legacy": "/v2/generate/video/kling/generation",
                             "unified": "/v2/video/generations"}[family]


def test_async_path_against_server(simulator: KlingSimulator, kling_env: Callable[..., None],
                                   clock: FakeClock) -> None:
    kling_env(simulator.base_url)
    hook = KlingHook(clock=clock)

    async def flow() -> str:
        generation_id = await hook.acreate_generation("klingai/v2.1-master-text-to-video",
                                                      prompt="dragon")
        done = await hook.await_for_generation(generation_id, poll_interval=10,
                                               deadline=clock.now() + 1800)
        return done.status

    assert run_async(flow) == "completed"


def test_server_validates_and_answers_error_contract(simulator: KlingSimulator) -> None:
    url = simulator.base_url + "/v2/generate/video/kling/generation"
    auth = {"Authorization": f"Bearer {SECRET_KEY}"}
    bad = httpx.post(url, json={"model": "klingai/v2.1-master-text-to-video", "prompt": "p",
                                "duration": 7}, headers=auth)
    assert bad.status_code == 400
    assert {"message", "path", "requestId", "statusCode", "timestamp"} <= set(bad.json())
    assert bad.json()["message"].startswith("Body validation error\n'duration': 7 ")
    unauthorised = httpx.post(url, json={}, headers={"Authorization": "Bearer wrong"})
    assert unauthorised.status_code == 401
    assert "valid API key" in unauthorised.json()["message"]
    unknown = httpx.get(url, params={"generation_id": "nope"}, headers=auth)
    assert unknown.status_code == 404


def test_lost_create_answer_is_reported_not_repeated(sim_hook: KlingHook,
                                                     simulator: KlingSimulator) -> None:
    simulator.faults.drop_connections = 1
    with pytest.raises(KlingSubmissionUncertainError):
        sim_hook.create_generation("klingai/v2.1-master-text-to-video", prompt="p")
    assert simulator.ledger.count(method="POST") == 1
    assert len(simulator.generation_ids()) == 1  # it was created: the paid case


def test_rate_limit_with_retry_after_then_success(sim_hook: KlingHook, simulator: KlingSimulator,
                                                  clock: FakeClock) -> None:
    simulator.faults = Faults(statuses=[429, 503], retry_after=4)
    generation_id = sim_hook.create_generation("klingai/v2.1-master-text-to-video", prompt="p")
    assert clock.sleeps[:2] == [4.0, 4.0]
    assert simulator.ledger.count(method="POST") == 3
    assert len(simulator.generation_ids()) == 1
    assert generation_id in simulator.generation_ids()


def test_injected_faults_during_wait(sim_hook: KlingHook, simulator: KlingSimulator) -> None:
    faults = {"statuses": [500, 502], "malformed_json": 1, "drop_connections": 1,
              "unknown_status_polls": 2, "completed_without_url": 1}
    generation_id = sim_hook.create_generation("klingai/v2.1-master-text-to-video", prompt="p",
                                               extra_params={"simulator_faults": faults})
    generation = sim_hook.wait_for_generation(generation_id, poll_interval=10)
    assert generation.video_url
    assert simulator.ledger.count(method="POST") == 1


def test_error_status_carries_name_and_message(sim_hook: KlingHook) -> None:
    faults = {"error": {"name": "ContentModeration", "message": "Prompt blocked"}}
    generation_id = sim_hook.create_generation("klingai/v2.1-master-text-to-video", prompt="p",
                                               extra_params={"simulator_faults": faults})
    with pytest.raises(KlingGenerationFailedError, match="ContentModeration: Prompt blocked"):
        sim_hook.wait_for_generation(generation_id, poll_interval=60)


@pytest.mark.parametrize("fault", ["truncate_download", "wrong_content_length"])
def test_bad_downloads_leave_nothing(sim_hook: KlingHook, simulator: KlingSimulator,
                                     tmp_path: Path, fault: str) -> None:
    generation_id = sim_hook.create_generation(
        "klingai/v2.1-master-text-to-video", prompt="p",
        extra_params={"simulator_faults": {fault: True, "video_size": 300_000}})
    generation = sim_hook.wait_for_generation(generation_id, poll_interval=60)
    with pytest.raises(KlingDownloadError, match="Nothing was left|may be incomplete"):
        sim_hook.download_video(generation.video_url or "", tmp_path / "v.mp4",
                                expected_size=generation.file_size)
    assert list(tmp_path.iterdir()) == []


def test_download_is_idempotent(sim_hook: KlingHook, simulator: KlingSimulator,
                                tmp_path: Path) -> None:
    generation_id = sim_hook.create_generation("klingai/v2.1-master-text-to-video", prompt="p")
    generation = sim_hook.wait_for_generation(generation_id, poll_interval=60)
    first = sim_hook.download_video(generation.video_url or "", str(tmp_path) + "/",
                                    expected_size=generation.file_size,
                                    generation_id=generation_id)
    second = sim_hook.download_video(generation.video_url or "", str(tmp_path) + "/",
                                     expected_size=generation.file_size,
                                     generation_id=generation_id)
    assert first.downloaded and not second.downloaded
    name = generation_id.split(":")[0] + ".mp4"
    assert first.uri == second.uri == (tmp_path / name).as_uri()
    assert simulator.ledger.count(origin="cdn") == 1


def test_validation_before_any_request(sim_hook: KlingHook, simulator: KlingSimulator) -> None:
    with pytest.raises(KlingValidationError, match="'aspect_ratio'='4:3'"):
        sim_hook.create_generation("klingai/v2.1-master-text-to-video", prompt="p",
                                   aspect_ratio="4:3")
    assert simulator.ledger.count() == 0


class CountingTransport(httpx.AsyncHTTPTransport):
    """The real transport, counting requests in flight (entered, answer not yet read)."""

    def __init__(self) -> None:
        super().__init__()
        self.in_flight = 0
        self.peak = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            response = await super().handle_async_request(request)
            await response.aread()
            return response
        finally:
            self.in_flight -= 1


def test_shared_async_client_sustains_many_concurrent_pollers(
        simulator: KlingSimulator, kling_env: Callable[..., None], clock: FakeClock) -> None:
    kling_env(simulator.base_url, max_concurrency=8)
    hook = KlingHook(clock=clock)
    generation_id = hook.create_generation("klingai/v2.1-master-text-to-video", prompt="p")
    transport = CountingTransport()  # its own transport: httpx's pool limits do not apply

    async def many() -> tuple[int, int]:
        try:
            hooks = [KlingHook(clock=clock, async_transport=transport) for _ in range(300)]
            results = await asyncio.gather(*(h.aget_generation(generation_id) for h in hooks))
            return len(results), len(ASYNC_CLIENTS[asyncio.get_running_loop()])
        finally:
            await aclose_shared_clients()

    count, clients = asyncio.run(many())
    assert (count, clients) == (300, 1)
    assert simulator.ledger.count(method="GET", generation_id=generation_id) == 300
    assert transport.peak == 8  # max_concurrency reached under load, never exceeded


def test_simulator_cli_prints_base_url_key_and_serves() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "kling_provider.testing.simulator", "--port", "0",
         "--api-key", "my-local-key"], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        urls = json.loads(process.stdout.readline())
        assert urls["base_url"].startswith("http://127.0.0.1:")
        assert urls["api_key"] == "my-local-key"
        banner = process.stdout.readline()
        assert "accepts API key 'my-local-key'" in banner
        assert "simulated time runs 60x" in banner  # docs/simulator.rst: the default scale
        ledger = httpx.get(urls["base_url"] + "/_simulator/ledger", timeout=5).json()
        assert ledger["posts"] == 0
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0


def test_slow_answers_time_out_post_once_get_retried(simulator: KlingSimulator,
                                                      kling_env: Callable[..., None],
                                                      clock: FakeClock) -> None:
    kling_env(simulator.base_url, timeout=0.2, max_retries=3)
    hook = KlingHook(clock=clock)
    generation_id = hook.create_generation("klingai/v2.1-master-text-to-video", prompt="p")
    simulator.faults.delay = 0.5
    with pytest.raises(KlingSubmissionUncertainError, match="no answer arrived"):
        hook.create_generation("klingai/v2.1-master-text-to-video", prompt="p")
    assert simulator.ledger.count(method="POST") == 2  # the slow one was sent once, not retried
    with pytest.raises(KlingNetworkError, match="ReadTimeout"):
        hook.get_generation(generation_id)
    assert len(clock.sleeps) == 2  # three attempts, backoff between them
