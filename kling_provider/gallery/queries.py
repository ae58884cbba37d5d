"""The videos page's list and spend, computed in the metadata database over every generation.

One SQL view of "a video" (:func:`_videos`): each ``kling://videos`` Asset event of a readable
DAG (the newest event per generation id; events naming no generation stand alone), completed
from its generate task's XCom, plus each generation whose task pushed its id but has no stored
event yet. The access rules are part of the query (only the DAG ids and Asset ids the caller
passes, :mod:`~kling_provider.gallery.access`), and so are the filters, so the spend sums, the
filter options and the pages of cards all cover every matching generation, however many.

Money is summed exactly: each amount becomes an integer count of millionths in SQL
(:data:`~kling_provider.gallery.store.SCALE`) and the sums come back as
:class:`~decimal.Decimal`, on SQLite and PostgreSQL
alike (JSON numbers are binary floats in SQLite). Only the page's rows are then read in full and
built into cards by the pure :func:`~kling_provider.gallery.records.build_videos`.

Used by :mod:`~kling_provider.gallery.app`; the benchmark ``benchmarks/gallery_views.py`` times
it at 100,000 stored events.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ColumnElement,
    and_,
    case,
    func,
    literal,
    null,
    or_,
    select,
    true,
    tuple_,
    type_coerce,
    union_all,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.selectable import CTE

from kling_provider.gallery.records import (
    CREDITS_KEYS,
    USD_KEYS,
    EventRow,
    Filters,
    GenerationRow,
    SpendGroup,
    TaskRef,
    plain,
)
from kling_provider.gallery.store import (
    GENERATION_ID_KEY,
    RESULT_KEY,
    SCALE,
    VIDEOS_ASSET_URIS,
    JsonReads,
    event_row,
)


def _videos(session: Session, dag_ids: Collection[str], asset_ids: Collection[int]) -> CTE:
    """One row per video the caller may see: each generation once, with its newest event (the
    highest id) and what its generate task reported, and each event naming no generation.

    Grouped, not joined, on the generation id read out of the JSON: a join on a computed value
    has no index, and SQLite would compare every pair.
    """
    # ORM models (~0.4 s): every Airflow process loads this plugin, only page requests use them
    from airflow.models.asset import AssetEvent
    from airflow.models.xcom import XComModel

    json = JsonReads(session.get_bind().dialect.name)
    dags = list(dag_ids)
    stored = json.parsed(select(
        AssetEvent.id, AssetEvent.timestamp, AssetEvent.source_dag_id, AssetEvent.source_run_id,
    ).where(AssetEvent.asset_id.in_(list(asset_ids) or [-1]), AssetEvent.source_dag_id.in_(dags)),
        AssetEvent.extra).subquery("stored")
    d = stored.c
    events = select(
        literal(2).label("side"), d.id.label("event_id"), d.timestamp,
        d.source_dag_id.label("dag_id"), d.source_run_id.label("run_id"),
        null().label("task_id"), null().label("map_index"),
        json.text(d.doc, "generation_id").label("generation_id"),
        json.text(d.doc, "model").label("model"), json.units(d.doc, USD_KEYS).label("usd"),
        json.units(d.doc, CREDITS_KEYS).label("credits"))
    pushed = select(XComModel).where(XComModel.key == GENERATION_ID_KEY,
                                     XComModel.dag_id.in_(dags)).subquery("pushed")
    result = json.parsed(select(XComModel.dag_run_id, XComModel.task_id, XComModel.map_index)
                         .where(XComModel.key == RESULT_KEY, XComModel.dag_id.in_(dags)),
                         XComModel.value).subquery("result")
    p, r = pushed.c, result.c
    generated = select(
        literal(1), null(), p.timestamp, p.dag_id, p.run_id, p.task_id, p.map_index,
        json.text(p.value), json.text(r.doc, "model"), json.units(r.doc, USD_KEYS),
        json.units(r.doc, CREDITS_KEYS),
    ).select_from(pushed.outerjoin(result, and_(
        r.dag_run_id == p.dag_run_id, r.task_id == p.task_id, r.map_index == p.map_index)))
    s = union_all(events, generated).subquery("kling_sides").c

    def event_side(column: Any) -> ColumnElement[Any]:
        return func.max(case((s.side == 2, column)))

    def task_side(column: Any) -> ColumnElement[Any]:
        return func.max(case((s.side == 1, column)))

    def either(column: Any) -> ColumnElement[Any]:
        return func.coalesce(event_side(column), task_side(column))

    anonymous = case((s.generation_id.is_(None), s.event_id))  # its own group
    return select(
        event_side(s.event_id).label("event_id"),
        type_coerce(either(s.timestamp), AssetEvent.timestamp.type).label("timestamp"),
        either(s.dag_id).label("dag_id"), either(s.run_id).label("run_id"),
        func.max(s.generation_id).label("generation_id"), either(s.model).label("model"),
        either(s.usd).label("usd"), either(s.credits).label("credits"),
        task_side(s.dag_id).label("generate_dag_id"),
        task_side(s.run_id).label("generate_run_id"),
        task_side(s.task_id).label("generate_task_id"),
        task_side(s.map_index).label("generate_map_index"),
    ).group_by(s.generation_id, anonymous).cte("kling_videos")


def _matching(videos: CTE, filters: Filters) -> ColumnElement[bool]:
    """The filters as one SQL condition on :func:`_videos`' rows (``Filters.accepts``' rules)."""
    v = videos.c
    found: list[ColumnElement[bool]] = []
    if filters.dag_id:
        found.append(or_(v.dag_id == filters.dag_id, v.generate_dag_id == filters.dag_id))
    if filters.run_id:
        found.append(or_(v.run_id == filters.run_id, v.generate_run_id == filters.run_id))
    if filters.model:
        found.append(v.model == filters.model)
    if filters.generation_id:
        found.append(v.generation_id == filters.generation_id)
    if filters.since:
        found.append(v.timestamp >= datetime.combine(filters.since, time(), tzinfo=timezone.utc))
    if filters.until:
        found.append(v.timestamp < datetime.combine(filters.until + timedelta(days=1), time(),
                                                    tzinfo=timezone.utc))
    return and_(true(), *found)


def _amount(units: Any) -> Decimal | None:
    """A sum of :data:`SCALE` units as the exact decimal it is (``None``: nothing reported)."""
    return None if units is None else plain(Decimal(int(units)) / SCALE)


@dataclass(frozen=True)
class Listing:
    """What one request of the page needs: its cards' rows, the spend of every match, the
    filter options (every video the user may see, unfiltered)."""

    events: list[EventRow]
    generations: list[GenerationRow]
    groups: list[SpendGroup]
    dag_ids: list[str]
    models: list[str]


def listing(dag_ids: Collection[str], asset_ids: Collection[int], filters: Filters, *,
            offset: int, limit: int) -> Listing:
    """The page ``offset``/``limit`` of the matching videos, newest first, with the spend groups
    (per UTC day, model and DAG run) of every match."""
    # the metadata database: only page requests use it (see _videos)
    from airflow.utils.session import create_session

    if not dag_ids:
        return Listing([], [], [], [], [])
    with create_session() as session:
        videos = _videos(session, dag_ids, asset_ids)
        v = videos.c
        day = JsonReads(session.get_bind().dialect.name).day(v.timestamp)
        matches = _matching(videos, filters)
        # One statement, so the database builds the videos once (a CTE used twice is
        # materialized): the spend groups (matching or not: every group gives the filter
        # options) and, beside them, the page's rows.
        matched = case((matches, 1), else_=0)
        page = select(v.timestamp, v.event_id, v.generate_dag_id, v.generate_run_id,
                      v.generate_task_id, v.generate_map_index).where(matches).order_by(
            v.timestamp.desc(), v.event_id.desc()).offset(offset).limit(limit).subquery()
        both = union_all(
            select(literal(0), day, v.model, v.dag_id, v.run_id, matched, func.count(),
                   func.sum(v.usd), func.sum(v.credits), func.max(v.timestamp), null(), null(),
                   null(), null(), null()).group_by(day, v.model, v.dag_id, v.run_id, matched),
            select(literal(1), null(), null(), null(), null(), null(), null(), null(), null(),
                   *page.c))
        groups, options, shown = [], set(), []
        for row in session.execute(both):
            if row[0]:
                shown.append(row[9:])
                continue
            options.add((row[3], row[2]))
            if row[5]:
                groups.append(SpendGroup(day=str(row[1]), model=row[2], dag_id=row[3],
                                         run_id=row[4] or "", count=row[6], usd=_amount(row[7]),
                                         credits=_amount(row[8]), newest=row[9]))
        shown.sort(key=lambda row: (row[0], row[1] or 0), reverse=True)
        events = _events(session, [row[1] for row in shown if row[1] is not None])
        generations = _generations(session, [tuple(row[2:]) for row in shown if row[2]])
    return Listing(events, generations, groups, dag_ids=sorted({dag for dag, _ in options}),
                   models=sorted({model for _, model in options if model}))


def _events(session: Session, event_ids: list[int]) -> list[EventRow]:
    # ORM models (~0.4 s): every Airflow process loads this plugin, only page requests use them
    from airflow.models.asset import AssetEvent, AssetModel

    if not event_ids:
        return []
    return [event_row(event) for event in session.scalars(
        select(AssetEvent).join(AssetModel, AssetModel.id == AssetEvent.asset_id)
        .where(AssetEvent.id.in_(event_ids), AssetModel.uri.in_(VIDEOS_ASSET_URIS)))]


def _generations(session: Session, tasks: list[tuple[Any, ...]]) -> list[GenerationRow]:
    """The generate XComs (id and return value) of the page's generate task instances."""
    # ORM models (~0.4 s): every Airflow process loads this plugin, only page requests use them
    from airflow.models.xcom import XComModel

    if not tasks:
        return []
    rows = session.scalars(select(XComModel).where(
        XComModel.key.in_((GENERATION_ID_KEY, RESULT_KEY)),
        tuple_(XComModel.dag_id, XComModel.run_id, XComModel.task_id, XComModel.map_index)
        .in_(tasks))).all()
    found: dict[tuple[str, str, str, int], dict[str, Any]] = {}
    for row in rows:
        key = (row.dag_id, row.run_id, row.task_id, row.map_index)
        found.setdefault(key, {"timestamp": row.timestamp})[row.key] = \
            XComModel.deserialize_value(row)
        if row.key == GENERATION_ID_KEY:
            found[key]["timestamp"] = row.timestamp
    generations = []
    for key, values in found.items():
        generation_id, result = values.get(GENERATION_ID_KEY), values.get(RESULT_KEY)
        if isinstance(generation_id, str) and generation_id:
            generations.append(GenerationRow(
                source=TaskRef(*key), timestamp=values["timestamp"], generation_id=generation_id,
                result=result if isinstance(result, dict) else None))
    return generations
