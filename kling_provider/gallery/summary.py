"""The videos page's own summary of every stored video: typed, indexed rows kept up to date.

Why it exists: the page filters, pages and sums over all of history (100,000 videos and more).
Computed from Airflow's own rows, each request parsed every ``kling://videos`` event's ``extra``
and every generate task's XCom (JSON, which no index serves) and grouped them by generation id:
2-3 s at 100,000 on SQLite and PostgreSQL, and growing with history. Here each video is one
row of typed columns (:data:`videos`) that indexes serve: the page reads one page of rows and
sums a covering index.

Why the api-server keeps it: Airflow 3 workers write nothing to the metadata DB themselves (the
Task SDK goes through the execution API), so a provider cannot hook the writes; the page's own
process brings the summary up to date at the start of each request (:func:`catch_up`), from
what changed since the last one:

- events: the ``asset_event`` ids above the highest one mirrored (:data:`events`, one typed row
  per event); then a fingerprint (count and sum of ids) of both sides up to that id. When they
  differ (``airflow db clean`` deleted events, or an event committed after a higher id was
  read), the two id lists are compared and only the difference is applied;
- generate tasks: the XCom of DAG runs still queued or running, and of runs updated since the
  last catch-up (a finished or cleared run is written at that moment), less :data:`SETTLE`,
  unless the summary saw that very ``updated_at``; then the number of ``generation_id`` XComs
  against the number the summary saw: when they differ (``airflow db clean`` deleted XCom), the
  counts per run find the runs to read again.

A run is re-summarised as a whole (:func:`summarise_run`, pure: the same field validation as the
cards, ``records._text``/``_money``/``exact_amount``), its rows upserted by key and its stale
rows deleted, so two api-servers catching up at once write the same rows (on PostgreSQL they
also take turns on an advisory lock). A video is a generation within its DAG run: the newest
event naming it (any field it lacks comes from the generate task's return value), or the task's
XCom alone before it is stored; an event naming no generation is its own video. An event of
another DAG or run naming the same id is another video: a DAG author cannot attach an event to
another DAG's generation.

Why a table of the provider's own, created on first use: FAB and the edge3 provider own tables
through an Alembic migration tree registered in ``[database] external_db_managers``
(``airflow.utils.db_manager.BaseDBManager``), which every deployment would have to configure.
This summary is derived data: it is created when missing and, when :data:`SCHEMA` changes,
dropped and rebuilt from Airflow's rows (the one-time catch-up: measured in
``benchmarks/gallery_views.py``). Issue 20 (budgets across runs) can sum the same rows.

Hostile values: amounts beyond :data:`MAX_UNITS` and texts longer than :data:`MAX_TEXT` are
"not reported" (no row can break a sum or an index); a generation id is keyed by its SHA-256.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from airflow.utils.sqlalchemy import UtcDateTime
from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, String, Table, Text, select
from sqlalchemy.orm import Session

from kling_provider.gallery.records import CREDITS_KEYS, USD_KEYS, _money, _text
from kling_provider.gallery.store import SCALE

#: Bump when the tables change: the summary is dropped and rebuilt from Airflow's rows.
SCHEMA = 1
#: Runs updated this long before the last catch-up are looked at again (the writer's clock and
#: its commit may lag ours); one whose ``updated_at`` the summary already saw is not re-read.
SETTLE = timedelta(minutes=2)
#: One video's amount (USD or credits), in :data:`~kling_provider.gallery.store.SCALE` units,
#: beyond which it is not a reported figure (100 million): 92,000 such rows still sum in 64 bits.
MAX_UNITS = 10**14
#: Longer names (model, DAG, run) are not indexed as reported: no real one is this long.
MAX_TEXT = 250
#: Runs re-summarised per statement batch; rows per insert.
BATCH = 500

metadata = MetaData()
marks = Table(
    "kling_gallery_mark", metadata,
    Column("name", String(32), primary_key=True),
    Column("schema", Integer, nullable=False),
    Column("event_id", BigInteger, nullable=False),  # highest asset_event id mirrored
    Column("checked_at", UtcDateTime, nullable=True))  # when runs were last read
events = Table(
    "kling_gallery_event", metadata,
    Column("event_id", BigInteger, primary_key=True, autoincrement=False),
    Column("asset_id", Integer, nullable=False),
    Column("dag_id", String(MAX_TEXT), nullable=True),
    Column("run_id", String(MAX_TEXT), nullable=True),
    Column("timestamp", UtcDateTime, nullable=False),
    Column("generation_id", Text, nullable=True),
    Column("model", String(MAX_TEXT), nullable=True),
    Column("usd", BigInteger, nullable=True),
    Column("credits", BigInteger, nullable=True),
    Index("kling_gallery_event_run", "dag_id", "run_id"))
runs = Table(
    "kling_gallery_run", metadata,
    Column("dag_id", String(MAX_TEXT), primary_key=True),
    Column("run_id", String(MAX_TEXT), primary_key=True),
    Column("dag_run_id", Integer, nullable=True),
    Column("pushed", Integer, nullable=False),  # generation_id XComs the summary saw
    Column("updated_at", UtcDateTime, nullable=True))  # the run's, when it was summarised
videos = Table(
    "kling_gallery_video", metadata,
    Column("key", String(64), primary_key=True),
    Column("dag_id", String(MAX_TEXT), nullable=False),
    Column("run_id", String(MAX_TEXT), nullable=False),
    Column("timestamp", UtcDateTime, nullable=False),
    Column("day", String(10), nullable=False),
    Column("generation_key", String(64), nullable=True),
    Column("model", String(MAX_TEXT), nullable=True),
    Column("usd", BigInteger, nullable=True),
    Column("credits", BigInteger, nullable=True),
    Column("event_id", BigInteger, nullable=True),
    Column("asset_id", Integer, nullable=True),
    Column("task_id", String(MAX_TEXT), nullable=True),
    Column("map_index", Integer, nullable=True),
    Index("kling_gallery_video_newest", "timestamp", "event_id"),
    Index("kling_gallery_video_spend", "dag_id", "day", "model", "run_id", "usd", "credits",
          "timestamp"),
    Index("kling_gallery_video_run", "dag_id", "run_id"),
    Index("kling_gallery_video_generation", "generation_key"))
MARK = "videos"


def digest(text: str) -> str:
    """The key of a text of any length (generation ids are the DAG author's to choose)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def units(amount: Decimal | None) -> int | None:
    """A validated amount as an integer of SCALE units; ``None`` beyond :data:`MAX_UNITS`."""
    if amount is None:
        return None
    scaled = int((amount * SCALE).to_integral_value(ROUND_HALF_UP))
    return scaled if abs(scaled) <= MAX_UNITS else None


def short(value: Any) -> str | None:
    """A reported name (non-empty text) that fits an index, else ``None``."""
    return value if isinstance(value, str) and value and len(value) <= MAX_TEXT else None


@dataclass(frozen=True)
class Fields:
    """What one event's extra or one task's return value reports, validated."""

    generation_id: str | None
    model: str | None
    usd: int | None
    credits: int | None


def fields(values: Any) -> Fields:
    """The fields the summary keeps, validated as the cards validate them (``records``)."""
    found: Mapping[str, Any] = values if isinstance(values, Mapping) else {}
    return Fields(generation_id=_text(found, "generation_id"),
                  model=short(_text(found, "model")),
                  usd=units(_money(found, USD_KEYS)), credits=units(_money(found, CREDITS_KEYS)))


@dataclass(frozen=True)
class Pushed:
    """A task's pushed generation id and its return value (``None``: not returned yet)."""

    task_id: str
    map_index: int
    timestamp: datetime
    generation_id: str
    result: Fields | None


def summarise_run(dag_id: str, run_id: str, run_events: Iterable[Mapping[str, Any]],
                  pushed: Iterable[Pushed]) -> list[dict[str, Any]]:
    """The video rows of one DAG run: each generation once (its newest event, completed by the
    task's return value; or the task alone), and each event naming no generation."""
    newest: dict[str, Mapping[str, Any]] = {}
    rows: dict[str, dict[str, Any]] = {}
    for event in sorted(run_events, key=lambda e: (e["timestamp"], e["event_id"])):
        if event["generation_id"] is None:
            rows[f"event:{event['event_id']}"] = _row(dag_id, run_id, event, None)
        else:
            newest[event["generation_id"]] = event
    tasks: dict[str, Pushed] = {}
    for task in sorted(pushed, key=lambda p: (p.timestamp, p.task_id, p.map_index)):
        tasks[task.generation_id] = task
    for generation_id in {*newest, *tasks}:
        key = digest(f"{dag_id}\0{run_id}\0{generation_id}")
        rows[key] = _row(dag_id, run_id, newest.get(generation_id), tasks.get(generation_id),
                         generation_id)
    return [{"key": key, **row} for key, row in sorted(rows.items())]


def _row(dag_id: str, run_id: str, event: Mapping[str, Any] | None, task: Pushed | None,
         generation_id: str | None = None) -> dict[str, Any]:
    result = task.result if task and task.result else Fields(None, None, None, None)

    def either(name: str) -> Any:
        value = event[name] if event is not None else None
        return value if value is not None else getattr(result, name)

    when = event["timestamp"] if event is not None else task.timestamp  # type: ignore[union-attr]
    return {"dag_id": dag_id, "run_id": run_id, "timestamp": when,
            "day": when.astimezone(timezone.utc).date().isoformat(),
            "generation_key": digest(generation_id) if generation_id is not None else None,
            "model": either("model"), "usd": either("usd"), "credits": either("credits"),
            "event_id": event["event_id"] if event is not None else None,
            "asset_id": event["asset_id"] if event is not None else None,
            "task_id": task.task_id if task else None,
            "map_index": task.map_index if task else None}


def event_values(row: Any) -> dict[str, Any]:
    """An ``asset_event`` row (id, asset_id, extra, dag, run, timestamp) as a mirrored row."""
    found = fields(row.extra)
    return {"event_id": row.id, "asset_id": row.asset_id, "dag_id": short(row.source_dag_id),
            "run_id": short(row.source_run_id) or "", "timestamp": row.timestamp,
            "generation_id": found.generation_id, "model": found.model, "usd": found.usd,
            "credits": found.credits}


def ensure_tables(session: Session) -> None:
    """Create the summary's tables when missing; drop and rebuild them on a new :data:`SCHEMA`."""
    bind = session.connection()
    metadata.create_all(bind, checkfirst=True)
    schema = session.scalar(select(marks.c.schema).where(marks.c.name == MARK))
    if schema is not None and schema != SCHEMA:
        metadata.drop_all(bind, checkfirst=True)
        metadata.create_all(bind, checkfirst=True)
        schema = None
    if schema is None:
        session.execute(marks.insert().values(name=MARK, schema=SCHEMA, event_id=0,
                                              checked_at=None))


def upsert(session: Session, table: Table, rows: Sequence[dict[str, Any]],
            update_columns: bool) -> None:
    """Insert ``rows`` by primary key; on a key already there, update it (or keep it)."""
    if not rows:
        return
    if session.get_bind().dialect.name == "postgresql":  # each dialect spells an upsert its way
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    keys = [column.name for column in table.primary_key]
    statement = insert(table)
    if update_columns:  # executemany of one compiled statement: a VALUES list per batch
        statement = statement.on_conflict_do_update(index_elements=keys, set_={  # is slow to
            name: statement.excluded[name] for name in rows[0] if name not in keys})  # compile
    else:
        statement = statement.on_conflict_do_nothing(index_elements=keys)
    for start in range(0, len(rows), BATCH * 10):
        session.execute(statement, list(rows[start:start + BATCH * 10]))
