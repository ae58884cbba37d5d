"""The gallery's database reads: ``kling://videos`` Asset events and generate tasks' XCom.

The list and its spend are :mod:`~kling_provider.gallery.queries` (over the page's summary,
:mod:`~kling_provider.gallery.summary`); here: the Asset's ids, one
event (the video routes), the DAG that first recorded a file, and how each database reads a
field of a JSON column (:class:`JsonReads`). Rows become the pure records of ``records``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, case, cast, func, select
from sqlalchemy.dialects.postgresql import JSONB

from kling_provider._task.result import GENERATION_ID_XCOM_KEY, RESULT_XCOM_KEY, VIDEOS_ASSET_URI
from kling_provider.gallery.records import EventRow, TaskRef

#: The download operator's default Asset; Airflow stores its URI normalised with a trailing "/".
VIDEOS_ASSET_URIS = (VIDEOS_ASSET_URI, f"{VIDEOS_ASSET_URI}/")
#: The generate operators push the id under this key right after the POST (durable submission).
GENERATION_ID_KEY = GENERATION_ID_XCOM_KEY
#: The generate operators' result (:class:`kling_provider._task.result.GenerationResult`).
RESULT_KEY = RESULT_XCOM_KEY


#: Amounts are summed as integers of this many parts of a unit (USD to the millionth of a
#: dollar): exact on every database, up to 9.2e18 units (9.2e12 dollars) in one sum.
SCALE = 10**6


class JsonReads:
    """JSON field reads of one dialect: SQLite's ``json_extract`` or PostgreSQL's ``jsonb`` (the
    file route's owner check; the list reads the typed summary, :mod:`~kling_provider.gallery.
    summary`)."""

    def __init__(self, dialect: str) -> None:
        self.postgres = dialect == "postgresql"

    def text(self, column: Any, key: str | None = None) -> ColumnElement[Any]:
        """The string at ``key`` (the whole value when ``None``); ``NULL`` for any other type."""
        if self.postgres:
            value = cast(column, JSONB)
            item = value if key is None else value.op("->")(key)
            raw = value.op("#>>")("{}") if key is None else value.op("->>")(key)
            return case((func.jsonb_typeof(item) == "string", raw))
        path = "$" if key is None else f'$."{key}"'
        return case((func.json_type(column, path) == "text", func.json_extract(column, path)))


def videos_asset_ids() -> list[int]:
    """The ids of the ``kling://videos`` Asset (the auth manager is asked about each)."""
    # ORM models (~0.4 s): every Airflow process loads this plugin, only page requests use them
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
    # ORM models (~0.4 s): every Airflow process loads this plugin, only page requests use them
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
    # ORM models (~0.4 s): every Airflow process loads this plugin, only page requests use them
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        recorded = JsonReads(session.get_bind().dialect.name).text(AssetEvent.extra, "uri")
        return session.scalar(
            select(AssetEvent.source_dag_id)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetModel.uri.in_(VIDEOS_ASSET_URIS), AssetEvent.source_dag_id.is_not(None),
                   recorded == uri)
            .order_by(AssetEvent.id).limit(1))


def _map_index(value: int | None) -> int:
    return -1 if value is None else value
