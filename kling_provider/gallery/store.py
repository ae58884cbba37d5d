"""The gallery's database reads: ``kling://videos`` Asset events and generate tasks' XCom.

Only DAGs (and Assets) the caller may read are queried (the caller passes the auth manager's
answer, :mod:`~kling_provider.gallery.access`), so a video of another DAG is never even loaded.
Rows become the pure records of ``records``.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import select

from kling_provider.gallery.records import EventRow, GenerationRow, TaskRef

#: The download operator's default Asset; Airflow stores its URI normalised with a trailing "/".
VIDEOS_ASSET_URIS = ("kling://videos", "kling://videos/")
#: The generate operators push the id under this key right after the POST (durable submission).
GENERATION_ID_KEY = "generation_id"


def videos_asset_ids() -> list[int]:
    """The ids of the ``kling://videos`` Asset (the auth manager is asked about each)."""
    from airflow.models.asset import AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        return list(session.scalars(select(AssetModel.id)
                                    .where(AssetModel.uri.in_(VIDEOS_ASSET_URIS))))


def load_rows(dag_ids: Collection[str], asset_ids: Collection[int], *, limit: int = 500
              ) -> tuple[list[EventRow], list[GenerationRow]]:
    """The newest ``limit`` events (of ``asset_ids``) and generations of ``dag_ids``."""
    from airflow.models.asset import AssetEvent
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    if not dag_ids:
        return [], []
    with create_session() as session:
        events = session.scalars(
            select(AssetEvent)
            .where(AssetEvent.asset_id.in_(asset_ids), AssetEvent.source_dag_id.in_(dag_ids))
            .order_by(AssetEvent.timestamp.desc()).limit(limit)).all() if asset_ids else []
        event_rows = [
            EventRow(event_id=e.id, timestamp=e.timestamp, extra=dict(e.extra or {}),
                     asset_id=e.asset_id,
                     source=TaskRef(e.source_dag_id or "", e.source_run_id or "",
                                    e.source_task_id or "", _map_index(e.source_map_index)))
            for e in events if e.source_dag_id]
        pushed = session.scalars(
            select(XComModel).where(XComModel.key == GENERATION_ID_KEY,
                                    XComModel.dag_id.in_(dag_ids))
            .order_by(XComModel.timestamp.desc()).limit(limit)).all()
        results: dict[tuple[int, str, int], Any] = {}
        if pushed:
            for row in session.scalars(select(XComModel).where(
                    XComModel.key == "return_value",
                    XComModel.dag_run_id.in_({x.dag_run_id for x in pushed}),
                    XComModel.task_id.in_({x.task_id for x in pushed}))):
                results[(row.dag_run_id, row.task_id, row.map_index)] = \
                    XComModel.deserialize_value(row)
        generation_rows = []
        for row in pushed:
            generation_id = XComModel.deserialize_value(row)
            if not isinstance(generation_id, str) or not generation_id:
                continue
            result = results.get((row.dag_run_id, row.task_id, row.map_index))
            generation_rows.append(GenerationRow(
                source=TaskRef(row.dag_id, row.run_id, row.task_id, row.map_index),
                timestamp=row.timestamp, generation_id=generation_id,
                result=result if isinstance(result, dict) else None))
    return event_rows, generation_rows


def load_event(event_id: int) -> EventRow | None:
    """One ``kling://videos`` event produced by a task; ``None`` for anything else."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        event = session.scalars(
            select(AssetEvent).join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetEvent.id == event_id, AssetModel.uri.in_(VIDEOS_ASSET_URIS))).first()
        if event is None or not event.source_dag_id:
            return None  # events posted through the REST API name no DAG: never served
        return EventRow(event_id=event.id, timestamp=event.timestamp,
                        extra=dict(event.extra or {}), asset_id=event.asset_id,
                        source=TaskRef(event.source_dag_id, event.source_run_id or "",
                                       event.source_task_id or "",
                                       _map_index(event.source_map_index)))


def owner_dag(uri: str) -> str | None:
    """The DAG whose task first recorded ``uri``: the oldest task-produced ``kling://videos``
    event naming it. A later event of another DAG naming the same file does not make it theirs.
    """
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.execute(
            select(AssetEvent.source_dag_id, AssetEvent.extra)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetModel.uri.in_(VIDEOS_ASSET_URIS), AssetEvent.source_dag_id.is_not(None))
            .order_by(AssetEvent.id).execution_options(yield_per=500))
        for dag_id, extra in rows:
            if isinstance(extra, dict) and extra.get("uri") == uri:
                return str(dag_id)
    return None


def _map_index(value: int | None) -> int:
    return -1 if value is None else value
