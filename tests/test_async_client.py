"""The triggerer's aiohttp client: the same rules as the httpx paths, above all for the paid POST.

Its error mapping decides whether a create request may be sent again, so each failure is
produced for real (a closed port, a dropped connection, a slow answer) against the simulator.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import pytest

from kling_provider._runtime.aiohttp_client import AiohttpSender
from kling_provider._runtime.client import ASYNC_CLIENTS
from kling_provider.exceptions import (
    KlingNetworkError,
    KlingSubmissionUncertainError,
)
from kling_provider.hooks.kling import KlingHook
from kling_provider.testing.simulator import KlingSimulator
from tests.conftest import SECRET_KEY, FakeClock, run_async

pytestmark = pytest.mark.integration

MODEL = "klingai/v2-master-text-to-video"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_triggerer_path_uses_aiohttp(simulator: KlingSimulator,
                                         kling_env: Callable[..., None], clock: FakeClock) -> None:
    kling_env(simulator.base_url)
    hook = KlingHook(clock=clock)

    async def create_and_fetch() -> tuple[type, str]:
        generation_id = await hook.acreate_generation(MODEL, prompt="p")
        generation = await hook.aget_generation(generation_id)
        (shared,) = ASYNC_CLIENTS[asyncio.get_running_loop()].values()
        return type(shared.client), generation.status

    client_type, status = run_async(create_and_fetch)
    assert client_type is AiohttpSender
    assert status == "queued"
    gets = simulator.ledger.entries(method="GET")
    assert gets and gets[0].headers["authorization"] == f"Bearer {SECRET_KEY}"
    assert gets[0].headers["user-agent"] == "airflow-provider-kling"


def test_refused_connection_is_retried_then_named(kling_env: Callable[..., None],
                                                  clock: FakeClock) -> None:
    kling_env(f"http://127.0.0.1:{closed_port()}", max_retries=3)
    hook = KlingHook(clock=clock)
    with pytest.raises(KlingNetworkError):
        run_async(lambda: hook.aget_generation("x:kling-video/v2/master/text-to-video"))
    assert len(clock.sleeps) == 2  # nothing was sent: retried, with backoff


def test_lost_answer_to_the_paid_post_is_never_resent(simulator: KlingSimulator,
                                                      kling_env: Callable[..., None],
                                                      clock: FakeClock) -> None:
    kling_env(simulator.base_url)
    simulator.faults.drop_connections = 1  # the generation is created, the answer is lost
    hook = KlingHook(clock=clock)
    with pytest.raises(KlingSubmissionUncertainError, match="may have been created"):
        run_async(lambda: hook.acreate_generation(MODEL, prompt="p"))
    assert simulator.ledger.count(method="POST") == 1
    assert len(simulator.generation_ids()) == 1


def test_slow_answer_to_the_paid_post_is_never_resent(simulator: KlingSimulator,
                                                      kling_env: Callable[..., None],
                                                      clock: FakeClock) -> None:
    kling_env(simulator.base_url, timeout=1)
    simulator.faults.delay = 1.5
    hook = KlingHook(clock=clock)
    with pytest.raises(KlingSubmissionUncertainError):
        run_async(lambda: hook.acreate_generation(MODEL, prompt="p"))
    assert simulator.ledger.count(method="POST") == 1
