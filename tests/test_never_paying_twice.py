"""Each row of issue 7's table: what Airflow does to a task, and one paid generation through it.

Driven like Airflow drives a task: ``execute`` raises ``TaskDeferred`` as in a worker, the
trigger runs as in the triggerer (after a serialise round trip), its event goes to the resume
method; a retry is a new context on the same ``task_state_store`` with the next try number. The
simulator shares the fake clock, so a generation finishes (and shows in the usage logs) exactly
when the test moves time. The same rows run with the *real* ``task_state_store`` across real
retries in ``test_dags_test_rows`` (``airflow dags test``).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred

from kling_provider._task.submission import STATE_KEY
from kling_provider.exceptions import KlingGenerationFailedError, KlingSubmissionUncertainError
from kling_provider.hooks.kling import aclose_shared_clients
from kling_provider.operators._record import TaskRecord
from kling_provider.operators.kling import KlingGenerateVideoOperator
from kling_provider.testing.simulator import KlingSimulator
from kling_provider.triggers.kling import (
    KlingGenerationTrigger,
    KlingSubmissionRecoveryTrigger,
)
from tests.conftest import SECRET_KEY, FakeClock, StateStoreStub, context_for
from tests.test_airflow_layer import RACCOON
from tests.test_dag_runs import AIRFLOW, ROOT, airflow_env

MODEL = RACCOON["model"]


def run(trigger: Any) -> dict[str, Any]:
    """The trigger's one event, after a serialise round trip (as a triggerer would run it)."""
    path, kwargs = trigger.serialize()
    assert SECRET_KEY not in json.dumps(kwargs)
    revived = type(trigger)(**kwargs)
    assert path.endswith(type(trigger).__qualname__)

    async def collect() -> list[dict[str, Any]]:
        try:
            return [event.payload async for event in revived.run()]
        finally:
            await aclose_shared_clients()

    events = asyncio.run(collect())
    assert len(events) == 1
    return events[0]


def drive(operator: KlingGenerateVideoOperator, context: Any) -> dict[str, Any]:
    """One try to its end: execute, then each deferral through its trigger and resume method."""
    try:
        return operator.execute(context)
    except TaskDeferred as deferred:
        pending: TaskDeferred | None = deferred
    while pending is not None:
        event = run(pending.trigger)
        method = getattr(operator, pending.method_name)
        try:
            return method(context, event=event, **(pending.kwargs or {}))  # type: ignore[no-any-return]
        except TaskDeferred as again:
            pending = again
    raise AssertionError("unreachable")


def paid(sim: KlingSimulator) -> dict[str | None, list[str]]:
    return sim.generations_by_client_request_id()


def generate(**kwargs: Any) -> KlingGenerateVideoOperator:
    return KlingGenerateVideoOperator(task_id="generate", poll_interval=20, **{**RACCOON, **kwargs})


# -- row 1 and 2: the create answer is lost, or 502, after the API created the generation ------------

@pytest.mark.parametrize("fault", [{"create_drop": True}, {"create_status": 502}],
                         ids=["answer-lost", "502-after-create"])
def test_uncertain_create_is_recovered_in_the_same_try(airflow_sim: KlingSimulator,
                                                       clock: FakeClock,
                                                       fault: dict[str, Any]) -> None:
    operator = generate(extra_params={"simulator_faults": fault})
    store = StateStoreStub()
    context = context_for(store)
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(context)  # the uncertain POST does not fail the task ...
    trigger = deferred.value.trigger
    assert isinstance(trigger, KlingSubmissionRecoveryTrigger)  # ... it defers to a lookup
    assert store.data[STATE_KEY]["generation_id"] is None
    event = run(trigger)
    assert event["status"] == "found"
    result = drive_resume(operator, context, deferred.value, event)
    assert result["status"] == "completed"
    assert list(paid(airflow_sim).values()) == [[result["generation_id"]]]
    assert store.data[STATE_KEY]["generation_id"] == result["generation_id"]
    assert airflow_sim.ledger.count(method="POST") == 1


def drive_resume(operator: KlingGenerateVideoOperator, context: dict[str, Any],
                 deferred: TaskDeferred, event: dict[str, Any]) -> dict[str, Any]:
    method = getattr(operator, deferred.method_name)
    try:
        return method(context, event=event, **(deferred.kwargs or {}))  # type: ignore[no-any-return]
    except TaskDeferred as again:
        return drive_resume(operator, context, again, run(again.trigger))


def test_uncertain_create_then_the_try_dies_retry_recovers(airflow_sim: KlingSimulator,
                                                           clock: FakeClock) -> None:
    """Row 1 with Airflow retrying: the try that lost the answer dies before its lookup ends."""
    operator = generate(extra_params={"simulator_faults": {"create_drop": True}})
    store = StateStoreStub()
    with pytest.raises(TaskDeferred):
        operator.execute(context_for(store, try_number=1))  # the try is killed while deferred
    result = drive(operator, context_for(store, try_number=2))
    assert result["status"] == "completed"
    assert list(paid(airflow_sim).values()) == [[result["generation_id"]]]
    assert ".t1." in store.data[STATE_KEY]["client_request_id"]  # the first intent's id


# -- row 3: the worker dies after the create answer, before the id reached task_state_store --------

def test_worker_killed_before_the_id_was_stored(airflow_sim: KlingSimulator, clock: FakeClock,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker killed right after the answer: nothing after the POST happens."""
    record_generation = TaskRecord.record_generation

    def killed_on_first_try(record: TaskRecord, *args: Any) -> Any:
        if record.context["ti"].try_number == 1:
            raise SystemExit("worker killed")
        return record_generation(record, *args)

    monkeypatch.setattr(TaskRecord, "record_generation", killed_on_first_try)
    operator = generate()
    store = StateStoreStub()
    with pytest.raises(SystemExit):
        operator.execute(context_for(store, try_number=1))
    assert store.data[STATE_KEY]["generation_id"] is None  # only the intent survived
    result = drive(operator, context_for(store, try_number=2))
    assert result["status"] == "completed"
    assert list(paid(airflow_sim).values()) == [[result["generation_id"]]]


# -- row 4: the xcom_push right after the POST fails ------------------------------------------------

def test_xcom_push_after_the_post_fails(airflow_sim: KlingSimulator, clock: FakeClock) -> None:
    operator = generate()
    store = StateStoreStub()
    context = context_for(store, try_number=1)

    def unreachable(key: str, value: Any) -> None:
        raise ConnectionError("execution API unreachable")

    context["ti"].xcom_push = unreachable
    with pytest.raises(ConnectionError):
        operator.execute(context)
    stored_id = store.data[STATE_KEY]["generation_id"]
    assert stored_id  # the store was written before the XCom
    result = drive(operator, context_for(store, try_number=2))
    assert result["generation_id"] == stored_id
    assert airflow_sim.ledger.count(method="POST") == 1


# -- the policy when the generation never shows ------------------------------------------------------

def test_never_found_fails_by_default_naming_the_client_request_id(
        airflow_sim: KlingSimulator, clock: FakeClock) -> None:
    operator = generate(timeout=600)
    store = StateStoreStub()
    store.set(STATE_KEY, {"client_request_id": "kling:dag:x:generate:-1.t1", "model": MODEL,
                          "endpoint_family": "legacy", "intent_at": clock.now()})
    context = context_for(store, try_number=2)
    with pytest.raises(KlingSubmissionUncertainError,
                       match=r"kling:dag:x:generate:-1\.t1.*clear this task"):
        drive(operator, context)
    assert airflow_sim.ledger.count(method="POST") == 0
    assert clock.now() >= store.data[STATE_KEY]["intent_at"] + 600  # it looked as long as allowed
    # The user checked the dashboard, found nothing, and cleared the task: it submits anew.
    result = drive(operator, context_for(store, try_number=3, clear_number=1))
    assert result["status"] == "completed"
    assert airflow_sim.ledger.count(method="POST") == 1


def test_never_found_resubmits_when_asked(airflow_sim: KlingSimulator, clock: FakeClock) -> None:
    operator = generate(timeout=600, on_uncertain_submission="resubmit")
    store = StateStoreStub()
    store.set(STATE_KEY, {"client_request_id": "kling:dag:x:generate:-1.t1", "model": MODEL,
                          "endpoint_family": "legacy", "intent_at": clock.now()})
    result = drive(operator, context_for(store, try_number=2))
    assert result["status"] == "completed"
    [(cri, ids)] = paid(airflow_sim).items()
    assert cri is not None and ".t2." in cri and ids == [result["generation_id"]]


def test_recovered_generation_that_failed_fails_the_try_then_the_retry_pays_anew(
        airflow_sim: KlingSimulator, clock: FakeClock) -> None:
    failing = {"create_drop": True, "error": {"name": "Moderation", "message": "refused"}}
    operator = generate(extra_params={"simulator_faults": failing})
    store = StateStoreStub()
    with pytest.raises(KlingGenerationFailedError, match="Moderation: refused"):
        drive(operator, context_for(store, try_number=1))
    operator.extra_params = None
    result = drive(operator, context_for(store, try_number=2))
    assert result["status"] == "completed"
    intents = sorted(k or "" for k in paid(airflow_sim))
    assert [k.split(".")[-2] for k in intents] == ["t1", "t2"]  # two intents, two ids
    assert all(len(ids) == 1 for ids in paid(airflow_sim).values())


# -- clearing -------------------------------------------------------------------------------------------

def test_clearing_a_finished_task_makes_a_new_video(airflow_sim: KlingSimulator,
                                                    clock: FakeClock) -> None:
    operator = generate()
    store = StateStoreStub()
    first = drive(operator, context_for(store, try_number=1))
    again = drive(operator, context_for(store, try_number=1))  # success not recorded: reuse
    assert again["generation_id"] == first["generation_id"]
    cleared = drive(operator, context_for(store, try_number=2, clear_number=1))
    assert cleared["generation_id"] != first["generation_id"]
    assert airflow_sim.ledger.count(method="POST") == 2


def test_clearing_a_failed_task_continues_its_paid_generation(airflow_sim: KlingSimulator,
                                                              clock: FakeClock) -> None:
    operator = generate(timeout=60, deferrable=False)
    store = StateStoreStub()
    with pytest.raises(Exception, match="did not finish"):
        operator.execute(context_for(store, try_number=1))  # timed out: the task failed
    clock.t += 3600
    result = drive(operator, context_for(store, try_number=2, clear_number=1))
    assert result["status"] == "completed"
    assert airflow_sim.ledger.count(method="POST") == 1


# -- Airflow before 3.3: no task_state_store ----------------------------------------------------------

def test_without_a_store_a_retry_finds_a_finished_generation_of_an_earlier_try(
        airflow_sim: KlingSimulator, clock: FakeClock) -> None:
    operator = generate()
    with pytest.raises(TaskDeferred):
        operator.execute(context_for(None, try_number=1))  # the try dies while waiting
    clock.t += 3600  # a retry_delay longer than the generation: it has finished by now
    result = drive(operator, context_for(None, try_number=2))
    assert result["status"] == "completed"
    assert airflow_sim.ledger.count(method="POST") == 1


def test_without_a_store_a_retry_while_it_still_runs_pays_again(airflow_sim: KlingSimulator,
                                                                clock: FakeClock) -> None:
    """The limit the README states for Airflow < 3.3 (hence its retry_delay advice)."""
    operator = generate()
    with pytest.raises(TaskDeferred):
        operator.execute(context_for(None, try_number=1))
    clock.t += 30  # retried at once: the first generation has not finished, the logs omit it
    with pytest.raises(TaskDeferred):
        operator.execute(context_for(None, try_number=2))
    assert airflow_sim.ledger.count(method="POST") == 2


def test_without_a_store_an_uncertain_create_is_still_recovered_in_its_try(
        airflow_sim: KlingSimulator, clock: FakeClock) -> None:
    operator = generate(extra_params={"simulator_faults": {"create_status": 502}})
    result = drive(operator, context_for(None, try_number=1))
    assert result["status"] == "completed"
    assert airflow_sim.ledger.count(method="POST") == 1


def test_worker_path_recovers_too(airflow_sim: KlingSimulator, clock: FakeClock) -> None:
    operator = generate(deferrable=False, extra_params={"simulator_faults": {"create_drop": True}})
    result = operator.execute(context_for(StateStoreStub()))
    assert result["status"] == "completed"
    assert airflow_sim.ledger.count(method="POST") == 1


def test_the_wait_trigger_still_follows_a_plain_submission(airflow_sim: KlingSimulator) -> None:
    operator = generate()
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(context_for(StateStoreStub()))
    assert isinstance(deferred.value.trigger, KlingGenerationTrigger)
    header = airflow_sim.ledger.entries(method="POST")[0].headers["x-client-request-id"]
    assert header.startswith("kling:dag:manual__2026-11-21T00:00:00_00:00:generate:-1-")
    assert ".t1." in header


def test_killing_the_lookup_says_what_may_exist(caplog: pytest.LogCaptureFixture,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    trigger = KlingSubmissionRecoveryTrigger(
        kling_conn_id="kling_default", client_request_id="kling:d:r:t:-1.t1", model=MODEL,
        since=0.0, deadline=1.0, poll_interval=1.0)
    asyncio.run(trigger.on_kill())
    logged = " ".join(r.getMessage() for r in caplog.records) + capsys.readouterr().out
    assert "'kling:d:r:t:-1.t1'" in logged and "usage logs" in logged and "billed" in logged


# -- the same rows in real Airflow: `airflow dags test`, the real task_state_store, real retries ------

@pytest.mark.integration
def test_dags_test_rows(airflow_db_template: Path, tmp_path: Path) -> None:
    """``tests/dags/kling_retry_rows.py``: one task per row, ``retries=2``, each failing its first
    try at the row's moment. Exactly one generation per task, every task succeeds."""
    home = tmp_path / "airflow"
    home.mkdir()
    shutil.copy(airflow_db_template, home / "airflow.db")
    with KlingSimulator(time_scale=2000, api_keys={SECRET_KEY}) as sim:
        env = {**os.environ, **airflow_env(home),
               "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "tests" / "dags"),
               "AIRFLOW_CONN_KLING_DEFAULT": json.dumps(
                   {"conn_type": "kling", "host": sim.base_url, "password": SECRET_KEY})}
        done = subprocess.run([AIRFLOW, "dags", "test", "kling_retry_rows"], env=env,
                              capture_output=True, text=True, timeout=300)
        output = done.stdout + done.stderr
        assert done.returncode == 0, output[-5000:]
        assert "state=success" in output, output[-5000:]
        tasks = ["answer_502", "answer_lost", "answer_lost_then_retry", "killed_before_store",
                 "xcom_push_fails"]
        per_task: dict[str, list[str]] = {}
        for cri, ids in sim.generations_by_client_request_id().items():
            [task] = [t for t in tasks if cri and f":{t}:-1" in cri]
            per_task.setdefault(task, []).extend(ids)
    assert sorted(per_task) == tasks
    assert {task: len(ids) for task, ids in per_task.items()} == dict.fromkeys(per_task, 1)
    # Each of them really failed a try first (a real retry went through the real store).
    for task in ("answer_lost_then_retry", "killed_before_store", "xcom_push_fails"):
        assert f"{task} try 1 dies here" in output, task
