"""The videos page over all of history: filters, spend and pages computed by the database.

On SQLite (the tests' and ``make demo``'s metadata DB) and on PostgreSQL (Airflow's production
one: 127.0.0.1:5432, skipped when absent), through the plugin's routes under the real auth
manager of ``tests.gallery_site``. Runs are written as a mapped generate/download DAG run leaves
them (``tests.gallery_seed``): more generations than the page ever loaded at once (it used to
read the newest 500 events and sum those).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from kling_provider.gallery import page
from tests.gallery_seed import Runs, seed, videos_asset
from tests.gallery_site import Site, postgres_template, site_on_param

HOURLY = timedelta(hours=1)


@pytest.fixture(scope="session")
def postgres_template_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from postgres_template(tmp_path_factory.mktemp("postgres-airflow"))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def site(request: pytest.FixtureRequest, tmp_path: Path,
         airflow_db_template: Path) -> Iterator[Site]:
    yield from site_on_param(request, tmp_path, airflow_db_template)


def write(*plans: Runs) -> int:
    from airflow.utils.session import create_session

    with create_session() as session:
        asset_id = videos_asset(session)
        return sum(seed(session, plan, asset_id) for plan in plans)


def listing(site: Site, user: str, **params: Any) -> dict[str, Any]:
    with site.client(user) as client:
        answer = client.get("/api/videos", params=params)
        assert answer.status_code == 200, answer.text
        found: dict[str, Any] = answer.json()
        return found


# 26 runs of 25 mapped generations an hour apart (650 > the 500 the page used to read), the
# last of each run not downloaded yet: 624 stored, 26 only in their generate task's XCom.
PUBLIC = Runs("public_dag", runs=26, per_run=25, pending=1, step=HOURLY)


def test_spend_and_pages_cover_every_generation(site: Site) -> None:
    assert write(PUBLIC) == 624
    first = listing(site, "nobody")
    total = first["spend"]["total"]
    assert (total["count"], total["usd"], total["credits"]) == (650, "910", "1820000000")
    assert (first["page"], first["per_page"], first["pages"]) == (1, page.PER_PAGE, 22)
    newest = [v["generation_id"] for v in first["videos"]]
    assert newest[:2] == [PUBLIC.generation_id(25, 24), PUBLIC.generation_id(25, 23)]
    assert len(newest) == page.PER_PAGE and first["videos"][0]["event_id"] is None  # pending
    assert first["videos"][1]["usd_spent"] == "1.4"  # each video's money: a decimal string
    # Per-run subtotals: the runs of this page's cards, each over all its generations.
    assert [(r["run_id"], r["count"], r["usd"]) for r in first["spend"]["by_run"]] == [
        (PUBLIC.run_id(25), 25, "35"), (PUBLIC.run_id(24), 25, "35")]
    last = listing(site, "nobody", page=22)
    assert len(last["videos"]) == 650 - 21 * page.PER_PAGE
    assert last["videos"][-1]["generation_id"] == PUBLIC.generation_id(0, 0)
    assert last["spend"]["total"] == total  # the totals do not depend on the page
    seen = {v["generation_id"] for n in range(1, 23)
            for v in listing(site, "nobody", page=n)["videos"]}
    assert len(seen) == 650
    assert listing(site, "nobody", page=23)["videos"] == []
    with site.client("nobody") as client:
        for bad in ("0", "-1", "x", "1e3"):
            answer = client.get("/api/videos", params={"page": bad})
            assert (answer.status_code, answer.json()["detail"]) == (
                400, f"Invalid page={bad!r}: expected a page number from 1.")


def test_filters_reach_back_past_any_recent_window(site: Site) -> None:
    write(PUBLIC)
    first_day = listing(site, "nobody", since="2026-01-01", until="2026-01-01")
    assert first_day["spend"]["total"]["count"] == 24  # the oldest day: hours 0-23
    assert first_day["spend"]["by_day"] == [
        {"label": "2026-01-01", "count": 24, "credits": "67200000", "usd": "33.6",
         "dag_id": None, "run_id": None}]
    one_run = listing(site, "nobody", dag_id="public_dag", run_id=PUBLIC.run_id(3))
    assert {v["source"]["run_id"] for v in one_run["videos"]} == {PUBLIC.run_id(3)}
    assert (one_run["spend"]["total"]["count"], one_run["spend"]["total"]["usd"]) == (25, "35")
    assert listing(site, "nobody", model="other")["spend"]["total"]["count"] == 0
    focused = listing(site, "nobody", generation_id=PUBLIC.generation_id(0, 0))
    assert [v["generation_id"] for v in focused["videos"]] == [PUBLIC.generation_id(0, 0)]


def test_sums_are_exact_decimals_and_come_from_the_generate_task_when_the_event_has_none(
        site: Site) -> None:
    write(Runs("public_dag", runs=1, per_run=3, usd=0.1, credits=1, spend_in_event=False))
    spend = listing(site, "nobody")["spend"]["total"]
    assert 0.1 + 0.1 + 0.1 == 0.30000000000000004  # what a float sum would say
    assert (spend["count"], spend["usd"], spend["credits"]) == (3, "0.3", "3")
    with site.client("nobody") as client:
        html = client.get("/").text
    assert "Spend: $0.30 = 3 credits for 3 generation(s)" in html
    assert "0.3000" not in html


def test_results_stored_as_json_text_are_summed_like_dicts(site: Site) -> None:
    """A generate task that ended in the triggerer: Airflow 3.3.2 stores its result as JSON
    text (the Task SDK hands it to a downstream task as text: ``stored_result``); the page reads
    the metadata database, whose XCom decoding already gives the dict, so its spend counts."""
    write(Runs("public_dag", runs=1, per_run=3, usd=0.1, credits=1, spend_in_event=False,
               results_as_text=True))
    spend = listing(site, "nobody")["spend"]["total"]
    assert (spend["count"], spend["usd"], spend["credits"]) == (3, "0.3", "3")


def test_the_database_sums_only_what_each_user_may_read(site: Site) -> None:
    red = Runs("red_dag", runs=30, per_run=20, usd=2.0, start=datetime(2026, 2, 1,
                                                                     tzinfo=timezone.utc))
    write(red, Runs("public_dag", runs=2, per_run=5, usd=0.5))
    totals = {user: listing(site, user)["spend"]["total"]
              for user in ("admin", "red", "blue", "nobody")}
    assert {user: (t["count"], t["usd"]) for user, t in totals.items()} == {
        "admin": (610, "1205"), "red": (610, "1205"), "blue": (10, "5"), "nobody": (10, "5")}
    blue = listing(site, "blue", dag_id="red_dag")
    assert (blue["videos"], blue["spend"]["total"]["count"]) == ([], 0)
    with site.client("blue") as client:
        html = client.get("/").text
    assert "red_dag" not in html  # not even as a filter option


def test_the_page_shows_where_it_is_and_each_runs_subtotal(site: Site) -> None:
    write(PUBLIC)
    with site.client("nobody") as client:
        html = client.get("/", params={"page": 2}).text
    assert "Page 2 of 22 (31-60 of 650 generations)" in html
    assert 'rel="prev" href="/kling/?page=1"' in html and 'rel="next" href="/kling/?page=3"' in html
    assert "Spend: $910.00 = 1,820,000,000 credits for 650 generation(s)" in html
    run = PUBLIC.run_id(23)
    assert (f'<a href="/kling/?dag_id=public_dag&amp;run_id={run}">public_dag / {run}</a>'
            "</td><td>25</td><td>70,000,000</td><td>$35.00</td>") in html
