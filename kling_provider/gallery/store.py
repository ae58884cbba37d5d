"""The gallery's database reads: ``kling://videos`` Asset events and generate tasks' XCom.

The list and its spend are :mod:`~kling_provider.gallery.queries`; here: the Asset's ids, one
event (the video routes) and the DAG that first recorded a file. Rows become the pure records of
``records``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from kling_provider.gallery.records import EventRow, TaskRef

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


def event_row(event: Any) -> EventRow:
    """An ``AssetEvent`` as the pure record the page is built from."""
    return EventRow(event_id=event.id, timestamp=event.timestamp, extra=dict(event.extra or {}),
                    asset_id=event.asset_id,
                    source=TaskRef(event.source_dag_id or "", event.source_run_id or "",
                                   event.source_task_id or "", _map_index(event.source_map_index)))


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
        return event_row(event)


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
