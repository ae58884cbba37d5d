"""One try's submission record on Airflow: ``task_state_store`` and the XComs written with it.

The record's rules are pure (:mod:`kling_provider._task.submission`); :class:`TaskRecord` reads
and writes it for one try of one generate task, in the order that makes paying once provable:
the intent before the POST (by :mod:`._submission`), the generation id into the record *first*
after the answer, then XCom. Used by the runtime modules (``_submission``, ``_recover``,
``_generate``), at execute time only.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from kling_provider._task import submission as _submission
from kling_provider._task.result import GENERATION_ID_XCOM_KEY, VIDEO_URL_XCOM_KEY

if TYPE_CHECKING:
    from airflow.sdk import Context

    from kling_provider._task.submission import SubmissionRecord

__all__ = ["TaskRecord"]


class TaskRecord:
    """The submission record of the task try running in ``context``."""

    def __init__(self, context: Context, task_id: str) -> None:
        self.context = context
        self.task_id = task_id

    def ti_value(self, name: str, default: Any) -> Any:
        value = getattr(self.context.get("ti"), name, None)
        return default if value is None else value

    @property
    def store(self) -> Any:
        """``task_state_store`` (Airflow 3.3+), ``None`` before."""
        return self.context.get("task_state_store")

    @property
    def try_number(self) -> int:
        return int(self.ti_value("try_number", 1))

    @property
    def clear_number(self) -> int:
        return int(getattr(self.context.get("dag_run"), "clear_number", 0) or 0)

    def read(self) -> SubmissionRecord | None:
        store = self.store
        return _submission.SubmissionRecord.from_json(store.get(_submission.STATE_KEY)) \
            if store else None

    def write(self, record: SubmissionRecord) -> None:
        store = self.store
        if store is not None:
            store.set(_submission.STATE_KEY, record.to_json())

    def prefix(self) -> str:
        """This task's client request id prefix (dag, run, task, map index)."""
        return _submission.task_prefix(
            str(self.ti_value("dag_id", "dag")), str(self.ti_value("run_id", "run")),
            str(self.ti_value("task_id", self.task_id)), self.ti_value("map_index", -1))

    def push_generation_id(self, generation_id: str) -> None:
        self.context["ti"].xcom_push(key=GENERATION_ID_XCOM_KEY, value=generation_id)

    def record_generation(self, record: SubmissionRecord, generation_id: str,
                          now: float) -> SubmissionRecord:
        """The generation id into the record FIRST (the durable trace of the payment), then XCom."""
        stored = record.with_generation(generation_id, now)
        self.write(stored)
        self.push_generation_id(generation_id)
        # The extra link is evaluated whenever the task pauses or ends; an empty URL until the
        # video exists keeps that lookup from logging a missing-XCom error at every deferral.
        self.context["ti"].xcom_push(key=VIDEO_URL_XCOM_KEY, value="")
        return stored

    def mark_delivered(self, generation_id: str) -> None:
        """Note that the task succeeded with this generation: a later try is then a clear."""
        record = self.read()
        if record is not None and record.generation_id == generation_id:
            self.write(replace(record, delivered=True))
