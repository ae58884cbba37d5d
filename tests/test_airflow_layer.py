"""Operators, sensor, trigger and link against the simulator, driven like Airflow drives them.

``execute`` raises ``TaskDeferred`` exactly as in a worker; the test then runs the trigger's
``run()`` (as the triggerer would) and hands its event to ``execute_complete``. Time is the fake
clock shared with the simulator (the hook's default clock is swapped for it), so waits are exact.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.exceptions import AirflowRescheduleException
from airflow.providers.common.compat.sdk import AirflowSkipException, TaskDeferred

from kling_provider.exceptions import (
    KlingError,
    KlingGenerationFailedError,
    KlingGenerationNotFoundError,
    KlingTimeoutError,
    KlingValidationError,
)
from kling_provider.hooks.kling import KlingHook, aclose_shared_clients
from kling_provider.operators.kling import (
    STATE_KEY,
    KlingGenerateVideoOperator,
    KlingImageToVideoOperator,
    KlingTextToVideoOperator,
)
from kling_provider.sensors.kling import KlingGenerationSensor
from kling_provider.testing.simulator import Faults, KlingSimulator
from kling_provider.triggers.kling import KlingGenerationTrigger, generation_from_event
from tests.conftest import SECRET_KEY, FakeClock, StateStoreStub, TaskInstanceStub, context_for

RACCOON: dict[str, Any] = {"model": "klingai/v2-master-text-to-video",
                           "prompt": "A cheerful white raccoon running through a sequoia forest",
                           "aspect_ratio": "16:9", "duration": 5, "cfg_scale": 0.9}


def run_trigger(trigger: KlingGenerationTrigger) -> list[dict[str, Any]]:
    """Run a trigger to exhaustion as the triggerer would (after a serialise round trip)."""
    path, kwargs = trigger.serialize()
    assert path == "kling_provider.triggers.kling.KlingGenerationTrigger"
    revived = KlingGenerationTrigger(**kwargs)

    async def collect() -> list[dict[str, Any]]:
        try:
            return [event.payload async for event in revived.run()]
        finally:
            await aclose_shared_clients()

    return asyncio.run(collect())


def defer(operator: Any, context: dict[str, Any]) -> TaskDeferred:
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(context)
    return deferred.value


# -- construction ---------------------------------------------------------------------------------

def test_literal_bad_input_fails_at_parse_time() -> None:
    with pytest.raises(KlingValidationError, match=r"Task 'bad'.*'duration'=7.*5, 10"):
        KlingTextToVideoOperator(task_id="bad", prompt="p", duration=7)
    with pytest.raises(KlingValidationError, match="Missing parameter 'image_url'"):
        KlingImageToVideoOperator(task_id="bad", prompt="p")
    with pytest.raises(KlingValidationError, match="'poll_interval'=0"):
        KlingTextToVideoOperator(task_id="bad", prompt="p", poll_interval=0)


def test_templated_values_wait_for_execute(airflow_sim: KlingSimulator) -> None:
    operator = KlingImageToVideoOperator(task_id="t", prompt="p", image_url="{{ params.url }}",
                                         extra_params={"seed": "{{ params.seed }}"})
    operator.image_url = "not-checked-as-url-but-required"
    operator.duration = "7"  # as if a template rendered it
    with pytest.raises(KlingValidationError, match="'duration'='7'"):
        operator.execute(context_for(StateStoreStub()))
    assert airflow_sim.ledger.count(method="POST") == 0


def test_family_specific_literals_accepted_if_any_family_fits() -> None:
    KlingTextToVideoOperator(task_id="t", prompt="p", camera_control="down_back")
    with pytest.raises(KlingValidationError, match="camera_control"):
        KlingTextToVideoOperator(task_id="t", prompt="p", camera_control="down_back",
                                 endpoint_family="legacy")


# -- deferrable path --------------------------------------------------------------------------------

def test_deferrable_round_trip(airflow_sim: KlingSimulator, clock: FakeClock) -> None:
    operator = KlingGenerateVideoOperator(task_id="generate", poll_interval=10, timeout=1800,
                                          **RACCOON)
    store = StateStoreStub()
    context = context_for(store)
    deferred = defer(operator, context)
    trigger = deferred.trigger
    assert isinstance(trigger, KlingGenerationTrigger)
    generation_id = store.data[STATE_KEY]["generation_id"]
    assert context["ti"].xcom["generation_id"] == generation_id == trigger.generation_id
    assert trigger.deadline == clock.now() + 1800
    assert deferred.timeout is not None and deferred.timeout > timedelta(seconds=1800)
    _, kwargs = trigger.serialize()
    assert set(kwargs) == {"kling_conn_id", "generation_id", "poll_interval", "deadline",
                           "endpoint_family", "poll_schedule", "submitted_at", "model", "duration",
                           "end_from_trigger", "result_fields"}
    # Absolute times and plain values only: a hand-over resumes the same schedule.
    assert kwargs["submitted_at"] == store.data[STATE_KEY]["submitted_at"] == clock.now()
    assert (kwargs["poll_schedule"], kwargs["model"]) == ("adaptive", RACCOON["model"])
    assert json.loads(json.dumps(kwargs)) == kwargs
    assert SECRET_KEY not in json.dumps(kwargs)
    events = run_trigger(trigger)
    assert [e["status"] for e in events] == ["success"]
    result = operator.execute_complete(context, events[0], **(deferred.kwargs or {}))
    assert result["generation_id"] == generation_id
    assert result["video_url"].startswith(airflow_sim.cdn_url)
    assert result["file_size"] == len(airflow_sim.video_of(generation_id))
    assert set(result) >= {"generation_id", "model", "status", "video_url", "file_name",
                           "file_size", "content_type", "credits_used"}
    assert context["ti"].xcom["video_url"] == result["video_url"]
    assert SECRET_KEY not in json.dumps(result)
    assert airflow_sim.ledger.count(method="POST") == 1


def test_retry_reattaches_instead_of_paying_twice(airflow_sim: KlingSimulator,
                                                  clock: FakeClock) -> None:
    operator = KlingGenerateVideoOperator(task_id="generate", **RACCOON)
    store = StateStoreStub()
    first = defer(operator, context_for(store)).trigger
    second = defer(operator, context_for(store)).trigger  # a retry while still pending
    assert isinstance(first, KlingGenerationTrigger) and isinstance(second, KlingGenerationTrigger)
    assert first.generation_id == second.generation_id
    clock.t += 3600  # the generation completes while no try is running
    result = operator.execute(context_for(store))  # a retry after completion: no wait at all
    assert result["generation_id"] == first.generation_id
    assert airflow_sim.ledger.count(method="POST") == 1


def test_retry_after_failed_generation_submits_anew(airflow_sim: KlingSimulator,
                                                    clock: FakeClock) -> None:
    operator = KlingGenerateVideoOperator(
        task_id="generate", deferrable=False, poll_interval=30,
        extra_params={"simulator_faults": {"error": {"name": "Upstream", "message": "died"}}},
        **RACCOON)
    store = StateStoreStub()
    with pytest.raises(KlingGenerationFailedError, match="Upstream: died"):
        operator.execute(context_for(store))
    operator.extra_params = None
    result = operator.execute(context_for(store))
    assert result["status"] == "completed"
    assert airflow_sim.ledger.count(method="POST") == 2
    assert store.data[STATE_KEY]["generation_id"] == result["generation_id"]


def test_unknown_stored_generation_resubmitted_only_when_old(airflow_sim: KlingSimulator,
                                                           clock: FakeClock) -> None:
    operator = KlingGenerateVideoOperator(task_id="generate", wait_for_completion=False,
                                          **RACCOON)
    store = StateStoreStub()
    store.set(STATE_KEY, {"generation_id": "lost:kling-video/v2/master/text-to-video",
                          "endpoint_family": "legacy", "submitted_at": clock.now() - 60})
    with pytest.raises(KlingGenerationNotFoundError, match="not submitted again"):
        operator.execute(context_for(store))
    assert airflow_sim.ledger.count(method="POST") == 0
    clock.t += 3600
    result = operator.execute(context_for(store))
    assert airflow_sim.ledger.count(method="POST") == 1
    assert store.data[STATE_KEY]["generation_id"] == result["generation_id"]


def test_worker_polling_path_and_reattach(airflow_sim: KlingSimulator, clock: FakeClock) -> None:
    operator = KlingGenerateVideoOperator(task_id="generate", deferrable=False, poll_interval=30,
                                          timeout=60, **RACCOON)
    store = StateStoreStub()
    with pytest.raises(KlingTimeoutError, match="not lost"):
        operator.execute(context_for(store))  # 60 s is shorter than the simulated generation
    operator.timeout = 1800
    result = operator.execute(context_for(store))
    assert result["status"] == "completed"
    assert airflow_sim.ledger.count(method="POST") == 1


def test_without_task_state_store_warns(airflow_sim: KlingSimulator,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    operator = KlingGenerateVideoOperator(task_id="generate", wait_for_completion=False,
                                          **RACCOON)
    result = operator.execute(context_for(None))
    assert result["status"] == "queued"
    assert "task_state_store is not available" in capsys.readouterr().out  # Airflow's structlog


@pytest.mark.parametrize(("faults", "status", "error"), [
    ({"error": {"name": "Moderation", "message": "blocked"}}, "failure",
     KlingGenerationFailedError),
    ({}, "timeout", KlingTimeoutError),
])
def test_trigger_fires_one_terminal_event(airflow_sim: KlingSimulator, faults: dict[str, Any],
                                          status: str, error: type[Exception],
                                          clock: FakeClock) -> None:
    operator = KlingGenerateVideoOperator(task_id="generate", timeout=60 if not faults else 1800,
                                          extra_params={"simulator_faults": faults} if faults
                                          else None, **RACCOON)
    context = context_for(StateStoreStub())
    deferred = defer(operator, context)
    events = run_trigger(deferred.trigger)
    assert [e["status"] for e in events] == [status]
    with pytest.raises(error):
        operator.execute_complete(context, events[0])


def test_trigger_keeps_polling_through_transient_faults(airflow_sim: KlingSimulator) -> None:
    operator = KlingGenerateVideoOperator(task_id="generate", **RACCOON)
    deferred = defer(operator, context_for(StateStoreStub()))
    airflow_sim.faults = Faults(statuses=[503] * 12, retry_after=1)  # > one fetch's budget
    events = run_trigger(deferred.trigger)
    assert [e["status"] for e in events] == ["success"]


def test_trigger_reports_auth_error_once(airflow_sim: KlingSimulator,
                                         kling_env: Callable[..., None]) -> None:
    operator = KlingGenerateVideoOperator(task_id="generate", **RACCOON)
    deferred = defer(operator, context_for(StateStoreStub()))
    kling_env(airflow_sim.base_url, key="revoked-key")
    events = run_trigger(deferred.trigger)
    assert [e["status"] for e in events] == ["error"]
    assert "kling_default" in events[0]["message"]
    assert "revoked-key" not in events[0]["message"]


@pytest.mark.parametrize(("event", "message"), [
    (None, "Unexpected event"),
    ({}, "Unexpected event"),
    ({"status": "weird"}, "Unexpected event"),
    ({"status": "success"}, "is for generation None, expected 'mine'"),
    ({"status": "success", "generation_id": "other", "generation": {"video_url": "http://x"}},
     "is for generation 'other', expected 'mine'"),
    ({"status": "success", "generation_id": "mine"}, "Success event without a generation video"),
    ({"status": "success", "generation_id": "mine", "generation": {"video_url": ""}},
     "Success event without a generation video"),
    ({"status": "success", "generation_id": "mine", "generation": "http://x"},
     "Success event without a generation video"),
])
def test_execute_complete_rejects_unexpected_events(event: Any, message: str) -> None:
    with pytest.raises(KlingError, match=message):
        generation_from_event(event, expected_generation_id="mine")


# -- sensor -------------------------------------------------------------------------------------------

def submit(simulator: KlingSimulator, faults: dict[str, Any] | None = None) -> str:
    operator = KlingGenerateVideoOperator(
        task_id="submit", wait_for_completion=False,
        extra_params={"simulator_faults": faults} if faults else None, **RACCOON)
    return str(operator.execute(context_for(StateStoreStub()))["generation_id"])


def test_sensor_defers_and_completes(airflow_sim: KlingSimulator) -> None:
    generation_id = submit(airflow_sim)
    sensor = KlingGenerationSensor(task_id="wait", generation_id=generation_id)
    context = context_for(None)
    deferred = defer(sensor, context)
    result = sensor.execute_complete(context, run_trigger(deferred.trigger)[0])
    assert result["generation_id"] == generation_id
    assert context["ti"].xcom["video_url"] == result["video_url"]


class RescheduleTI(TaskInstanceStub):
    """What Airflow's sensor loop reads of ``ti`` in reschedule mode (no earlier reschedule)."""

    def get_first_reschedule_date(self, context: Any) -> datetime | None:
        return None


@pytest.mark.parametrize("mode", ["poke", "reschedule"])
def test_sensor_poke_modes_through_airflows_execute(airflow_sim: KlingSimulator,
                                                    clock: FakeClock, mode: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import airflow.sdk.bases.sensor as sensor_base

    # Airflow's poke loop sleeps in the worker: on the fake clock here, so no wall-clock wait.
    monkeypatch.setattr(sensor_base, "time", SimpleNamespace(sleep=clock.sleep,
                                                             monotonic=clock.monotonic))
    generation_id = submit(airflow_sim)
    sensor = KlingGenerationSensor(task_id="wait", generation_id=generation_id,
                                   deferrable=False, mode=mode, poke_interval=30)
    context = context_for(None)
    context["ti"] = RescheduleTI()
    if mode == "reschedule":
        with pytest.raises(AirflowRescheduleException) as rescheduled:
            sensor.execute(context)  # not done yet: the worker slot is handed back
        assert rescheduled.value.reschedule_date > datetime.now(timezone.utc)
        assert clock.sleeps == []
        clock.t += 3600
    result = sensor.execute(context)
    assert result["generation_id"] == generation_id
    assert result["video_url"].startswith(airflow_sim.cdn_url)
    assert context["ti"].xcom["video_url"] == result["video_url"]
    polls = airflow_sim.ledger.count(method="GET", generation_id=generation_id)
    if mode == "poke":  # one execute, polling and sleeping in the worker until done
        assert polls >= 2 and len(clock.sleeps) == polls - 1
    else:  # two executes, one poke each, never a sleep in the worker
        assert polls == 2 and clock.sleeps == []


def test_sensor_failure_and_soft_fail(airflow_sim: KlingSimulator, clock: FakeClock) -> None:
    generation_id = submit(airflow_sim, {"error": {"name": "Moderation", "message": "blocked"}})
    clock.t += 3600
    hard = KlingGenerationSensor(task_id="a", generation_id=generation_id, deferrable=False)
    with pytest.raises(KlingGenerationFailedError, match="Moderation: blocked"):
        hard.poke(context_for(None))
    soft = KlingGenerationSensor(task_id="b", generation_id=generation_id, deferrable=False,
                                 soft_fail=True)
    with pytest.raises(AirflowSkipException):
        soft.poke(context_for(None))


def test_trigger_never_blocks_the_event_loop(airflow_sim: KlingSimulator,
                                             caplog: pytest.LogCaptureFixture) -> None:
    def deferred_trigger(task_id: str) -> Any:
        trigger = defer(KlingGenerateVideoOperator(task_id=task_id, **RACCOON),
                        context_for(StateStoreStub())).trigger
        assert isinstance(trigger, KlingGenerationTrigger)
        return trigger

    async def statuses(trigger: Any) -> list[str]:
        return [event.payload["status"] async for event in trigger.run()]

    def slow_steps() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "asyncio"]

    # Submitting is the worker's sync part: done before the loop runs, so no step watched below
    # holds the operator's own (sync) work.
    warm_up, *triggers = (deferred_trigger(task_id) for task_id in ("warm_up", "a", "b", "c"))

    async def watched() -> list[list[str]]:
        # The first wait of a process imports the HTTP stack and opens the shared session, once
        # per triggerer; on a loaded machine that one-off can pass 0.1 s of wall time. So it is
        # not watched, and three whole waits after it are: a blocking call in the wait itself (a
        # sync poll, a sleep) recurs in every wait and takes seconds, while a neighbour process
        # taking the CPU (the version matrix runs beside the main suite) slows one step of one
        # wait at a time. The wait is reported only when every watched wait blocked.
        loop = asyncio.get_running_loop()
        loop.slow_callback_duration = 60.0
        blocked: list[list[str]] = []
        try:
            assert await statuses(warm_up) == ["success"]
            for trigger in triggers:  # each submitted at the start: its wait polls several times
                caplog.clear()
                # Airflow's own threshold for a trigger blocking the loop. Not lower: asyncio's
                # debug mode records a stack per callback, and on a loaded 2-core machine an
                # honest step then takes ~0.1 s.
                loop.slow_callback_duration = 0.2
                assert await statuses(trigger) == ["success"]
                loop.slow_callback_duration = 60.0
                blocked.append(slow_steps())
            return blocked
        finally:
            await aclose_shared_clients()

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        blocked = asyncio.run(watched(), debug=True)
    assert not all(blocked), f"every watched wait blocked the event loop: {blocked}"


def test_each_entry_point_uses_one_hook_and_closes_it(
        airflow_sim: KlingSimulator, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """One connection lookup and one keep-alive client per ``execute``/``execute_complete``,
    closed when it returns, fails or defers (a hook per ``hook`` access left clients open)."""
    from kling_provider.hooks import kling as hook_module

    made: list[KlingHook] = []
    closed: list[KlingHook] = []
    real_init, real_close = hook_module.KlingHook.__init__, hook_module.KlingHook.close

    def init(self: KlingHook, *args: Any, **kwargs: Any) -> None:
        made.append(self)
        real_init(self, *args, **kwargs)

    def close(self: KlingHook) -> None:
        closed.append(self)
        real_close(self)

    monkeypatch.setattr(hook_module.KlingHook, "__init__", init)
    monkeypatch.setattr(hook_module.KlingHook, "close", close)
    operator = KlingGenerateVideoOperator(task_id="generate", deferrable=False, poll_interval=30,
                                          **RACCOON)
    assert operator.execute(context_for(StateStoreStub()))["status"] == "completed"
    assert len(made) == 1 and closed == made
    deferred = KlingGenerateVideoOperator(task_id="deferred", **RACCOON)
    store = StateStoreStub()
    defer(deferred, context_for(store))
    assert len(made) == 2 and closed == made  # closed when it defers, too
    failing = KlingGenerateVideoOperator(
        task_id="failing", deferrable=False, poll_interval=30,
        extra_params={"simulator_faults": {"error": {"name": "Upstream", "message": "died"}}},
        **RACCOON)
    with pytest.raises(KlingGenerationFailedError):
        failing.execute(context_for(StateStoreStub()))
    assert len(made) == 3 and closed == made
    sensor = KlingGenerationSensor(task_id="wait", generation_id=submit(airflow_sim),
                                   deferrable=False, poke_interval=30)
    made.clear()
    closed.clear()
    clock.t += 3600
    sensor.execute(context_for(None))
    assert len(made) == 1 and closed == made
