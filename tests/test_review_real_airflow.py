"""The example review DAG in real Airflow, answered through the REST API for required actions.

A real cluster (api-server, scheduler, dag-processor, triggerer; ``tests.test_real_airflow``)
against the simulator runs ``dags/kling_review.py`` twice, with ``logical_date: null``:

1. Its three variants are generated, then the review waits for a reviewer (Airflow 3.3:
   ``awaiting_input``; before: deferred) with one option per video; its body links to the
   review page, which the api-server serves with the three candidates. A ``PATCH`` of its
   ``hitlDetails`` picks ``Video 2`` with a note: the run continues with that video (the publish
   download stores generation 2, its Asset event records the pick), and the re-run is skipped.
2. ``None of these`` with a note: publishing is skipped and a new run of the DAG is triggered
   with the note as its prompt.

And in a real browser: the reviewer opens the required action, follows its link, plays the three
candidates and clicks one; the run continues with that video.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from kling_provider._task.review import review_page_url
from kling_provider.testing.simulator import KlingSimulator
from tests.browser import Browser, find_chromium
from tests.test_delivery_real_airflow import finished, trigger, xcom
from tests.test_real_airflow import ROOT, AirflowCluster, local_cluster

pytestmark = pytest.mark.integration
DAG_ID = "kling_review"
ARTIFACTS = ROOT / "test-artifacts"
WAITING = ("awaiting_input", "deferred")


@pytest.fixture
def cluster(tmp_path: Path,
            airflow_db_template: Path) -> Iterator[tuple[AirflowCluster, KlingSimulator]]:
    dags = tmp_path / "dags"
    dags.mkdir()
    shutil.copy(ROOT / "dags" / f"{DAG_ID}.py", dags)  # the example alone: one file to parse
    with local_cluster(tmp_path, airflow_db_template, dags_folder=dags) as running:
        yield running


def hitl_path(run_id: str) -> str:
    return f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/review/-1/hitlDetails"


def task_state(airflow: AirflowCluster, run_id: str, task_id: str) -> str | None:
    answer = airflow.api.get(f"/api/v2/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}")
    return answer.json().get("state") if answer.status_code == 200 else None


def waiting_review(airflow: AirflowCluster, run_id: str) -> dict[str, Any]:
    """The review's request, once the task waits for it."""
    def waiting() -> dict[str, Any] | None:
        state = task_state(airflow, run_id, "review")
        assert state not in ("failed", "upstream_failed"), airflow.diagnostics()
        detail = airflow.api.get(hitl_path(run_id))
        return detail.json() if state in WAITING and detail.status_code == 200 else None

    request: dict[str, Any] = airflow.wait_for(f"run {run_id}'s review to wait", waiting)
    # A reviewer takes seconds at least; this test would answer in milliseconds. An answer that
    # lands before the scheduler has handled the executor's report of the parking try's exit
    # makes Airflow 3.3.2 fail the resumed try ("Executor reported that the task instance ...
    # finished with state success, but the task instance's state attribute is queued": the
    # re-queued try has the same key, and the late report drops it from the executor's running
    # set; the race of apache/airflow#67287 and #72716, through the HITL response route). So
    # answer only once the scheduler has logged that try's end, as it does for every try.
    parked = f"TaskInstance Finished: dag_id={DAG_ID}, task_id=review, run_id={run_id},"
    airflow.wait_for(f"the scheduler to handle run {run_id}'s parked review try",
                     lambda: parked in (airflow.home / "scheduler.log").read_text(errors="replace"))
    return request


def answer(airflow: AirflowCluster, run_id: str, option: str, note: str) -> None:
    done = airflow.api.patch(hitl_path(run_id), json={"chosen_options": [option],
                                                      "params_input": {"note": note}})
    assert done.status_code == 200, done.text


def test_review_answered_through_the_rest_api(
        cluster: tuple[AirflowCluster, KlingSimulator]) -> None:
    airflow, sim = cluster
    airflow.wait_for("the review DAG to be parsed",
                     lambda: airflow.api.get(f"/api/v2/dags/{DAG_ID}").status_code == 200)
    assert airflow.api.get("/api/v2/importErrors").json()["import_errors"] == []
    assert airflow.api.patch(f"/api/v2/dags/{DAG_ID}", json={"is_paused": False}).status_code == 200

    # 1. A pick: the run continues with that video.
    run_id = trigger(airflow, DAG_ID)
    request = waiting_review(airflow, run_id)
    assert request["options"] == ["Video 1", "Video 2", "Video 3", "None of these"]
    assert request["defaults"] == ["None of these"] and request["multiple"] is False
    assert "A raccoon surfing a wave at sunset" in request["subject"]
    candidates = [xcom(airflow, DAG_ID, run_id, "generate", i) for i in range(3)]
    page = review_page_url(DAG_ID, run_id, "review")
    assert f"({page})" in request["body"]  # the link the reviewer follows
    shown = airflow.api.get(page)
    assert shown.status_code == 200 and "Waiting for a reviewer" in shown.text
    for candidate in candidates:
        assert candidate["prompt"] in shown.text and candidate["video_url"] in shown.text
    assert airflow.api.get(review_page_url(DAG_ID, run_id, "nope")).status_code == 404

    answer(airflow, run_id, "Video 2", "the wave is better")
    assert finished(airflow, DAG_ID, run_id) == "success", airflow.diagnostics()
    published = xcom(airflow, DAG_ID, run_id, "publish")
    chosen = candidates[1]
    assert published["generation_id"] == chosen["generation_id"]
    assert Path(published["uri"].removeprefix("file://")).read_bytes() == \
        sim.video_of(chosen["generation_id"])
    review = published["review"]
    assert review["chosen"] == chosen["generation_id"] and review["choice"] == "Video 2"
    assert review["note"] == "the wave is better" and review["reviewer"]
    assert review["timed_out"] is False and review["candidates"] == \
        [c["generation_id"] for c in candidates]
    assert task_state(airflow, run_id, "generate_again") == "skipped"
    events = airflow.api.get("/api/v2/assets/events", params={
        "source_dag_id": DAG_ID, "source_run_id": run_id}).json()["asset_events"]
    assert [(e["source_task_id"], e["extra"]["generation_id"], e["extra"]["review"]["note"])
            for e in events] == [("publish", chosen["generation_id"], "the wave is better")]
    assert "Picked: Video 2" in airflow.api.get(page).text
    listed = airflow.api.get("/kling/api/videos", params={"run_id": run_id}).json()["videos"]
    marks = {v["generation_id"]: v["review"]["status"] for v in listed if v["review"]}
    assert marks == {c["generation_id"]: "picked" if c is chosen else "not picked"
                     for c in candidates}

    # 2. None of these: nothing published, the DAG runs again with the note as its prompt.
    second = trigger(airflow, DAG_ID)
    waiting_review(airflow, second)
    answer(airflow, second, "None of these", "A raccoon surfing at dusk, slow motion")
    assert finished(airflow, DAG_ID, second) == "success", airflow.diagnostics()
    assert task_state(airflow, second, "publish") == "skipped"
    assert task_state(airflow, second, "generate_again") == "success"
    record = airflow.api.get(
        f"/api/v2/dags/{DAG_ID}/dagRuns/{second}/taskInstances/review/xcomEntries/kling_review"
    ).json()["value"]
    record = json.loads(record) if isinstance(record, str) else record
    assert record["status"] == "none" and record["chosen"] is None
    runs = airflow.api.get(f"/api/v2/dags/{DAG_ID}/dagRuns").json()["dag_runs"]
    again = [r for r in runs if r["dag_run_id"] not in (run_id, second)]
    assert [r["conf"] for r in again] == [{"prompt": "A raccoon surfing at dusk, slow motion"}]
    # 6 paid generations: three per run; the re-run's own are not waited for here.
    assert sim.ledger.count(method="POST") >= 6


def test_a_reviewer_plays_the_candidates_and_picks_one_in_a_real_browser(
        cluster: tuple[AirflowCluster, KlingSimulator]) -> None:
    """Headless Chromium (Debian's package) as the reviewer: the required action in Airflow's UI,
    its link to the review page, the three videos playing there, then a click on ``Video 3``
    (no note needed): the run continues with that video. Pictures in ``test-artifacts/``."""
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("chromium is not installed (tools/ensure-chromium.sh installs Debian's "
                    "package where it can: root with apt-get)")
    airflow, sim = cluster
    airflow.wait_for("the review DAG to be parsed",
                     lambda: airflow.api.get(f"/api/v2/dags/{DAG_ID}").status_code == 200)
    assert airflow.api.patch(f"/api/v2/dags/{DAG_ID}", json={"is_paused": False}).status_code == 200
    run_id = trigger(airflow, DAG_ID)
    waiting_review(airflow, run_id)
    candidates = [xcom(airflow, DAG_ID, run_id, "generate", i) for i in range(3)]
    profile = airflow.home / "chromium-profile"
    profile.mkdir()
    option = "[...document.querySelectorAll('button')].find(b => b.textContent.trim() === {})"
    with Browser(chromium, profile) as browser:
        browser.set_viewport(1400, 1000)
        browser.open(f"{airflow.url}/")  # every user is an admin here: the UI signs in
        required = (f"{airflow.url}/dags/{DAG_ID}/runs/{quote(run_id, safe='')}/tasks/review/"
                    "required_actions")
        browser.open(required)
        browser.wait_for("the review's options", f"!!({option.format(json.dumps('Video 3'))})")
        link = browser.evaluate("[...document.querySelectorAll('a')].find(a => "
                                "a.textContent.includes('candidates side by side'))"
                                ".getAttribute('href')")
        assert link == review_page_url(DAG_ID, run_id, "review")
        browser.screenshot(ARTIFACTS / "review-required-action.png")
        browser.open(f"{airflow.url}{link}")
        videos = "[...document.querySelectorAll('video')]"
        browser.wait_for("three players", f"{videos}.length === 3")
        browser.evaluate(f"Promise.all({videos}.map(v => {{ v.muted = true; v.loop = true; "
                         "return v.play(); })).then(() => true)")
        browser.wait_for("every candidate to play", f"{videos}.every(v => v.currentTime > 0.3)")
        played = browser.evaluate(f"{videos}.map(v => [v.getAttribute('src'), v.error, "
                                  "v.played.length])")
        shown = browser.evaluate("document.body.innerText")
        browser.screenshot(ARTIFACTS / "review-page.png")
        browser.open(required)
        pick = option.format(json.dumps("Video 3"))
        browser.wait_for("Video 3 to be clickable", f"({pick}) && !({pick}).disabled")
        browser.evaluate(f"({pick}).click(); true")
        assert finished(airflow, DAG_ID, run_id) == "success", airflow.diagnostics()
    assert [src for src, _, _ in played] == [c["video_url"] for c in candidates]
    assert all(error is None and count >= 1 for _, error, count in played), played
    for candidate in candidates:
        assert candidate["prompt"] in shown and candidate["model"] in shown
    published = xcom(airflow, DAG_ID, run_id, "publish")
    assert published["generation_id"] == candidates[2]["generation_id"]
    assert published["review"]["choice"] == "Video 3" and published["review"]["note"] == ""
    assert Path(published["uri"].removeprefix("file://")).read_bytes() == \
        sim.video_of(candidates[2]["generation_id"])
