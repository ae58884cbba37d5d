"""Bringing the videos page's summary (:mod:`~kling_provider.gallery.summary`) up to date.

:func:`catch_up` runs at the start of every page request on the api-server (the one process
that may write the metadata DB): it mirrors the ``kling://videos`` events above the last id it
saw, reconciles deleted or late events by fingerprint, reads the XCom of runs that may have
changed, and re-summarises the runs it touched. The rules, and why they are these, are in
``summary``'s docstring; this module is the database edge that applies them.
"""

from __future__ import annotations

import fcntl
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.orm import Session

from kling_provider.gallery import summary as s
from kling_provider.gallery.store import GENERATION_ID_KEY, RESULT_KEY

#: Run states in which a generate task may still push or return (XCom read on each catch-up).
LIVE_RUN_STATES = ("queued", "running")
#: A catch-up that wrote this many events or runs refreshes PostgreSQL's statistics.
ANALYZE_AFTER = 1000
#: The advisory lock that makes PostgreSQL api-servers take turns (``b'kling'`` as a number).
LOCK_KEY = 0x6B6C696E67
#: Tables are checked once per process (``create_all`` looks at the catalogue each time).
_READY: set[str] = set()


@dataclass(frozen=True)
class Caught:
    """What one catch-up did (the benchmark and the tests read it)."""

    events: int  # events mirrored or removed
    runs: int  # runs re-summarised


def catch_up(asset_ids: Collection[int], now: datetime | None = None) -> Caught:
    """Bring the summary up to date with Airflow's rows, in one transaction.

    One catch-up at a time per metadata DB, the table set-up included: an api-server runs
    several workers, and the first requests after an upgrade all find the tables missing (two
    ``CREATE TABLE`` at once fail one request). PostgreSQL serialises on an advisory lock taken
    before anything else; SQLite, which has no such lock and fails a second writer at once
    instead of waiting, on a lock file beside the database file.
    """
    from airflow.utils.session import create_session  # the metadata DB: page requests only

    with create_session() as session:
        bind = session.get_bind()
        with _one_at_a_time(session, bind.dialect.name, bind.engine.url.database):
            url = str(bind.engine.url)
            if url not in _READY:
                s.ensure_tables(session)
                session.commit()
                if bind.dialect.name == "postgresql":  # the commit ended the lock's transaction
                    session.execute(select(func.pg_advisory_xact_lock(LOCK_KEY)))
                _READY.add(url)
            caught = _catch_up(session, sorted(asset_ids), now or datetime.now(timezone.utc))
            if bind.dialect.name == "postgresql" and caught.events + caught.runs >= ANALYZE_AFTER:
                # Statistics now, not at autovacuum's next pass: a planner that believes the
                # fresh tables empty reads them whole for a page.
                session.execute(text("ANALYZE " + ", ".join(
                    t.name for t in s.metadata.sorted_tables)))
            session.commit()  # inside the lock: the next one reads what this one wrote
            return caught


@contextmanager
def _one_at_a_time(session: Session, dialect: str, database: str | None) -> Iterator[None]:
    """Hold the catch-up lock of this metadata DB (see :func:`catch_up`) until the block ends."""
    if dialect == "postgresql":  # released by the transaction's end
        session.execute(select(func.pg_advisory_xact_lock(LOCK_KEY)))
        yield
    elif dialect == "sqlite" and database and database != ":memory:":
        with open(f"{database}.kling-gallery.lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released on close, by a crashed process too
            yield
    else:  # an in-memory DB has one connection: nobody to take turns with
        yield


def _catch_up(session: Session, asset_ids: list[int], now: datetime) -> Caught:
    from airflow.models.asset import AssetEvent  # ORM models (~0.4 s): page requests only

    mark, checked_at = session.execute(select(s.marks.c.event_id, s.marks.c.checked_at)
                                       .where(s.marks.c.name == s.MARK)).one()
    in_asset = AssetEvent.asset_id.in_(asset_ids or [-1])
    added = _mirror(session, _events().where(in_asset, AssetEvent.id > mark))
    top = max([mark, *(row["event_id"] for row in added)])
    touched = {_run_of(row) for row in added}
    theirs = session.execute(select(func.count(), func.coalesce(func.sum(AssetEvent.id), 0))
                             .where(in_asset, AssetEvent.id <= top)).one()
    ours = session.execute(select(func.count(), func.coalesce(func.sum(s.events.c.event_id), 0))
                           .where(s.events.c.event_id <= top)).one()
    changed = len(added)
    if tuple(theirs) != tuple(ours):  # deleted (db clean) or late-committed events
        found = set(session.scalars(select(AssetEvent.id).where(in_asset, AssetEvent.id <= top)))
        kept = set(session.scalars(select(s.events.c.event_id)
                                   .where(s.events.c.event_id <= top)))
        gone = sorted(kept - found)
        for start in range(0, len(gone), s.BATCH):
            chunk = gone[start:start + s.BATCH]
            touched |= {(d, r or "") for d, r in session.execute(
                select(s.events.c.dag_id, s.events.c.run_id)
                .where(s.events.c.event_id.in_(chunk)))}
            session.execute(delete(s.events).where(s.events.c.event_id.in_(chunk)))
        late = sorted(found - kept)
        for start in range(0, len(late), s.BATCH):
            rows = _mirror(session, _events().where(
                AssetEvent.id.in_(late[start:start + s.BATCH])))
            touched |= {_run_of(row) for row in rows}
        changed += len(gone) + len(late)
    touched |= _changed_runs(session, checked_at, now)
    ordered = sorted(run for run in touched if run[0])  # an event naming no DAG is never shown
    for first in range(0, len(ordered), s.BATCH):
        _resummarise(session, ordered[first:first + s.BATCH])
    session.execute(update(s.marks).where(s.marks.c.name == s.MARK)
                    .values(event_id=top, checked_at=now))
    return Caught(events=changed, runs=len(ordered))


def _events() -> Any:
    from airflow.models.asset import AssetEvent  # ORM models (~0.4 s): page requests only

    return select(AssetEvent.id, AssetEvent.asset_id, AssetEvent.extra, AssetEvent.source_dag_id,
                  AssetEvent.source_run_id, AssetEvent.timestamp).order_by(AssetEvent.id)


def _run_of(row: dict[str, Any]) -> tuple[str, str]:
    return (row["dag_id"] or "", row["run_id"] or "")


def _mirror(session: Session, query: Any) -> list[dict[str, Any]]:
    """Mirror the events ``query`` selects (typed, validated); the rows mirrored."""
    rows = [s.event_values(event) for event in session.execute(query)]
    s.upsert(session, s.events, rows, update_columns=False)
    return rows


def _changed_runs(session: Session, checked_at: datetime | None, now: datetime
                  ) -> set[tuple[str, str]]:
    """Runs whose generate XCom may differ from the summary's: live, recently updated, or
    pushing another number of generation ids than the summary saw (db clean, clears)."""
    from airflow.models.dagrun import DagRun  # ORM models (~0.4 s): page requests only
    from airflow.models.xcom import XComModel

    if checked_at is None:  # the first catch-up: every run that pushed a generation id
        recent = select(DagRun.dag_id, DagRun.run_id, DagRun.state, DagRun.updated_at).where(
            DagRun.id.in_(select(XComModel.dag_run_id).where(XComModel.key == GENERATION_ID_KEY)))
    else:
        recent = select(DagRun.dag_id, DagRun.run_id, DagRun.state, DagRun.updated_at).where(
            DagRun.state.in_(LIVE_RUN_STATES) | (DagRun.updated_at >= checked_at - s.SETTLE))
    candidates = session.execute(recent).all()
    seen: dict[tuple[str, str], Any] = {}
    for start in range(0, len(candidates), s.BATCH):
        seen.update({(d, r): at for d, r, at in session.execute(
            select(s.runs.c.dag_id, s.runs.c.run_id, s.runs.c.updated_at).where(_of_runs(
                s.runs.c, [(d, r) for d, r, _, _ in candidates[start:start + s.BATCH]])))})
    found = {(d, r) for d, r, state, at in candidates
             if state in LIVE_RUN_STATES or at is None or seen.get((d, r)) != at}
    # The number of ids pushed (the key's index alone answers it) against the number seen.
    pushed = select(func.count()).where(XComModel.key == GENERATION_ID_KEY)
    if session.scalar(pushed) != session.scalar(select(func.coalesce(func.sum(s.runs.c.pushed),
                                                                     0))):
        counts = dict(session.execute(select(XComModel.dag_run_id, func.count()).where(
            XComModel.key == GENERATION_ID_KEY).group_by(XComModel.dag_run_id)).all())
        ours = {(d, r): (i, n) for d, r, i, n in session.execute(select(
            s.runs.c.dag_id, s.runs.c.run_id, s.runs.c.dag_run_id, s.runs.c.pushed))}
        found |= {run for run, (i, n) in ours.items() if counts.get(i, 0) != n}
        known = {i for i, _ in ours.values()}
        missing = [i for i in counts if i not in known]
        for start in range(0, len(missing), s.BATCH):
            found |= {(d, r) for d, r in session.execute(select(DagRun.dag_id, DagRun.run_id)
                      .where(DagRun.id.in_(missing[start:start + s.BATCH])))}
    return found


def _of_runs(columns: Any, chunk: Sequence[tuple[str, str]]) -> Any:
    """Rows of these runs, and perhaps of other runs pairing their DAG and run ids (the caller
    keeps its own): PostgreSQL reads a list of (dag_id, run_id) pairs row by row, not by index."""
    return (columns.dag_id.in_(sorted({d for d, _ in chunk}))
            & columns.run_id.in_(sorted({r for _, r in chunk})))


def _resummarise(session: Session, chunk: Sequence[tuple[str, str]]) -> None:
    """Re-summarise these runs from the mirrored events and the runs' XCom."""
    from airflow.models.dagrun import DagRun  # ORM models (~0.4 s): page requests only
    from airflow.models.xcom import XComModel

    wanted = set(chunk)
    dag_runs = {(d, r): (i, at) for i, d, r, at in session.execute(select(
        DagRun.id, DagRun.dag_id, DagRun.run_id, DagRun.updated_at).where(
        _of_runs(DagRun, chunk))) if (d, r) in wanted}
    ids = {run: i for run, (i, _) in dag_runs.items()}
    pushes: dict[tuple[str, str], list[s.Pushed]] = {}
    counts: dict[tuple[str, str], int] = {}
    if ids:
        by_id = {i: run for run, i in ids.items()}
        values: dict[tuple[int, str, int], dict[str, Any]] = {}
        for row in session.execute(select(
                XComModel.dag_run_id, XComModel.task_id, XComModel.map_index, XComModel.key,
                XComModel.value, XComModel.timestamp).where(
                XComModel.dag_run_id.in_(list(by_id)),
                XComModel.key.in_((GENERATION_ID_KEY, RESULT_KEY)))):
            values.setdefault((row.dag_run_id, row.task_id, row.map_index), {})[row.key] = row
        for (dag_run_id, task_id, map_index), found in values.items():
            run = by_id[dag_run_id]
            if GENERATION_ID_KEY not in found:
                continue
            counts[run] = counts.get(run, 0) + 1
            pushed = XComModel.deserialize_value(found[GENERATION_ID_KEY])
            if not isinstance(pushed, str) or not pushed:
                continue
            result = (XComModel.deserialize_value(found[RESULT_KEY])
                      if RESULT_KEY in found else None)
            pushes.setdefault(run, []).append(s.Pushed(
                task_id=task_id, map_index=map_index,
                timestamp=found[GENERATION_ID_KEY].timestamp, generation_id=pushed,
                result=s.fields(result) if isinstance(result, dict) else None))
    mirrored: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for event in session.execute(select(s.events).where(_of_runs(s.events.c, chunk))).mappings():
        mirrored.setdefault((event["dag_id"], event["run_id"]), []).append(dict(event))
    rows = [row for dag_id, run_id in chunk for row in s.summarise_run(
        dag_id, run_id, mirrored.get((dag_id, run_id), []), pushes.get((dag_id, run_id), []))]
    made = {row["key"] for row in rows}
    stale = [key for key, d, r in session.execute(select(
        s.videos.c.key, s.videos.c.dag_id, s.videos.c.run_id).where(_of_runs(s.videos.c, chunk)))
        if (d, r) in wanted and key not in made]
    for start in range(0, len(stale), s.BATCH):
        session.execute(delete(s.videos).where(s.videos.c.key.in_(stale[start:start + s.BATCH])))
    s.upsert(session, s.videos, rows, update_columns=True)
    for dag_id, run_id in wanted - set(dag_runs):  # deleted runs (their events may stay)
        session.execute(delete(s.runs).where(s.runs.c.dag_id == dag_id,
                                             s.runs.c.run_id == run_id))
    s.upsert(session, s.runs, [  # every run read, so an unchanged one is not read again
        {"dag_id": d, "run_id": r, "dag_run_id": i, "pushed": counts.get((d, r), 0),
         "updated_at": at} for (d, r), (i, at) in sorted(dag_runs.items())],
        update_columns=True)
