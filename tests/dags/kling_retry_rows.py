"""Issue 7's table as one DAG for ``airflow dags test``: each task fails its first try at the
moment its row names, so the retry runs with the real ``task_state_store`` of that first try.

Used by ``tests/test_never_paying_twice.py::test_dags_test_rows`` (the simulator is the connection).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG

from kling_provider.operators._record import TaskRecord
from kling_provider.operators._recover import Recovery
from kling_provider.operators.kling import KlingGenerateVideoOperator


def _dies(context: Any) -> None:
    task_id = context["ti"].task_id
    logging.getLogger(__name__).warning("%s try 1 dies here", task_id)
    raise RuntimeError(f"{task_id}: the worker is gone")


# Each row's fault is where the operator's runtime writes its record or looks its generation up:
# the runtime's classes are wrapped once per process, acting only for the tasks named here.
_recover, _record_generation = Recovery.recover, TaskRecord.record_generation


def recover(self: Recovery, stored: Any) -> Any:
    """Row 1 with a retry: the create answer is lost and the try dies before its lookup ends."""
    context = self.record.context
    if self.task.task_id == "answer_lost_then_retry" and context["ti"].try_number == 1:
        _dies(context)
    return _recover(self, stored)


def record_generation(self: TaskRecord, record: Any, generation_id: str, now: float) -> Any:
    """Row 3: the worker dies after the create answer, before the id reached the store.
    Row 4: the ``xcom_push`` right after the POST fails (execution API unreachable)."""
    context = self.context
    if context["ti"].try_number == 1 and self.task_id == "killed_before_store":
        _dies(context)
    if context["ti"].try_number == 1 and self.task_id == "xcom_push_fails":
        def unreachable(*args: Any, **kwargs: Any) -> None:
            _dies(context)

        # The SDK's task instance is a pydantic model: bypass its field check.
        object.__setattr__(context["ti"], "xcom_push", unreachable)
    return _record_generation(self, record, generation_id, now)


if not getattr(Recovery.recover, "kling_retry_rows", False):  # a second parse wraps nothing
    recover.kling_retry_rows = True  # type: ignore[attr-defined]
    Recovery.recover = recover  # type: ignore[method-assign]
    TaskRecord.record_generation = record_generation  # type: ignore[method-assign]


with DAG(dag_id="kling_retry_rows", schedule=None, start_date=datetime(2026, 1, 1),
         catchup=False, default_args={"retries": 2, "retry_delay": timedelta(seconds=1)}):
    common: dict[str, Any] = {"model": "klingai/v2-master-text-to-video", "prompt": "A raccoon",
                              "poll_interval": 0.2}
    KlingGenerateVideoOperator(task_id="answer_lost", **common,
                               extra_params={"simulator_faults": {"create_drop": True}})
    KlingGenerateVideoOperator(task_id="answer_502", **common,
                               extra_params={"simulator_faults": {"create_status": 502}})
    KlingGenerateVideoOperator(task_id="answer_lost_then_retry", **common,
                               extra_params={"simulator_faults": {"create_drop": True}})
    KlingGenerateVideoOperator(task_id="killed_before_store", **common)
    KlingGenerateVideoOperator(task_id="xcom_push_fails", **common)
