"""``KlingGenerationTrigger.on_kill``: what a user reads after killing a waiting task (Airflow 3.3).

The API has no cancel, so on_kill only tells the user that the generation keeps running (and is
billed), its id, and where its video will be. It must do no I/O: it runs in the triggerer's loop.
The last test drives Airflow's own ``TriggerRunner`` through a user kill mid-wait.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from airflow import __version__ as airflow_version
from packaging.version import Version

from kling_provider.hooks.kling import KlingHook, aclose_shared_clients
from kling_provider.triggers.kling import (
    KlingGenerationTrigger,
    KlingSubmissionRecoveryTrigger,
    killed_message,
)
from tests.conftest import FakeClock

# Airflow's TriggerRunner calls BaseTrigger.on_kill on a user kill from 3.3 on; before, it only
# cancels the trigger (the message is then not logged; the generation still keeps running).
AIRFLOW_CALLS_ON_KILL = Version(Version(airflow_version).base_version) >= Version("3.3")

GID = "10c09c56-2e00-4a64-89ec-358ff71f8144:kling-video/v2.1/master/text-to-video"


def make_trigger(clock: FakeClock) -> KlingGenerationTrigger:
    return KlingGenerationTrigger(kling_conn_id="kling_default", generation_id=GID,
                                  poll_interval=10, deadline=clock.now() + 1800,
                                  endpoint_family="legacy")


def test_killed_message_names_id_billing_and_where_the_video_is() -> None:
    task = SimpleNamespace(dag_id="kling_raccoon", run_id="manual__1", task_id="generate",
                           map_index=3)
    message = killed_message(GID, kling_conn_id="kling_default", endpoint_family="legacy",
                             task=task)
    assert message.startswith(f"Task killed while waiting for Kling generation {GID!r} "
                              "(DAG 'kling_raccoon', run 'manual__1', task 'generate', "
                              "map index 3).")
    assert "cannot cancel a generation: it keeps running and is billed" in message
    assert (f"KlingGenerationSensor(generation_id={GID!r}, kling_conn_id='kling_default', "
            "endpoint_family='legacy')") in message
    assert f"KlingDownloadVideoOperator(generation_id={GID!r}" in message
    assert "AI/ML API dashboard" in message
    unmapped = killed_message(GID, kling_conn_id="k", endpoint_family=None,
                              task=SimpleNamespace(dag_id="d", run_id="r", task_id="t",
                                                   map_index=-1))
    assert "map index" not in unmapped and "endpoint_family" not in unmapped


def test_on_kill_logs_without_any_io(no_requests: list[httpx.Request], clock: FakeClock,
                                     monkeypatch: pytest.MonkeyPatch,
                                     caplog: pytest.LogCaptureFixture,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    def no_connection(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("on_kill looked up the connection")

    monkeypatch.setattr(KlingHook, "get_connection", no_connection)
    monkeypatch.setattr(KlingHook, "aget_connection", no_connection)
    coroutine = make_trigger(clock).on_kill()
    with caplog.at_level(logging.WARNING), pytest.raises(StopIteration):
        coroutine.send(None)  # finishes in its first step: it never waits on anything
    logged = caplog.text + capsys.readouterr().out
    assert f"Task killed while waiting for Kling generation {GID!r}" in logged
    assert "keeps running and is billed" in logged
    assert no_requests == []


def test_recovery_trigger_on_kill_names_the_request_id(no_requests: list[httpx.Request],
                                                       clock: FakeClock,
                                                       caplog: pytest.LogCaptureFixture,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    trigger = KlingSubmissionRecoveryTrigger(
        kling_conn_id="kling_default", client_request_id="kling:dag:run:generate:-1.t1r1",
        model="klingai/v2.1-master-text-to-video", since=clock.now() - 60,
        deadline=clock.now() + 1800, poll_interval=30)
    coroutine = trigger.on_kill()
    with caplog.at_level(logging.WARNING), pytest.raises(StopIteration):
        coroutine.send(None)
    logged = caplog.text + capsys.readouterr().out
    assert "X-Client-Request-Id 'kling:dag:run:generate:-1.t1r1'" in logged
    assert "keeps running and is billed" in logged and "usage logs" in logged
    assert no_requests == []


@pytest.mark.skipif(not AIRFLOW_CALLS_ON_KILL, reason=f"Airflow {airflow_version} does not call "
                                                       "trigger on_kill (3.3+ does)")
def test_user_kill_mid_wait_through_airflows_trigger_runner(
        kling_env: Callable[..., None], clock: FakeClock, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    from airflow.jobs.triggerer_job_runner import TriggerRunner

    polled = asyncio.Event()
    polls: list[httpx.Request] = []

    async def generating(request: httpx.Request) -> httpx.Response:
        polls.append(request)
        polled.set()
        await asyncio.sleep(0)  # a real answer takes a moment: let the loop run others
        return httpx.Response(200, json={"id": GID, "status": "generating"})

    kling_env("https://api.example.test")
    hook = KlingHook(clock=clock, async_transport=httpx.MockTransport(generating))
    monkeypatch.setattr(KlingGenerationTrigger, "_hook", lambda self: hook)
    monkeypatch.setenv("AIRFLOW_DISABLE_GREENBACK_PORTAL", "true")
    trigger = make_trigger(clock)

    async def kill_mid_wait() -> list[Any]:
        runner = TriggerRunner()  # type: ignore[no-untyped-call]
        task = asyncio.create_task(runner.run_trigger(1, trigger))
        runner.triggers[1] = {"task": task, "name": "kling-wait", "events": 0,
                              "is_watcher": False}
        try:
            await polled.wait()
            runner.to_cancel.append(1)
            await runner.cancel_triggers()  # type: ignore[no-untyped-call]  # what a user's "mark failed" or "clear" leads to
            return list(await asyncio.gather(task, return_exceptions=True))
        finally:
            await aclose_shared_clients()

    with caplog.at_level(logging.INFO):
        outcome = asyncio.run(kill_mid_wait())
    assert isinstance(outcome[0], asyncio.CancelledError)
    assert len(polls) >= 1  # it was waiting, not yet started
    logged = caplog.text + capsys.readouterr().out
    assert "invoking on_kill" in logged
    assert f"Task killed while waiting for Kling generation {GID!r}" in logged
    assert "on_kill() raised" not in logged and "on_kill() timed out" not in logged
