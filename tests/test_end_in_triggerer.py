"""Fewer worker starts: a success ends the task in the triggerer with the XComs a worker would push.

Opt-in (``end_from_trigger=True``): Airflow's DagBag refuses a DAG holding such a task while any
listener is registered (``airflow/dag_processing/dagbag.py``, ``bag_dag``).

Airflow's ``TaskSuccessEvent`` carries XComs; the triggerer marks the task successful and pushes
them, so no worker starts to resume it. Failures, timeouts and errors still resume on a worker.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from airflow.triggers.base import TaskSuccessEvent, TriggerEvent

from kling_provider import metrics
from kling_provider.hooks.kling import aclose_shared_clients
from kling_provider.operators.kling import KlingGenerateVideoOperator
from kling_provider.sensors.kling import KlingGenerationSensor
from kling_provider.testing.simulator import Faults, KlingSimulator
from kling_provider.triggers.kling import KlingGenerationTrigger
from kling_provider.types import Generation
from tests.conftest import SECRET_KEY, StateStoreStub, context_for
from tests.test_airflow_layer import RACCOON, defer, submit
from tests.test_spend import RecordingStats

pytestmark = pytest.mark.integration


def events(trigger: KlingGenerationTrigger, **changes: Any) -> list[TriggerEvent]:
    """Run a trigger as a triggerer would, after a JSON round trip of its kwargs."""
    _, kwargs = trigger.serialize()
    revived = KlingGenerationTrigger(**{**json.loads(json.dumps(kwargs)), **changes})

    async def collect() -> list[TriggerEvent]:
        try:
            return [event async for event in revived.run()]
        finally:
            await aclose_shared_clients()

    return asyncio.run(collect())


def test_sensor_success_ends_in_the_triggerer_with_the_worker_result(
        airflow_sim: KlingSimulator) -> None:
    generation_id = submit(airflow_sim)
    sensor = KlingGenerationSensor(task_id="wait", generation_id=generation_id,
                                   end_from_trigger=True)
    context = context_for(None)
    trigger = defer(sensor, context).trigger
    (ended,) = events(trigger)
    assert isinstance(ended, TaskSuccessEvent)
    (resumed,) = events(trigger, end_from_trigger=False)  # what a worker would have been given
    worker_result = sensor.execute_complete(context, resumed.payload)
    assert ended.xcoms == {"return_value": worker_result,
                           "video_url": context["ti"].xcom["video_url"]}


def test_failure_still_resumes_on_a_worker(airflow_sim: KlingSimulator) -> None:
    generation_id = submit(airflow_sim)
    airflow_sim.set_faults(generation_id, Faults(error={"name": "Moderation", "message": "no"}))
    trigger = defer(KlingGenerationSensor(task_id="wait", generation_id=generation_id,
                                          end_from_trigger=True), context_for(None)).trigger
    (event,) = events(trigger)
    assert not isinstance(event, TaskSuccessEvent)
    assert event.payload["status"] == "failure"


def test_generate_operator_ends_in_the_triggerer_only_when_asked_and_nothing_follows(
        airflow_sim: KlingSimulator) -> None:
    default = defer(KlingGenerateVideoOperator(task_id="g", **RACCOON),
                    context_for(StateStoreStub())).trigger
    assert not default.end_from_trigger and default.result_fields is None
    with_download = defer(KlingGenerateVideoOperator(task_id="g", end_from_trigger=True,
                                                     download_to="/tmp/kling/", **RACCOON),
                          context_for(StateStoreStub())).trigger
    assert not with_download.end_from_trigger  # the download needs a worker
    asked = defer(KlingGenerateVideoOperator(task_id="g", end_from_trigger=True, **RACCOON),
                  context_for(StateStoreStub())).trigger
    (ended,) = events(asked)
    assert isinstance(ended, TaskSuccessEvent) and ended.xcoms is not None
    result: Any = ended.xcoms["return_value"]
    assert result["generation_id"] == asked.generation_id
    assert (result["model"], result["prompt"]) == (RACCOON["model"], RACCOON["prompt"])
    assert result["video_url"] == ended.xcoms["video_url"]
    assert result["generation_seconds"] is not None


def test_ending_in_the_triggerer_counts_the_completion_and_spend(
        airflow_sim: KlingSimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's completion metrics are sent by the triggerer instead, for the paying task
    only: a sensor waiting on someone else's generation counts nothing."""
    stats = RecordingStats()
    monkeypatch.setattr(metrics, "_stats", lambda: stats)
    asked = defer(KlingGenerateVideoOperator(task_id="g", end_from_trigger=True, **RACCOON),
                  context_for(StateStoreStub())).trigger
    stats.calls.clear()  # the submission's own count
    (ended,) = events(asked)
    assert isinstance(ended, TaskSuccessEvent) and ended.xcoms is not None
    result: Any = ended.xcoms["return_value"]
    sent = {stat: (value, tags) for _, stat, value, tags in stats.calls}
    tags = {"model": RACCOON["model"]}
    assert sent[metrics.GENERATION_COMPLETED] == (1, tags)
    assert sent[metrics.DURATION] == (pytest.approx(result["generation_seconds"]), tags)
    assert sent[metrics.CREDITS_USED] == (round(result["credits_used"]), tags)
    assert sent[metrics.USD_SPENT] == (result["usd_spent"], tags)

    sensor = KlingGenerationSensor(task_id="wait", generation_id=submit(airflow_sim),
                                   end_from_trigger=True)
    stats.calls.clear()
    (sensed,) = events(defer(sensor, context_for(None)).trigger)
    assert isinstance(sensed, TaskSuccessEvent) and stats.calls == []


def test_ending_in_the_triggerer_imports_the_result_builder_off_the_loop(
        airflow_sim: KlingSimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """The operators' flow module (what builds the worker's result) is not a trigger's import:
    loading it inside the triggerer's loop would stall every trigger of the deployment."""
    from kling_provider.triggers import kling as trigger_module

    imported: list[str] = []
    real = trigger_module.import_off_loop

    async def recording(name: str) -> Any:
        imported.append(name)
        return await real(name)

    monkeypatch.setattr(trigger_module, "import_off_loop", recording)
    asked = defer(KlingGenerateVideoOperator(task_id="g", end_from_trigger=True, **RACCOON),
                  context_for(StateStoreStub())).trigger
    (ended,) = events(asked)
    assert isinstance(ended, TaskSuccessEvent)
    assert imported == [trigger_module.HOOK_MODULE, trigger_module.RESULT_MODULE]


def test_sensor_can_start_in_the_triggerer() -> None:
    sensor = KlingGenerationSensor(task_id="wait", start_from_trigger=True, end_from_trigger=True,
                                   timeout=600,
                                   generation_id="{{ ti.xcom_pull('submit')['generation_id'] }}")
    args = sensor.start_trigger_args
    assert sensor.start_from_trigger and args is not None
    assert args.trigger_cls == "kling_provider.triggers.kling.KlingGenerationTrigger"
    assert args.next_method == "execute_complete"
    kwargs = json.loads(json.dumps(args.trigger_kwargs))  # what Airflow stores, as JSON
    trigger = KlingGenerationTrigger(**kwargs)
    assert trigger.generation_id.startswith("{{")  # rendered by the triggerer (templated field)
    assert "generation_id" in sensor.template_fields
    assert trigger.end_from_trigger
    assert abs(trigger.deadline - (time.time() + 600)) < 5



def test_ending_in_the_triggerer_logs_no_url_credentials(caplog: pytest.LogCaptureFixture,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A video URL's ``user:password@`` and signed query stay out of the triggerer's log."""
    trigger = KlingGenerationTrigger(kling_conn_id="kling_default", generation_id="g-1",
                                     poll_interval=10, timeout=60, end_from_trigger=True,
                                     result_fields={"model": RACCOON["model"]})
    # A plain logger caplog sees (Airflow's own goes through structlog).
    monkeypatch.setattr(trigger, "_log", logging.getLogger("tests.trigger"))
    url = "https://mirror-user:mirror-secret@cdn.example/videos/g-1.mp4?signature=sig-secret"
    with caplog.at_level(logging.INFO, logger="tests.trigger"):
        event = trigger._task_success(Generation(generation_id="g-1", status="completed",
                                                 video_url=url))
    assert isinstance(event, TaskSuccessEvent)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "https://cdn.example/videos/g-1.mp4" in logged
    assert "mirror-secret" not in logged and "sig-secret" not in logged


def test_ending_in_the_triggerer_logs_the_runs_running_total_like_a_worker(
        airflow_sim: KlingSimulator, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """The spend line in the triggerer reads the run's other generate results (through the
    triggerer's XCom reads) and says the run's total, as the worker's completion does; when
    they cannot be read it is the line without a total."""
    from types import SimpleNamespace

    from airflow.sdk import DAG
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance
    from airflow.sdk.execution_time.xcom import XCom

    from kling_provider._task import run_results

    operator = KlingGenerateVideoOperator(task_id="g", end_from_trigger=True, **RACCOON)
    with DAG("ends_in_triggerer", schedule=None):
        mapped = KlingGenerateVideoOperator.partial(task_id="m", model=RACCOON["model"]).expand(
            prompt=["a", "b", "c"])
    context = context_for(StateStoreStub())
    context["dag"] = SimpleNamespace(tasks=[operator, SimpleNamespace(task_id="download"),
                                            KlingGenerateVideoOperator(task_id="h", **RACCOON),
                                            mapped])
    trigger = defer(operator, context).trigger
    assert trigger.result_fields is not None and trigger.result_fields["run_tasks"] == ["g", "h"]
    assert trigger.result_fields["mapped_run_tasks"] == ["m"]
    earlier = {("h", -1): {"generation_id": "earlier-1", "usd_spent": 1.4},
               ("m", 0): {"generation_id": "variant-0", "usd_spent": 1.4},
               # As Airflow 3.3.2 reads back what a TaskSuccessEvent pushed: JSON text.
               ("m", 2): json.dumps({"generation_id": "variant-2", "usd_spent": 2.8})}
    reads: list[dict[str, Any]] = []
    # The triggerer's task states of the mapped task: index 1 still generating.
    states = {"r": {"m_0": "success", "m_1": "deferred", "m_2": "success"}}
    state_reads: list[dict[str, Any]] = []

    def get_one(**query: Any) -> Any:
        reads.append(query)
        return earlier.get((query["task_id"], query["map_index"]))

    def get_task_states(**query: Any) -> Any:
        state_reads.append(query)
        return states

    monkeypatch.setattr(XCom, "get_one", get_one)
    monkeypatch.setattr(RuntimeTaskInstance, "get_task_states", get_task_states)
    _, kwargs = trigger.serialize()

    def spend_line() -> str:
        revived = KlingGenerationTrigger(**json.loads(json.dumps(kwargs)))
        monkeypatch.setattr(revived, "task_instance", SimpleNamespace(
            dag_id="d", run_id="r", task_id="g", map_index=-1), raising=False)
        monkeypatch.setattr(revived, "_log", logging.getLogger("tests.trigger"))

        async def collect() -> list[TriggerEvent]:
            try:
                return [event async for event in revived.run()]
            finally:
                await aclose_shared_clients()

        caplog.clear()
        with caplog.at_level(logging.INFO, logger="tests.trigger"):
            (ended,) = asyncio.run(collect())
        assert isinstance(ended, TaskSuccessEvent)
        (line,) = [r.getMessage() for r in caplog.records if "finished in" in r.getMessage()]
        return line

    line = spend_line()
    assert sorted((q["dag_id"], q["run_id"], q["task_id"], q["map_index"], q["key"])
                  for q in reads) == [
        ("d", "r", "g", -1, "return_value"), ("d", "r", "h", -1, "return_value"),
        ("d", "r", "m", 0, "return_value"), ("d", "r", "m", 2, "return_value")]
    assert state_reads == [{"dag_id": "d", "task_ids": ["m"], "run_ids": ["r"]}]
    assert line.endswith(". This DAG run so far: $7.00 for 4 generations.")
    monkeypatch.setattr(XCom, "get_one", lambda **query: 1 / 0)  # unreadable: no total
    line = spend_line()
    assert "so far" not in line and line.endswith("(estimated before submitting: $1.40).")
    # At the bound on reads per completion (g, h and 62 map indexes): still the total.
    states["r"] = {f"m_{i}": "success" for i in range(run_results.MAX_TRIGGERER_READS - 2)}
    monkeypatch.setattr(XCom, "get_one", get_one)
    reads.clear()
    assert spend_line().endswith(". This DAG run so far: $7.00 for 4 generations.")
    assert len(reads) == run_results.MAX_TRIGGERER_READS
    # Past it: the line without a total, and no XCom read.
    states["r"]["m_99"] = "success"
    reads.clear()
    line = spend_line()
    assert "so far" not in line and reads == []
    gallery = (Path(__file__).parents[1] / "docs" / "gallery.rst").read_text()
    assert f"at most {run_results.MAX_TRIGGERER_READS} XCom\n  reads per completion" in gallery


def test_the_succeeded_map_indexes_are_read_from_one_tasks_states() -> None:
    """Only the asked task's ``<task id>_<index>`` names in state ``success`` count; another
    task's name that starts the same (``m_1`` of ``m`` vs ``m_1_0`` of ``m_1``) does not."""
    from kling_provider._task.run_results import succeeded_map_indexes

    states = {"r": {"m_10": "success", "m_2": "success", "m_1_0": "success", "m_3": "failed",
                    "m": "success", "mx_4": "success"}, "other": {"m_5": "success"}}
    assert succeeded_map_indexes(states, "r", "m") == [2, 10]
    assert succeeded_map_indexes(states, "absent", "m") == []


def test_ending_in_the_triggerer_releases_the_budget_reservation(
        airflow_sim: KlingSimulator, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A task with a budget that ends in the triggerer deletes its reservation there (its video
    is billed now), through the triggerer's Variables; another task's stays. A delete that
    fails is a warning, and the task still ends with its video."""
    from kling_provider._task import reservations
    from tests.test_budget import DictStore

    store = DictStore()
    monkeypatch.setattr(reservations, "STORE", store)
    other = reservations.Reservation.of(SECRET_KEY, "f" * 16, expires_at=10.0**10,
                                        usd=None)
    store.set(other.name, "{}")
    budgeted = defer(KlingGenerateVideoOperator(task_id="g", end_from_trigger=True,
                                                budget_usd="50", budget_period="day", **RACCOON),
                     context_for(StateStoreStub())).trigger
    assert budgeted.result_fields is not None
    token = budgeted.result_fields["reservation"]
    assert isinstance(token, str) and SECRET_KEY not in json.dumps(budgeted.serialize())
    assert [n for n in store.values if f".{token}." in n]  # reserved before paying
    (ended,) = events(budgeted)
    assert isinstance(ended, TaskSuccessEvent)
    assert list(store.values) == [other.name]
    # Without a budget, no reservation to name, and no Variable touched.
    plain = defer(KlingGenerateVideoOperator(task_id="g", end_from_trigger=True, **RACCOON),
                  context_for(StateStoreStub())).trigger
    assert plain.result_fields is not None and plain.result_fields["reservation"] is None
    # A store that cannot delete: the task still ends, the reservation is left to expire.
    budgeted = defer(KlingGenerateVideoOperator(task_id="g", end_from_trigger=True,
                                                budget_usd="50", budget_period="day", **RACCOON),
                     context_for(StateStoreStub())).trigger

    def refuse(name: str) -> None:
        raise OSError("the execution API is unreachable")

    monkeypatch.setattr(store, "delete", refuse)
    with caplog.at_level(logging.WARNING, logger="kling_provider"):
        (ended,) = events(budgeted)
    assert isinstance(ended, TaskSuccessEvent)
    assert "Could not release the budget reservation of this task (OSError)" in caplog.text
