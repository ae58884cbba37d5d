"""Issue 7's table as one DAG for ``airflow dags test``: each task fails its first try at the
moment its row names, so the retry runs with the real ``task_state_store`` of that first try.

Used by ``tests/test_never_paying_twice.py::test_dags_test_rows`` (the simulator is the connection).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG

from kling_provider.operators.kling import KlingGenerateVideoOperator


def _dies(operator: KlingGenerateVideoOperator, context: Any) -> None:
    operator.log.warning("%s try 1 dies here", operator.task_id)
    raise RuntimeError(f"{operator.task_id}: the worker is gone")


class LostAnswerThenDies(KlingGenerateVideoOperator):
    """Row 1 with a retry: the create answer is lost and the try dies before its lookup ends."""

    def _recover(self, context: Any, hook: Any, record: Any) -> Any:
        if context["ti"].try_number == 1:
            _dies(self, context)
        return super()._recover(context, hook, record)


class KilledBeforeStore(KlingGenerateVideoOperator):
    """Row 3: the worker dies after the create answer, before the id reached the store."""

    def _record_generation(self, context: Any, record: Any, generation_id: str,
                           now: float) -> Any:
        if context["ti"].try_number == 1:
            _dies(self, context)
        return super()._record_generation(context, record, generation_id, now)


class XComPushFails(KlingGenerateVideoOperator):
    """Row 4: the ``xcom_push`` right after the POST fails (execution API unreachable)."""

    def _record_generation(self, context: Any, record: Any, generation_id: str,
                           now: float) -> Any:
        if context["ti"].try_number == 1:
            def unreachable(*args: Any, **kwargs: Any) -> None:
                _dies(self, context)

            # The SDK's task instance is a pydantic model: bypass its field check.
            object.__setattr__(context["ti"], "xcom_push", unreachable)
        return super()._record_generation(context, record, generation_id, now)


with DAG(dag_id="kling_retry_rows", schedule=None, start_date=datetime(2026, 1, 1),
         catchup=False, default_args={"retries": 2, "retry_delay": timedelta(seconds=1)}):
    common: dict[str, Any] = {"model": "klingai/v2-master-text-to-video", "prompt": "A raccoon",
                              "poll_interval": 0.2}
    KlingGenerateVideoOperator(task_id="answer_lost", **common,
                               extra_params={"simulator_faults": {"create_drop": True}})
    KlingGenerateVideoOperator(task_id="answer_502", **common,
                               extra_params={"simulator_faults": {"create_status": 502}})
    LostAnswerThenDies(task_id="answer_lost_then_retry", **common,
                       extra_params={"simulator_faults": {"create_drop": True}})
    KilledBeforeStore(task_id="killed_before_store", **common)
    XComPushFails(task_id="xcom_push_fails", **common)
