"""The videos page's summary: it agrees with the cards, and catching up keeps it true.

The pure rule (``summary.summarise_run``) is checked against the cards' own builder
(``records.build_videos``) over any events and pushes of a run, hostile values included. The
catch-up runs on a real metadata DB (SQLite; PostgreSQL on 127.0.0.1:5432 as an integration
test), driven the way Airflow changes it: new events and runs, events and XCom deleted as
``airflow db clean`` deletes them, an event committed under an id lower than one already read,
a run whose return value arrives after it was summarised, two api-servers catching up from the
same state, several workers catching up at the same moment, a new summary schema, and events
a DAG author filled with anything.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kling_provider.gallery import catchup, store, summary
from kling_provider.gallery.records import EventRow, GenerationRow, TaskRef, build_videos
from tests.gallery_seed import Runs, seed, videos_asset
from tests.gallery_site import Site, postgres_template, site_on_param

DAG, RUN = "public_dag", "manual__1"
T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)

amounts = st.one_of(st.none(), st.booleans(), st.text(max_size=3),
                    st.integers(-10**8, 10**8),
                    st.floats(-1e8, 1e8, allow_nan=False).map(lambda x: round(x, 6)))
names = st.one_of(st.none(), st.integers(), st.sampled_from(["", "m1", "m2"]))
extras = st.fixed_dictionaries({}, optional={
    "generation_id": st.one_of(st.sampled_from(["g1", "g2", "g3", ""]), st.integers()),
    "model": names, "usd_spent": amounts, "credits_used": amounts})


@settings(max_examples=300, derandomize=True)
@given(events=st.lists(st.tuples(extras, st.integers(0, 50)), max_size=6),
       pushes=st.lists(st.tuples(st.sampled_from(["g1", "g2", "g4"]), st.integers(0, 50),
                                 st.one_of(st.none(), extras)), max_size=4, unique_by=lambda p: p[0]))
def test_a_runs_summary_agrees_with_its_cards(events: list[tuple[dict[str, Any], int]],
                                              pushes: list[tuple[str, int, Any]]) -> None:
    """Each card of a run is one summary row with the same event, time, model and amounts
    (in units), whatever a DAG author wrote into the extra or the return value."""
    source = TaskRef(DAG, RUN, "download")
    rows = [EventRow(event_id=i + 1, source=source, timestamp=T0 + timedelta(minutes=m),
                     extra=extra) for i, (extra, m) in enumerate(events)]
    generations = [GenerationRow(source=TaskRef(DAG, RUN, "generate", n), generation_id=g,
                                 timestamp=T0 + timedelta(minutes=m), result=result)
                   for n, (g, m, result) in enumerate(pushes)]
    mirrored = [summary.event_values(SimpleNamespace(
        id=row.event_id, asset_id=1, extra=row.extra, source_dag_id=DAG, source_run_id=RUN,
        timestamp=row.timestamp)) for row in rows]
    made = summary.summarise_run(DAG, RUN, mirrored, [
        summary.Pushed(task_id="generate", map_index=n, timestamp=g.timestamp,
                       generation_id=g.generation_id,
                       result=summary.fields(g.result) if g.result is not None else None)
        for n, g in enumerate(generations)])
    cards = build_videos(rows, generations)

    def as_row(card: Any) -> tuple[Any, ...]:
        return (card.event_id, card.timestamp, card.model, summary.units(card.usd_spent),
                summary.units(card.credits_used), card.generation_id)

    assert sorted(map(as_row, cards), key=repr) == sorted(
        ((row["event_id"], row["timestamp"], row["model"], row["usd"], row["credits"],
          _generation(row, rows, generations)) for row in made), key=repr)
    assert len({row["key"] for row in made}) == len(made)


def _generation(row: dict[str, Any], events: list[EventRow],
                generations: list[GenerationRow]) -> str | None:
    """The generation id a summary row stands for (the summary keeps only its digest)."""
    for name in {*(e.extra.get("generation_id") for e in events),
                 *(g.generation_id for g in generations)}:
        if isinstance(name, str) and name and summary.digest(name) == row["generation_key"]:
            return name
    return None


def test_hostile_amounts_and_names_are_not_reported() -> None:
    """What could break a sum or an index is "not reported"; what the page shows is kept."""
    found = summary.fields({"generation_id": "g" * 10_000, "model": "m" * 251,
                            "usd_spent": 1e300, "credits_used": math.inf})
    assert found == summary.Fields(generation_id="g" * 10_000, model=None, usd=None, credits=None)
    assert summary.fields({"usd_spent": 1.4, "credits_used": True}) == \
        summary.Fields(None, None, 1_400_000, None)
    assert summary.units(Decimal("0.0000005")) == 1  # rounded half away from zero, as SQL did
    assert summary.units(Decimal(10**8)) == 10**14 and summary.units(Decimal(10**8 + 1)) is None
    assert summary.fields(["not", "a", "dict"]) == summary.Fields(None, None, None, None)


# -- catching up on a real metadata DB ----------------------------------------------------------

@pytest.fixture(scope="session")
def postgres_template_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from postgres_template(tmp_path_factory.mktemp("postgres-summary"))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def site(request: pytest.FixtureRequest, tmp_path: Path,
         airflow_db_template: Path) -> Iterator[Site]:
    yield from site_on_param(request, tmp_path, airflow_db_template)


def write(plan: Runs) -> int:
    from airflow.utils.session import create_session

    with create_session() as session:
        return seed(session, plan, videos_asset(session))


def total(site: Site, **params: Any) -> tuple[int, str | None]:
    with site.client("admin") as client:
        answer = client.get("/api/videos", params=params)
        assert answer.status_code == 200, answer.text
        spend = answer.json()["spend"]["total"]
        return spend["count"], spend["usd"]


def run_sql(sql: str, **params: Any) -> None:
    from airflow.utils.session import create_session
    from sqlalchemy import text

    with create_session() as session:
        session.execute(text(sql), params)


def caught() -> catchup.Caught:
    return catchup.catch_up(store.videos_asset_ids())


def test_new_events_and_runs_are_caught_up_and_nothing_else_is_read_again(site: Site) -> None:
    first = Runs(DAG, runs=3, per_run=4, pending=1)
    write(first)
    assert total(site) == (12, "16.8")
    assert caught() == catchup.Caught(events=0, runs=0)  # warm: nothing to read
    write(Runs("red_dag", runs=2, per_run=5))
    assert caught() == catchup.Caught(events=10, runs=2)  # only what is new
    assert total(site) == (22, "30.8")
    assert total(site, dag_id="red_dag") == (10, "14")


def test_events_and_xcom_deleted_by_db_clean_leave_the_summary(site: Site) -> None:
    write(Runs(DAG, runs=4, per_run=5))
    assert total(site) == (20, "28")
    # airflow db clean deletes the oldest rows of each table, by timestamp
    run_sql("DELETE FROM asset_event WHERE source_run_id = :run", run=f"manual__{DAG}_000000")
    run_sql("DELETE FROM xcom WHERE run_id = :run", run=f"manual__{DAG}_000000")
    assert total(site) == (15, "21")
    # the run's XCom alone gone: its stored videos stay, with the spend their events record
    run_sql("DELETE FROM xcom WHERE run_id = :run", run=f"manual__{DAG}_000001")
    assert total(site) == (15, "21")
    assert total(site, run_id=f"manual__{DAG}_000001") == (5, "7")


def test_an_event_committed_under_a_lower_id_is_found(site: Site) -> None:
    write(Runs(DAG, runs=2, per_run=3))
    run_sql("DELETE FROM asset_event WHERE id = 2")  # a transaction still open when read...
    assert total(site) == (6, "8.4")  # ...its generation shows from its XCom meanwhile
    with site.client("admin") as client:
        pending = [v for v in client.get("/api/videos").json()["videos"] if v["event_id"] is None]
    assert len(pending) == 1
    late = site.event(DAG, "file:///videos/late.mp4", "late-generation", usd_spent=2.5)
    run_sql("UPDATE asset_event SET id = 2 WHERE id = :late", late=late)  # ...commits later
    assert total(site) == (7, "10.9")


def test_a_return_value_pushed_after_the_run_was_summarised_is_read(site: Site) -> None:
    write(Runs(DAG, runs=1, per_run=2, pending=2, spend_in_event=False))
    run_sql("DELETE FROM xcom WHERE key = 'return_value'")
    run_sql("UPDATE dag_run SET state = 'running'")
    assert total(site) == (2, None)  # submitted, nothing returned yet
    from airflow.models.dagrun import DagRun
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import insert, select

    with create_session() as session:
        dag_run_id = session.scalar(select(DagRun.id))
        session.execute(insert(XComModel.__table__), [{
            "dag_run_id": dag_run_id, "dag_id": DAG, "run_id": f"manual__{DAG}_000000",
            "task_id": "generate", "map_index": n, "key": "return_value",
            "value": {"usd_spent": 1.4, "model": "m"}, "timestamp": T0} for n in range(2)])
    assert total(site) == (2, "2.8")
    # finished since the last look: read once more (updated after the last catch-up)
    run_sql("UPDATE xcom SET value = :v WHERE key = 'return_value'", v='{"usd_spent": 2}')
    run_sql("UPDATE dag_run SET state = 'success', updated_at = :now",
            now=datetime.now(timezone.utc))
    assert total(site) == (2, "4")


def test_two_api_servers_catching_up_from_the_same_state_write_the_same_rows(site: Site) -> None:
    write(Runs(DAG, runs=3, per_run=4, pending=1))
    first = caught()
    assert first.runs == 3
    summary_rows = _rows()
    # The other server read the same mark before this one wrote: it does all of it again.
    run_sql("UPDATE kling_gallery_mark SET event_id = 0, checked_at = NULL")
    assert caught().runs == 3
    assert _rows() == summary_rows
    assert total(site) == (12, "16.8")


def _rows() -> list[tuple[Any, ...]]:
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return [tuple(row) for row in session.execute(
            select(summary.videos).order_by(summary.videos.c.key))]


def test_a_new_schema_rebuilds_the_summary(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    write(Runs(DAG, runs=1, per_run=3))
    assert total(site) == (3, "4.2")
    monkeypatch.setattr(summary, "SCHEMA", summary.SCHEMA + 1)
    monkeypatch.setattr(catchup, "_READY", set())
    assert caught() == catchup.Caught(events=3, runs=1)
    assert total(site) == (3, "4.2")


def test_hostile_extras_neither_break_the_page_nor_count(site: Site) -> None:
    write(Runs(DAG, runs=1, per_run=2))
    hostile: list[dict[str, Any]] = [
        {"usd_spent": 1e300, "credits_used": 10**30}, {"usd_spent": "12"},
        {"usd_spent": True, "model": "m" * 5000}, {"model": ["list"]},
        {"generation_id": "g" * 20_000, "usd_spent": 1}]
    for extra in hostile:
        site.event(DAG, "file:///videos/x.mp4", extra.pop("generation_id", None), **extra)
    assert total(site) == (7, "3.8")
    with site.client("admin") as client:
        assert client.get("/", params={"generation_id": "g" * 20_000}).status_code == 200
        focused = client.get("/api/videos", params={"generation_id": "g" * 20_000}).json()
    assert focused["spend"]["total"]["count"] == 1


def test_the_benchmark_times_the_one_time_catch_up_apart(site: Site,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """``benchmarks/gallery_views.py history``'s first row: the whole history summarised once,
    before the pages it times (which then find nothing new)."""
    from benchmarks import gallery_views

    write(Runs(DAG, runs=2, per_run=3, pending=1))
    took, worst = gallery_views._catch_up_once()
    assert took == worst > 0
    assert "one-time catch-up: 4 events, 2 runs in" in capsys.readouterr().out
    assert caught() == catchup.Caught(events=0, runs=0)
    assert total(site) == (6, "8.4")


def test_an_event_naming_another_dags_generation_is_a_video_of_its_own_dag(site: Site) -> None:
    """A DAG author copying red's generation id into their own event gets a card of their own
    DAG: it neither replaces red's video nor takes over its spend."""
    write(Runs("red_dag", runs=1, per_run=1))
    stolen = Runs("red_dag", runs=1, per_run=1).generation_id(0, 0)
    site.event(DAG, "file:///videos/copy.mp4", stolen, usd_spent=0)
    assert total(site) == (2, "1.4")
    assert total(site, dag_id="red_dag") == (1, "1.4")
    with site.client("admin") as client:
        found = client.get("/api/videos", params={"generation_id": stolen}).json()
    assert found["spend"]["total"]["count"] == 2
    assert {line["label"] for line in found["spend"]["by_run"]} >= {
        "red_dag / manual__red_dag_000000"}



def _at_once(workers: int) -> list[catchup.Caught]:
    """``workers`` page requests catching up at the same moment, as an api-server's workers do."""
    barrier = threading.Barrier(workers)
    done: list[catchup.Caught | BaseException] = []

    def request() -> None:
        barrier.wait()
        try:
            done.append(caught())
        except BaseException as exc:  # the request's error, reported by the assert below
            done.append(exc)

    threads = [threading.Thread(target=request) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not [d for d in done if isinstance(d, BaseException)]
    return [d for d in done if isinstance(d, catchup.Caught)]


def test_workers_catching_up_at_once_take_turns(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    # The first requests after an upgrade: no summary tables yet, every worker creates them.
    write(Runs(DAG, runs=40, per_run=4, pending=1))
    assert sorted(_at_once(3), key=lambda c: c.runs) == [
        catchup.Caught(0, 0), catchup.Caught(0, 0), catchup.Caught(events=120, runs=40)]
    # Tables there, each worker's first request still checks them; new events meanwhile.
    monkeypatch.setattr(catchup, "_READY", set())
    write(Runs("red_dag", runs=5, per_run=2))
    assert sorted(c.events for c in _at_once(3)) == [0, 0, 10]
    assert total(site) == (170, "238")
