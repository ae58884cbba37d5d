"""The operators' side of paying once (operators/_submission.py), as mutation testing probes it.

Against the simulator on loopback with the fake clock, driven as Airflow drives a task: what a
retry defers to (the lookup's trigger, its deadline and the deferral's timeout), a stored
generation the API does not know (young: not paid again; old: paid anew), a generation that
failed, the lookup's events as the resume method reads them, and the ids and XComs a bare
context gives. Logs are Airflow's structlog lines (stdout) and the provider's (``caplog``).
"""

from __future__ import annotations

import re
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred

from kling_provider._task import submission as _submission
from kling_provider.exceptions import KlingError, KlingGenerationNotFoundError
from kling_provider.hooks.kling import KlingHook
from kling_provider.links.kling import VIDEO_URL_XCOM_KEY
from kling_provider.operators.kling import STATE_KEY, KlingGenerateVideoOperator
from kling_provider.testing.simulator import KlingSimulator
from kling_provider.triggers.kling import KlingGenerationTrigger, KlingSubmissionRecoveryTrigger
from tests.conftest import FakeClock, StateStoreStub, context_for
from tests.test_airflow_layer import RACCOON

MODEL = RACCOON["model"]
CRI = "kling:dag:manual__2026-11-21T00_00_00_00_00:generate:-1.t1.0a1b2c3d4e5f"


def generate(**kwargs: Any) -> KlingGenerateVideoOperator:
    return KlingGenerateVideoOperator(task_id="generate", poll_interval=20, timeout=600,
                                      **{**RACCOON, **kwargs})


def logged(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """Each log message whole: the provider's records, and Airflow's structlog lines without
    their time, level and logger (so a message with text added around it is not the message)."""
    lines = [re.sub(r"^\S+ \[\w+ *\] (.*?) \[[\w.]+\]( loc=\S+)?$", r"\1", line)
             for line in capsys.readouterr().out.splitlines()]
    return [r.getMessage() for r in caplog.records] + lines


def stored(store: StateStoreStub, **fields: Any) -> None:
    store.set(STATE_KEY, {"client_request_id": CRI, "model": MODEL, "endpoint_family": "legacy",
                          **fields})


# -- a retry finds an intent: it defers to the lookup ----------------------------------------------

def test_a_retry_with_an_open_intent_defers_to_the_lookup_until_its_deadline(
        airflow_sim: KlingSimulator, clock: FakeClock, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    store = StateStoreStub()
    intent_at = clock.now() - 100
    stored(store, intent_at=intent_at)
    with pytest.raises(TaskDeferred) as deferred:
        generate().execute(context_for(store, try_number=2))
    trigger = deferred.value.trigger
    assert isinstance(trigger, KlingSubmissionRecoveryTrigger)
    deadline = intent_at + 600 + _submission.LOGS_LAG.total_seconds()
    assert (trigger.client_request_id, trigger.model, trigger.since, trigger.deadline,
            trigger.poll_interval, trigger.kling_conn_id) == (
        CRI, MODEL, intent_at, deadline, 20.0, "kling_default")
    assert deferred.value.method_name == "execute_recovered"
    assert deferred.value.kwargs == {"endpoint_family": "legacy"}
    assert deferred.value.timeout == timedelta(seconds=deadline - clock.now(), minutes=5)
    assert airflow_sim.ledger.count(method="POST") == 0
    text = logged(caplog, capsys)
    assert f"Stored submission {CRI}, generation None: recover." in text
    assert (f"Looking up the generation of client request id {CRI} (model {MODEL}) in the "
            f"usage logs until {_submission._iso(deadline)}.") in text


def test_a_lookup_deferred_after_its_deadline_still_gets_the_grace(
        airflow_sim: KlingSimulator, clock: FakeClock) -> None:
    store = StateStoreStub()
    stored(store, intent_at=clock.now() - 7200)
    with pytest.raises(TaskDeferred) as deferred:
        generate().execute(context_for(store, try_number=2))
    assert deferred.value.timeout == timedelta(minutes=5)


# -- a stored generation the API does not know -----------------------------------------------------

@pytest.mark.parametrize("fields", [
    {"generation_id": "unknown-to-the-api", "intent_at": -60.0, "submitted_at": -59.0},
    {"generation_id": "unknown-to-the-api", "intent_at": -59.0},  # no submission time stored
])
def test_an_unknown_young_generation_is_not_paid_again(airflow_sim: KlingSimulator,
                                                       clock: FakeClock,
                                                       fields: dict[str, Any]) -> None:
    store = StateStoreStub()
    stored(store, **{k: clock.now() + v if k.endswith("_at") else v for k, v in fields.items()})
    with pytest.raises(KlingGenerationNotFoundError,
                       match=r"submitted 59 s ago by an earlier try and may not be visible yet, "
                             r"so it is not submitted again .* after 0:15:00 from submission"):
        generate().execute(context_for(store, try_number=2))
    assert airflow_sim.ledger.count(method="POST") == 0


def test_an_unknown_generation_15_minutes_old_is_paid_anew(
        airflow_sim: KlingSimulator, clock: FakeClock, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    store = StateStoreStub()
    stored(store, generation_id="unknown-to-the-api", intent_at=clock.now() - 1000,
           submitted_at=clock.now() - 900)
    result = generate(wait_for_completion=False).execute(context_for(store, try_number=2))
    assert airflow_sim.ledger.count(method="POST") == 1
    assert store.data[STATE_KEY]["generation_id"] == result["generation_id"]
    assert ("Earlier generation unknown-to-the-api, submitted 900 s ago, is unknown to the API; "
            "submitting anew.") in logged(caplog, capsys)


def test_a_stored_generation_that_failed_is_paid_anew_and_one_running_reattached(
        airflow_sim: KlingSimulator, clock: FakeClock) -> None:
    hook = KlingHook(clock=clock)
    failed = hook.create_generation(MODEL, prompt="p", extra_params={
        "simulator_faults": {"error": {"name": "Moderation", "message": "no"}}})
    clock.t += 3600
    store = StateStoreStub()
    stored(store, generation_id=failed, intent_at=clock.now() - 3600)
    result = generate(wait_for_completion=False).execute(context_for(store, try_number=2))
    assert result["generation_id"] != failed and airflow_sim.ledger.count(method="POST") == 2
    running = hook.create_generation(MODEL, prompt="p")
    store = StateStoreStub()
    stored(store, generation_id=running, intent_at=clock.now())
    context = context_for(store, try_number=2)
    result = generate(wait_for_completion=False).execute(context)
    assert result["generation_id"] == running == context["ti"].xcom["generation_id"]
    assert airflow_sim.ledger.count(method="POST") == 3


# -- the lookup's event, read by the resumed task ---------------------------------------------------

@pytest.mark.parametrize(("event", "says"), [
    (None, "None"),
    ("lost", "lost"),
    ({"status": "error", "message": "logs unreadable"}, "logs unreadable"),
    ({"status": "found?"}, "None"),
])
def test_a_lookup_event_that_is_not_an_answer_fails_the_try(event: Any, says: str) -> None:
    with pytest.raises(KlingError, match=rf"^Task 'generate': the usage-logs lookup failed: {says}$"):
        generate().execute_recovered(context_for(StateStoreStub()), event=event)


def test_a_found_generation_without_a_store_is_taken_from_the_event(
        airflow_sim: KlingSimulator, clock: FakeClock) -> None:
    generation_id = KlingHook(clock=clock).create_generation(MODEL, prompt="p",
                                                             client_request_id="c.t1")
    context = context_for(None)
    result = generate(deferrable=False).execute_recovered(
        context, event={"status": "found", "generation_id": generation_id,
                        "client_request_id": "c.t1"}, endpoint_family=None)
    assert result["status"] == "completed" and result["generation_id"] == generation_id
    assert context["ti"].xcom["generation_id"] == generation_id
    assert airflow_sim.ledger.count(method="POST") == 1


# -- ids and XComs ------------------------------------------------------------------------------------

class BareTaskInstance:
    """A ``ti`` that carries none of the ids (only XCom): the prefix's defaults are used."""

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def test_a_context_without_ids_names_the_intent_by_defaults(airflow_sim: KlingSimulator) -> None:
    store = StateStoreStub()
    context: Any = {"ti": BareTaskInstance(), "task_state_store": store,
               "dag_run": SimpleNamespace(clear_number=None)}
    generate(wait_for_completion=False).execute(context)
    cri = store.data[STATE_KEY]["client_request_id"]
    assert cri.startswith("kling:dag:run:generate:-1.t1.")
    assert store.data[STATE_KEY]["clear_number"] == 0


def test_the_generation_id_is_stored_and_pushed_right_after_paying(
        airflow_sim: KlingSimulator) -> None:
    store = StateStoreStub()
    context = context_for(store)
    with pytest.raises(TaskDeferred) as deferred:
        generate().execute(context)
    assert isinstance(deferred.value.trigger, KlingGenerationTrigger)
    record = store.data[STATE_KEY]
    assert record["generation_id"] == context["ti"].xcom["generation_id"]
    assert record["submitted_at"] is not None and not record["delivered"]
    assert context["ti"].xcom[VIDEO_URL_XCOM_KEY] == ""  # the link reads "" until the video


def test_a_resumed_try_whose_fields_no_longer_validate_still_returns_its_video(
        airflow_sim: KlingSimulator, clock: FakeClock, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    operator = generate()
    store = StateStoreStub()
    context = context_for(store)
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(context)
    clock.t += 3600
    # The resumed try is a new operator whose rendered fields fail validation now.
    resumed = generate(duration="{{ params.duration }}")
    from tests.test_never_paying_twice import run

    result = resumed.execute_complete(context, event=run(deferred.value.trigger))
    assert result["status"] == "completed" and result["generation_id"] == store.data[
        STATE_KEY]["generation_id"]
    [warning] = [m for m in logged(caplog, capsys) if "is unknown here" in m]
    assert warning.startswith("The request's 'prompt' is unknown here (Invalid parameter "
                              "'duration'='{{ params.duration }}'")
    assert warning.endswith("); going on without it.")
    assert store.data[STATE_KEY]["delivered"] is True
