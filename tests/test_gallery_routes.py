"""The videos page's routes beyond access: filters, login redirect, generations not yet stored,
in-flight cards, refusals that are logged, and poster answers.

Same site as ``tests/test_gallery_app.py`` (the plugin's app in-process under Airflow's
SimpleAuthManager on a real metadata DB); a generate task's run, task instance and XCom are
written as Airflow writes them (rows), since no scheduler runs here.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from kling_provider.gallery import app as gallery_app
from kling_provider.gallery import files
from tests.gallery_seed import new_task_instance_id
from tests.gallery_site import SIMPLE, Site, make_site


@pytest.fixture
def site(tmp_path: Path, airflow_db_template: Path) -> Iterator[Site]:
    yield from make_site(tmp_path, airflow_db_template, SIMPLE)


def _on_day(event_id: int, day: int) -> None:
    """Move event ``event_id`` to 2026-11-``day`` (the site writes every event on the 21st)."""
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        event = session.get(AssetEvent, event_id)
        assert event is not None
        event.timestamp = datetime(2026, 11, day, 12, tzinfo=timezone.utc)


def generation(dag_id: str, run_id: str, generation_id: str, *, state: str,
               result: dict[str, Any] | None = None) -> None:
    """A generate task of ``dag_id`` in ``state`` that pushed ``generation_id`` (and ``result``)."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import insert, select

    when = datetime(2026, 11, 21, 11, tzinfo=timezone.utc)
    with create_session() as session:
        session.execute(insert(DagRun.__table__).values(
            dag_id=dag_id, run_id=run_id, run_type="manual", state="running",
            run_after=when))
        run_pk = session.scalar(select(DagRun.id).where(DagRun.dag_id == dag_id,
                                                        DagRun.run_id == run_id))
        session.execute(insert(TaskInstance.__table__).values(
            id=new_task_instance_id(), dag_id=dag_id,
            run_id=run_id, task_id="generate", map_index=-1, state=state, pool="default_pool",
            try_number=1))
        pushed = {"generation_id": generation_id, **({"return_value": result} if result else {})}
        for key, value in pushed.items():
            session.execute(insert(XComModel.__table__).values(
                dag_run_id=run_pk, dag_id=dag_id, run_id=run_id, task_id="generate",
                map_index=-1, key=key, value=value, timestamp=when))  # native JSON, as the Task SDK


# -- filters --------------------------------------------------------------------------------

def test_each_filter_narrows_the_list_and_the_page_still_offers_every_choice(site: Site) -> None:
    made = {}
    for n, (dag_id, model, day) in enumerate([("public_dag", "m1", 19), ("public_dag", "m2", 20),
                                              ("red_dag", "m1", 21), ("red_dag", "m2", 22)]):
        video = site.store(f"v{n}.mp4", f"gen-{n}")
        made[n] = site.event(dag_id, video.as_uri(), f"gen-{n}", model=model,
                             prompt=f"prompt number {n}")
        _on_day(made[n], day)

    def listed(**query: str) -> list[str]:
        with site.client("admin") as client:
            answer = client.get("/api/videos", params=query)
            assert answer.status_code == 200, answer.text
            return sorted(v["generation_id"] for v in answer.json()["videos"])

    assert listed() == ["gen-0", "gen-1", "gen-2", "gen-3"]
    assert listed(dag_id="red_dag") == ["gen-2", "gen-3"]
    assert listed(model="m2") == ["gen-1", "gen-3"]
    assert listed(since="2026-11-21") == ["gen-2", "gen-3"]  # days are inclusive
    assert listed(until="2026-11-20") == ["gen-0", "gen-1"]
    assert listed(since="2026-11-20", until="2026-11-21") == ["gen-1", "gen-2"]
    assert listed(generation_id="gen-2") == ["gen-2"]
    assert listed(dag_id="", model="", since="", until="", generation_id="") == listed()
    with site.client("admin") as client:
        page = client.get("/", params={"dag_id": "public_dag", "model": "m1"}).text
        bad = client.get("/", params={"until": "2026-13-01"})
    assert [n for n in made if f"prompt number {n}" in page] == [0]
    # The choices come from every video the user may see, not from the filtered ones.
    for option in ("public_dag", "red_dag", "m1", "m2"):
        assert f'<option value="{option}"' in page, option
    assert (bad.status_code, bad.json()["detail"]) == (
        400, "Invalid until='2026-13-01': expected a date as YYYY-MM-DD.")


def test_pages_run_from_1_to_a_million(site: Site) -> None:
    video = site.store("p.mp4", "gen-p")
    site.event("public_dag", video.as_uri(), "gen-p")
    with site.client("nobody") as client:
        first, last, beyond, empty = (client.get("/api/videos", params={"page": n})
                                      for n in ("1", "1000000", "1000001", ""))
    assert [v["generation_id"] for v in first.json()["videos"]] == ["gen-p"]
    assert (last.status_code, last.json()["page"], last.json()["videos"]) == (200, 1_000_000, [])
    assert (beyond.status_code, beyond.json()["detail"]) == (
        400, "Invalid page='1000001': expected a page number from 1.")
    assert empty.json()["page"] == 1 and empty.json()["videos"] == first.json()["videos"]


def test_the_login_redirect_comes_back_to_the_page_asked_for(site: Site) -> None:
    with site.client() as anonymous:
        answer = anonymous.get("/", params={"model": "m1"}, follow_redirects=False)
    assert answer.status_code == 303
    location = urlsplit(answer.headers["location"])
    assert location.path.endswith("/auth/login")
    # The auth manager's own login URL for this page: Airflow 3.3's simple auth manager carries
    # the page in ``next`` (checked below); 3.1 and 3.2's drop it.
    assert answer.headers["location"] == site.manager.get_url_login(
        next_url="http://testserver/?model=m1")
    if location.query:
        assert parse_qs(location.query)["next"] == ["http://testserver/?model=m1"]


# -- generations not (yet) stored, and in flight ---------------------------------------------

def test_a_generation_without_a_stored_video_is_listed_with_no_url(site: Site) -> None:
    generation("public_dag", "run_a", "gen-done", state="success",
               result={"status": "completed", "model": "m3", "usd_spent": 0.5})
    with site.client("nobody") as client:
        (video,) = client.get("/api/videos").json()["videos"]
        options = client.get("/").text
    assert (video["generation_id"], video["event_id"], video["url"], video["status"]) == (
        "gen-done", None, None, "completed")
    assert '<option value="m3"' in options


def test_in_flight_lists_the_users_waiting_generations_under_the_pages_filters(site: Site) -> None:
    generation("public_dag", "run_a", "gen-a", state="deferred")
    generation("public_dag", "run_b", "gen-b", state="running")
    generation("red_dag", "run_c", "gen-c", state="deferred")
    generation("public_dag", "run_d", "gen-d", state="success")  # finished: not in flight
    video = site.store("red.mp4", "gen-red")
    red_event = site.event("red_dag", video.as_uri(), "gen-red")

    def flying(user: str, **query: str) -> tuple[list[str], int]:
        with site.client(user) as client:
            answer = client.get("/api/in-flight", params=query).json()
        return sorted(i["generation_id"] for i in answer["in_flight"]), answer["latest_video"]

    assert flying("red") == (["gen-a", "gen-b", "gen-c"], red_event)
    assert flying("blue") == (["gen-a", "gen-b"], 0)  # red's video is not blue's to wait for
    assert flying("red", dag_id="red_dag") == (["gen-c"], red_event)
    assert flying("red", generation_id="gen-b") == (["gen-b"], red_event)
    with site.client("red") as client:
        (item,) = client.get("/api/in-flight", params={"generation_id": "gen-c"}).json()[
            "in_flight"]
        page = client.get("/", params={"dag_id": "public_dag"}).text
    assert (item["dag_id"], item["run_id"], item["state"]) == ("red_dag", "run_c", "deferred")
    # One card each for what the filters keep (the ids also appear in the list of generations).
    cards = re.findall(r'class="card inflight" data-generation-id="([^"]+)"', page)
    assert sorted(cards) == ["gen-a", "gen-b"] and "gen-c" not in page
    # The page reloads when a newer video than the one it was made with is stored.
    assert f'data-latest="{red_event}"' in page


# -- refusals, said in the log only ---------------------------------------------------------

@pytest.mark.parametrize(("extra", "why"), [
    ({}, "the event records no file URI"),
    ({"uri": 42}, "the event records no file URI"),
    ({"generation_id": 7}, "the event records no file URI"),
])
def test_an_event_naming_no_file_is_404_and_the_log_says_why(
        site: Site, caplog: pytest.LogCaptureFixture, extra: dict[str, Any], why: str) -> None:
    video = site.store("n.mp4", "gen-n")
    event_id = site.event("public_dag", video.as_uri(), "gen-n")
    broken = site.event("public_dag", video.as_uri(), "gen-n")
    _set_extra(broken, extra)
    with site.client("nobody") as client, caplog.at_level("WARNING", "kling_provider.gallery"):
        assert client.get(f"/videos/{event_id}.mp4").status_code == 200
        answer = client.get(f"/videos/{broken}.mp4")
    assert (answer.status_code, answer.json()) == (404, {"detail": "No such video."})
    assert [r.getMessage() for r in caplog.records if r.name == "kling_provider.gallery"] == [
        f"Kling videos page: not serving the file of Asset event {broken}: {why}"]


def _set_extra(event_id: int, extra: dict[str, Any]) -> None:
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        event = session.get(AssetEvent, event_id)
        assert event is not None
        event.extra = extra


def test_another_dags_file_is_404_and_the_log_names_the_first_recorder(
        site: Site, caplog: pytest.LogCaptureFixture) -> None:
    video = site.store("r.mp4", "gen-r")
    site.event("red_dag", video.as_uri(), "gen-r")
    claimed = site.event("public_dag", video.as_uri(), "gen-r")
    with site.client("admin") as client, caplog.at_level("WARNING", "kling_provider.gallery"):
        assert client.get(f"/videos/{claimed}.mp4").status_code == 404
    assert f"{video.as_uri()!r} was first recorded by another DAG" in caplog.text


# -- posters --------------------------------------------------------------------------------

def test_no_poster_frame_is_a_404_that_says_so(site: Site,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files, "poster_jpeg", lambda handle: None)  # as when ffmpeg fails
    video = site.store("nf.mp4", "gen-nf", data=b"\0\0\0\x20ftypisom" + b"\0" * 64)
    event_id = site.event("public_dag", video.as_uri(), "gen-nf")
    with site.client("nobody") as client:
        answer = client.get(f"/videos/{event_id}/poster.jpg")
        assert client.get(f"/videos/{event_id}.mp4").status_code == 200  # the file itself plays
    assert (answer.status_code, answer.json()) == (
        404, {"detail": "No poster frame for this video."})


def test_a_poster_is_a_jpeg_made_once_per_file(site: Site,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[int] = []

    def poster(handle: Any) -> bytes:
        made.append(1)
        return b"\xff\xd8poster"

    monkeypatch.setattr(files, "poster_jpeg", poster)
    monkeypatch.setattr(gallery_app, "_POSTERS", OrderedDict())  # none kept from other tests
    video = site.store("pj.mp4", "gen-pj")
    first = site.event("public_dag", video.as_uri(), "gen-pj")
    again = site.event("public_dag", video.as_uri(), "gen-pj")  # same bytes, another event
    with site.client("nobody") as client:
        answers = [client.get(f"/videos/{e}/poster.jpg") for e in (first, again, first)]
    assert [(a.status_code, a.content, a.headers["content-type"]) for a in answers] == \
        [(200, b"\xff\xd8poster", "image/jpeg")] * 3
    assert made == [1]
