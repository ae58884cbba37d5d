"""The review on the videos page: the review page's candidates and the picked/not picked marks.

Same site as ``tests/test_gallery_routes.py`` (the plugin's app in-process under Airflow's
SimpleAuthManager on a real metadata DB); the review task's ``kling_review`` XCom is written as
the Task SDK writes it, since no scheduler runs here. The marking rule itself is checked over
inputs with Hypothesis.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kling_provider._task.review import REVIEW_XCOM_KEY, candidates, outcome, record
from kling_provider.gallery.records import ReviewRow, TaskRef, Video, mark_reviews
from tests.gallery_seed import new_task_instance_id
from tests.gallery_site import SIMPLE, Site, make_site
from tests.test_gallery_routes import generation


@pytest.fixture
def site(tmp_path: Path, airflow_db_template: Path) -> Iterator[Site]:
    yield from make_site(tmp_path, airflow_db_template, SIMPLE)


def result(n: int) -> dict[str, Any]:
    return {"generation_id": f"gen-{n}", "video_url": f"https://cdn.test/{n}.mp4",
            "prompt": f"a red fox, take {n}", "model": "kling-m", "usd_spent": 0.28 * n,
            "status": "completed"}


def decided(count: int, pick: int | None, note: str = "") -> dict[str, Any]:
    """The record a review of ``count`` candidates pushes once ``pick`` (1-based) is chosen."""
    found = candidates([result(n) for n in range(1, count + 1)], task_id="review")
    option = "None of these" if pick is None else f"Video {pick}"
    _, review = outcome(found, [option], {"note": note}, responded_by={"name": "ana"},
                        responded_at=datetime(2026, 11, 21, 12, tzinfo=timezone.utc),
                        timed_out=False)
    return record(found, review)


def push_review(dag_id: str, run_id: str, value: dict[str, Any]) -> None:
    """The review task of ``dag_id``'s run ``run_id`` and its ``kling_review`` XCom."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import insert, select

    with create_session() as session:
        run_pk = session.scalar(select(DagRun.id).where(DagRun.dag_id == dag_id,
                                                        DagRun.run_id == run_id))
        session.execute(insert(TaskInstance.__table__).values(
            id=new_task_instance_id(), dag_id=dag_id, run_id=run_id, task_id="review",
            map_index=-1, state="success", pool="default_pool", try_number=1))
        session.execute(insert(XComModel.__table__).values(
            dag_run_id=run_pk, dag_id=dag_id, run_id=run_id, task_id="review", map_index=-1,
            key=REVIEW_XCOM_KEY, value=value,
            timestamp=datetime(2026, 11, 21, 12, tzinfo=timezone.utc)))


def reviewed_run(site: Site, value: dict[str, Any]) -> int:
    """red_dag's run_1: gen-2 generated (not stored), gen-1 downloaded, the review decided."""
    generation("red_dag", "run_1", "gen-2", state="success", result=result(2))
    push_review("red_dag", "run_1", value)
    video = site.store("gen-1.mp4", "gen-1")
    return site.event("red_dag", video.as_uri(), "gen-1", prompt="a red fox, take 1",
                      model="kling-m")  # the site's first event is of run_1


REVIEW = "/review?dag_id=red_dag&run_id=run_1&task_id=review"


def test_the_review_page_plays_each_candidate_side_by_side(site: Site) -> None:
    event_id = reviewed_run(site, decided(2, pick=1, note="the light is better"))
    with site.client("red") as red:
        page = red.get(REVIEW)
    assert page.status_code == 200
    html = page.text
    assert html.count('class="candidate') == 2
    assert f'src="/kling/videos/{event_id}.mp4"' in html  # the stored copy: the page's player
    assert 'src="https://cdn.test/2.mp4"' in html  # not downloaded: the API's URL
    assert "a red fox, take 1" in html and "a red fox, take 2" in html and "$0.56" in html
    assert "Picked: Video 1 by ana" in html and "Note: the light is better" in html
    assert html.index("Video 1") < html.index("Video 2")


def test_a_waiting_review_links_to_airflows_required_action(site: Site) -> None:
    generation("red_dag", "run_1", "gen-1", state="success", result=result(1))
    push_review("red_dag", "run_1", record(candidates([result(1)], task_id="review"), None))
    with site.client("red") as red:
        html = red.get(REVIEW).text
    assert "Waiting for a reviewer" in html
    assert 'href="/dags/red_dag/runs/run_1/tasks/review/required_actions"' in html


def test_the_review_page_follows_the_videos_pages_access_rules(site: Site) -> None:
    reviewed_run(site, decided(2, pick=1))
    with site.client("blue") as blue:
        hidden = blue.get(REVIEW)
        missing = blue.get("/review?dag_id=red_dag&run_id=run_1&task_id=other")
    assert (hidden.status_code, hidden.text) == (missing.status_code, missing.text) == \
        (404, '{"detail":"No such review."}')
    with site.client() as anonymous:
        assert anonymous.get(REVIEW, follow_redirects=False).status_code == 303


def test_the_videos_page_marks_the_pick_and_the_others(site: Site) -> None:
    reviewed_run(site, decided(2, pick=1, note="the light is better"))
    with site.client("red") as red:
        listing = red.get("/api/videos").json()["videos"]
        page = red.get("/").text
    marks = {v["generation_id"]: v["review"] for v in listing}
    assert marks["gen-1"]["status"] == "picked" and marks["gen-2"]["status"] == "not picked"
    assert marks["gen-1"]["reviewer"] == "ana" and marks["gen-2"]["note"] == "the light is better"
    assert "picked (review, ana, 2026-11-21T12:00:00+00:00): the light is better" in page
    assert "not picked (review, ana" in page


# -- the marking rule ---------------------------------------------------------------------

def _video(n: int, run_id: str = "run_1") -> Video:
    return Video(timestamp=datetime(2026, 11, 21, tzinfo=timezone.utc),
                 source=TaskRef("d", run_id, "generate", n), generation_id=f"gen-{n}")


@given(st.integers(min_value=1, max_value=6), st.data())
def test_a_decided_review_marks_one_picked_and_the_rest_not(count: int,
                                                            data: st.DataObject) -> None:
    pick = data.draw(st.one_of(st.none(), st.integers(min_value=1, max_value=count)))
    videos = [_video(n) for n in range(1, count + 1)] + [_video(1, run_id="run_2")]
    review = ReviewRow(TaskRef("d", "run_1", "review"), decided(count, pick))
    marked = mark_reviews(videos, [review])
    statuses = [v.review["status"] if v.review else None for v in marked]
    expected = ["picked" if n == pick else "not picked" for n in range(1, count + 1)]
    assert statuses == [*expected, None]  # another run's video of the same id is left alone


def test_a_waiting_review_marks_nothing() -> None:
    waiting = record(candidates([result(1)], task_id="review"), None)
    marked = mark_reviews([_video(1)], [ReviewRow(TaskRef("d", "run_1", "review"), waiting)])
    assert marked[0].review is None
