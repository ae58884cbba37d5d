"""The videos page's list and spend, computed in the metadata database over every generation.

One row per video in the page's own summary (:mod:`~kling_provider.gallery.summary`, brought up
to date by :func:`~kling_provider.gallery.catchup.catch_up` at the start of each request): each
generation once per DAG run (its newest ``kling://videos`` event, completed from its generate
task's XCom, or the XCom alone before it is stored) and each event naming no generation. The
access rules are part of the query (only the DAG ids and Asset ids the caller passes,
:mod:`~kling_provider.gallery.access`), and so are the filters, so the spend sums, the filter
options and the pages of cards all cover every matching generation, however many: typed,
indexed columns (a covering index for the sums), never JSON.

Money is summed exactly: each amount is an integer count of millionths
(:data:`~kling_provider.gallery.store.SCALE`) and the sums come back as
:class:`~decimal.Decimal`, on SQLite and PostgreSQL alike. Only the page's rows are then read in
full from Airflow's tables and built into cards by the pure
:func:`~kling_provider.gallery.records.build_videos`.

Used by :mod:`~kling_provider.gallery.app`; the benchmark ``benchmarks/gallery_views.py`` times
it at 100,000 stored events.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, true, tuple_
from sqlalchemy.orm import Session

from kling_provider._task.review import REVIEW_XCOM_KEY
from kling_provider.gallery import catchup, store, summary
from kling_provider.gallery.records import (
    EventRow,
    Filters,
    GenerationRow,
    ReviewRow,
    SpendGroup,
    TaskRef,
    plain,
)
from kling_provider.gallery.store import (
    GENERATION_ID_KEY,
    RESULT_KEY,
    SCALE,
    VIDEOS_ASSET_URIS,
    event_row,
)


def _visible(dag_ids: Collection[str], asset_ids: Collection[int]) -> ColumnElement[bool]:
    """The summary's rows the caller may see: of a readable DAG, and stored under a readable
    Asset (or not stored yet). A video whose event's Asset the caller may not read is hidden
    whole (its generate task's XCom alone is not shown instead)."""
    v = summary.videos.c
    return and_(v.dag_id.in_(list(dag_ids)),
                or_(v.event_id.is_(None), v.asset_id.in_(list(asset_ids) or [-1])))


def _matching(filters: Filters) -> ColumnElement[bool]:
    """The filters as one SQL condition on the summary's rows (``Filters.accepts``' rules; a
    video's DAG and run are its event's and its generate task's alike)."""
    v = summary.videos.c
    found: list[ColumnElement[bool]] = []
    if filters.dag_id:
        found.append(v.dag_id == filters.dag_id)
    if filters.run_id:
        found.append(v.run_id == filters.run_id)
    if filters.model:
        found.append(v.model == filters.model)
    if filters.generation_id:
        found.append(v.generation_key == summary.digest(filters.generation_id))
    if filters.since:
        found.append(v.day >= filters.since.isoformat())
    if filters.until:
        found.append(v.day <= filters.until.isoformat())
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
    (per UTC day, model and DAG run) of every match, from the summary once caught up."""
    from airflow.utils.session import create_session  # the metadata DB: page requests only

    if not dag_ids:
        return Listing([], [], [], [], [])
    catchup.catch_up(store.videos_asset_ids())
    v = summary.videos.c
    visible, matches = _visible(dag_ids, asset_ids), _matching(filters)
    with create_session() as session:
        groups = [SpendGroup(day=day, model=model, dag_id=dag_id, run_id=run_id, count=count,
                             usd=_amount(usd), credits=_amount(credits), newest=newest)
                  for dag_id, day, model, run_id, count, usd, credits, newest in session.execute(
                      select(v.dag_id, v.day, v.model, v.run_id, func.count(), func.sum(v.usd),
                             func.sum(v.credits), func.max(v.timestamp))
                      .where(visible, matches).group_by(v.dag_id, v.day, v.model, v.run_id))]
        options = session.execute(select(v.dag_id, v.model).where(visible).distinct()).all()
        shown = session.execute(
            select(v.event_id, v.dag_id, v.run_id, v.task_id, v.map_index).where(visible, matches)
            .order_by(v.timestamp.desc(), v.event_id.desc()).offset(offset).limit(limit)).all()
        events = _events(session, [row[0] for row in shown if row[0] is not None])
        generations = _generations(session, [tuple(row[1:]) for row in shown if row[3]])
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
    rows = session.execute(select(  # columns, not the model: it joins its DAG run
        XComModel.dag_id, XComModel.run_id, XComModel.task_id, XComModel.map_index,
        XComModel.key, XComModel.value, XComModel.timestamp).where(
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


def reviews(runs: Collection[tuple[str, str]]) -> list[ReviewRow]:
    """The ``kling_review`` XComs of ``runs`` (``(dag_id, run_id)``: the page's), decided or not."""
    # ORM models and the metadata DB: page requests only (see _events)
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    if not runs:
        return []
    with create_session() as session:
        rows = session.execute(select(
            XComModel.dag_id, XComModel.run_id, XComModel.task_id, XComModel.map_index,
            XComModel.value).where(XComModel.key == REVIEW_XCOM_KEY,
                                   tuple_(XComModel.dag_id, XComModel.run_id).in_(list(runs)))
        ).all()
        return [ReviewRow(TaskRef(row.dag_id, row.run_id, row.task_id, row.map_index), value)
                for row in rows if isinstance(value := XComModel.deserialize_value(row), dict)]


def stored_copies(dag_id: str, run_id: str, generation_ids: Collection[str],
                  asset_ids: Collection[int]) -> dict[str, int]:
    """Of ``generation_ids`` (of one DAG run), those stored under a readable Asset: their event
    ids, which the videos page's player serves (the summary, caught up first)."""
    from airflow.utils.session import create_session  # the metadata DB: page requests only

    if not generation_ids or not asset_ids:
        return {}
    catchup.catch_up(store.videos_asset_ids())
    keys = {summary.digest(g): g for g in generation_ids}
    v = summary.videos.c
    with create_session() as session:
        rows = session.execute(
            select(v.generation_key, v.event_id).where(
                v.dag_id == dag_id, v.run_id == run_id, v.generation_key.in_(list(keys)),
                v.event_id.is_not(None), v.asset_id.in_(list(asset_ids)))).all()
    return {keys[key]: int(event_id) for key, event_id in rows}
