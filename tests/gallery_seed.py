"""Generations written into a metadata DB as a real run leaves them, in bulk (tests, benchmark).

Each DAG run maps a generate task over ``per_run`` prompts and a download task over their
results: per generation a ``generate`` task instance with the ``generation_id`` XCom and the
return value (model, status, credits, USD, as the operators push them through the Task SDK:
native JSON), and, once stored, a ``kling://videos`` Asset event of the ``download`` task with
the extra the download writes. Rows go in with bulk inserts (100,000 in seconds).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

MODEL = "klingai/v2-master-text-to-video"
CHECKS_EVERY = timedelta(seconds=20)


@dataclass(frozen=True)
class Runs:
    """What to write: ``runs`` runs of ``dag_id`` with ``per_run`` generations each, a minute
    apart from ``start``, each costing ``usd`` and ``credits`` as reported; the last ``pending``
    generations of each run have no stored event (their download has not run)."""

    dag_id: str
    runs: int
    per_run: int
    start: datetime = datetime(2026, 1, 1, tzinfo=timezone.utc)
    usd: float = 1.4
    credits: int = 2_800_000
    model: str = MODEL
    pending: int = 0
    spend_in_event: bool = True
    step: timedelta = timedelta(minutes=1)
    #: Each generate task also records its budget check (the ``kling_budget`` XCom), the
    #: newest :data:`CHECKS_EVERY` before now and each one that much older than the next.
    budget_checks: bool = False
    #: Each generate task's result stored as JSON text, as Airflow 3.3.2 stores the result of a
    #: task that ended in the triggerer.
    results_as_text: bool = False

    def run_id(self, run: int) -> str:
        return f"manual__{self.dag_id}_{run:06d}"

    def generation_id(self, run: int, index: int) -> str:
        return f"{self.dag_id}-{run:06d}-{index:04d}:kling/{MODEL}"


def _chunks(rows: list[dict[str, Any]], size: int = 5000) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


def new_task_instance_id() -> Any:
    """A fresh task instance id in its column's own type: Airflow 3.1's ``String(36)`` binds only
    a string, the ``Uuid`` of later versions only a UUID."""
    from airflow.models.taskinstance import TaskInstance

    return TaskInstance.__table__.c.id.type.python_type(str(uuid.uuid4()))


def seed(session: Any, plan: Runs, asset_id: int) -> int:
    """Write ``plan``'s runs; the number of stored (event) generations."""
    from airflow.models.asset import AssetEvent
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from sqlalchemy import insert, select

    runs, instances, xcoms, events = [], [], [], []
    newest_check = datetime.now(timezone.utc) - CHECKS_EVERY
    for run in range(plan.runs):
        when = plan.start + run * plan.step * plan.per_run
        runs.append({"dag_id": plan.dag_id, "run_id": plan.run_id(run), "run_type": "manual",
                     "state": "success", "run_after": when, "logical_date": None,
                     "clear_number": 0})
    for chunk in _chunks(runs):
        session.execute(insert(DagRun.__table__), chunk)
    ids = dict(session.execute(select(DagRun.run_id, DagRun.id).where(
        DagRun.dag_id == plan.dag_id)).all())
    for run in range(plan.runs):
        for index in range(plan.per_run):
            when = plan.start + (run * plan.per_run + index) * plan.step
            generation_id = plan.generation_id(run, index)
            ref = {"dag_id": plan.dag_id, "run_id": plan.run_id(run), "map_index": index}
            instances.append({**ref, "id": new_task_instance_id(), "task_id": "generate", "pool": "default",
                              "pool_slots": 1, "state": "success", "try_number": 1})
            result = {"generation_id": generation_id, "model": plan.model, "status": "completed",
                      "credits_used": plan.credits, "usd_spent": plan.usd,
                      "prompt": f"prompt {run}/{index}"}
            pushed: list[tuple[str, Any, datetime]] = [
                ("generation_id", generation_id, when),
                ("return_value", json.dumps(result) if plan.results_as_text else result, when)]
            if plan.budget_checks:
                checked = newest_check - (plan.runs * plan.per_run - run * plan.per_run - index
                                          ) * CHECKS_EVERY
                pushed.append(("kling_budget", budget_check(checked), checked))
            for key, value, at in pushed:
                xcoms.append({**ref, "dag_run_id": ids[plan.run_id(run)], "task_id": "generate",
                              "key": key, "value": value, "timestamp": at})
            if index < plan.per_run - plan.pending:
                extra = {"generation_id": generation_id, "model": plan.model,
                         "uri": f"file:///videos/{generation_id}.mp4", "size": 2853}
                if plan.spend_in_event:
                    extra.update(credits_used=plan.credits, usd_spent=plan.usd)
                events.append({"asset_id": asset_id, "extra": extra,
                               "source_dag_id": plan.dag_id, "source_task_id": "download",
                               "source_run_id": plan.run_id(run), "source_map_index": index,
                               "timestamp": when + plan.step / 2})
    for table, rows in ((TaskInstance.__table__, instances), (XComModel.__table__, xcoms),
                        (AssetEvent.__table__, events)):
        for chunk in _chunks(rows):
            session.execute(insert(table), chunk)
    return len(events)


def budget_check(checked: datetime) -> dict[str, Any]:
    """A generate task's budget check as it records it (a $5.00-a-day budget, admitted)."""
    from decimal import Decimal

    from kling_provider._money.readings import BudgetReading

    return BudgetReading(key="a1" * 8, conn_id="kling_default", budget=Decimal("5.00"),
                         period="day", source="on connection 'kling_default'",
                         spent=Decimal("1.10"), in_flight=Decimal("1.4"), in_flight_count=1,
                         estimate=Decimal("1.4"), decision="admitted",
                         checked_at=checked).to_record()


def add_dag(session: Any, dag_id: str) -> None:
    """A DAG row for ``dag_id`` (Airflow's auth manager lists DAGs from these)."""
    from airflow.models.dag import DagModel
    from airflow.models.dagbundle import DagBundleModel

    if session.get(DagBundleModel, "bench_bundle") is None:
        session.add(DagBundleModel(name="bench_bundle"))
        session.flush()
    session.add(DagModel(  # type: ignore[no-untyped-call]
        dag_id=dag_id, bundle_name="bench_bundle", is_stale=False,
        max_active_tasks=16, max_consecutive_failed_dag_runs=0,
        has_task_concurrency_limits=False))
    session.flush()


def videos_asset(session: Any) -> int:
    """The ``kling://videos`` Asset's id (created when missing)."""
    from airflow.models.asset import AssetModel
    from sqlalchemy import select

    found = session.scalar(select(AssetModel.id).where(AssetModel.uri == "kling://videos/"))
    if found is None:
        asset = AssetModel(name="kling_videos", uri="kling://videos/", group="asset")
        session.add(asset)
        session.flush()
        found = asset.id
    return int(found)
