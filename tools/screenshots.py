"""``make screenshots``: the pictures the README and the docs show, taken from a fresh demo.

Runs ``make demo`` (``tools/demo.py``) on a fresh home of its own, starts ``make gallery``'s whole
local Airflow on it (``tools/local_airflow.py``), and in headless Chromium (``tests/browser.py``)
logs in and photographs each page of :data:`SHOTS` into ``docs/images/``, where the README and the
docs reference them. Then, on the same Airflow, it runs the example review DAG
(``dags/kling_review.py``) up to its review and photographs :data:`REVIEW_SHOTS`: the required
action, the review page with the candidates playing, and that page after a pick of
:data:`PICK`, once the run has published that video.

What they show is recorded beside them in ``docs/images/screenshots.json``: the demo's figures
and the review run's as the videos page's JSON reported them (generations, credits, USD, models;
the demo's read before the review runs), the review's options and pick, the commit, and each
picture's SHA-256 and record. ``tests/test_screenshots.py`` checks every caption's figures
against its record and the records against what the DAGs make today, so a stale caption or
picture fails the unit suite.

Needs Debian's chromium (``tools/ensure-chromium.sh``) and never uses a real API key: the demo
always runs against the offline simulator here.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kling_provider._task.review import review_page_url  # the repo root is on sys.path first
from tests.browser import Browser, find_chromium
from tools.cluster import ROOT, free_port

IMAGES = ROOT / "docs" / "images"
MANIFEST = IMAGES / "screenshots.json"
#: The demo's and its Airflow's home, remade on every run (git-ignored).
WORK = ROOT / ".screenshots"
#: CSS pixels of the page, and the factor the PNG is scaled by: legible text, files near 100 kB.
VIEWPORT = (1280, 860)
SCALE = 0.75
#: When this run began (each step's line says how long after).
BEGAN = time.monotonic()
FRAME = "document.querySelector('iframe')"
IN_FRAME = f"{FRAME} && {FRAME}.contentDocument"


@dataclass(frozen=True)
class Shot:
    """One picture: its file under ``docs/images/``, the page, and how to know it is ready."""

    name: str
    what: str
    #: The page's path, given the run id (the demo's, or the review run's).
    path: Callable[[str], str]
    #: A JavaScript condition that holds once the page shows what the picture is for.
    ready: str
    #: JavaScript run once ready, before the picture (e.g. to show a video's frame).
    prepare: str = ""
    #: The record in screenshots.json whose figures the picture's captions state.
    record: str = "demo"


def play(videos: str) -> str:
    """JavaScript playing ``videos`` (an array expression) muted, paused a frame into the clip:
    the picture shows the videos, not a black start."""
    return (f"Promise.all({videos}.map(v => {{ v.muted = true; return v.play(); }}))"
            ".then(() => new Promise(done => setTimeout(() => "
            f"{{ {videos}.forEach(v => v.pause()); done(true); }}, 600)))")


_VIDEO = f"{FRAME}.contentDocument.querySelector('video')"
SHOTS = (
    Shot("kling-gallery.png", "the Kling videos page, the demo's video playing",
         lambda run_id: "/plugin/kling-videos",
         f"{IN_FRAME} && !!({_VIDEO}) && {_VIDEO}.readyState >= 2", play(f"[{_VIDEO}]")),
    Shot("kling-video-link.png", "the generate task's Details tab with its Kling video link",
         lambda run_id: f"/dags/kling_raccoon/runs/{run_id}/tasks/generate/details",
         "[...document.querySelectorAll('a,button')].some(e => "
         "e.textContent.trim() === 'Kling video')"),
)

REVIEW_DAG = "kling_review"
#: The option the last review picture clicks; the run then publishes that video.
PICK = "Video 2"
#: The local Airflow's simulator speed: each of the review's three 5 s videos (320 simulated
#: seconds) takes 8 s.
TIME_SCALE = "40"
_OPTION = "[...document.querySelectorAll('button')].find(b => b.textContent.trim() === {})"
_VIDEOS = "[...document.querySelectorAll('video')]"
_PLAYABLE = f"{_VIDEOS}.length > 0 && {_VIDEOS}.every(v => v.readyState >= 2)"
_STATUS = "document.getElementById('status').textContent"


def required_action(run_id: str) -> str:
    return f"/dags/{REVIEW_DAG}/runs/{quote(run_id, safe='')}/tasks/review/required_actions"


def review_page(run_id: str) -> str:
    """The review page, as the request's body links it."""
    return review_page_url(REVIEW_DAG, run_id, "review")


REVIEW_SHOTS = (
    Shot("kling-review-required-action.png",
         "the review task's required action in Airflow: one button per video and None of "
         "these, the link to the review page",
         required_action, f"!!({_OPTION.format(json.dumps(PICK))}) && "
         "!!document.querySelector('a[href^=\"/kling/review?\"]')", record="review"),
    Shot("kling-review-page.png", "the review page waiting for a reviewer, the videos playing",
         review_page, f"{_PLAYABLE} && {_STATUS}.startsWith('Waiting for a reviewer')",
         play(_VIDEOS), record="review"),
)
#: Taken after the pick, once the run has published the picked video.
PICKED = Shot("kling-review-picked.png", f"the review page after the pick of {PICK}",
              review_page, f"{_PLAYABLE} && {_STATUS}.startsWith('Picked: {PICK} ')",
              play(_VIDEOS), record="review")


def step(message: str) -> None:
    print(f"screenshots: [{time.monotonic() - BEGAN:5.1f} s] {message}", flush=True)


def run(args: list[str], what: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "AIMLAPI_KEY"}  # the simulator, always
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"screenshots: {what} failed (exit {done.returncode}):\n"
                 f"{(done.stdout + done.stderr)[-4000:]}")
    return done.stdout


def wait(what: str, check: Callable[[], Any], timeout: float = 300) -> Any:
    """``check()``'s first truthy answer, polled every second (HTTP errors count as not yet)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if found := check():
                return found
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(1)
    sys.exit(f"screenshots: timed out after {timeout:.0f} s waiting for {what}")


def rest(state: dict[str, Any]) -> httpx.Client:
    """Airflow's REST API (and the videos page's JSON) as the admin user."""
    token = httpx.post(f"{state['url']}/auth/token", timeout=30, json={
        "username": state["username"], "password": state["password"]}).json()["access_token"]
    return httpx.Client(base_url=state["url"], timeout=60,
                        headers={"Authorization": f"Bearer {token}"})


def figures(api: httpx.Client, **only: str) -> dict[str, Any]:
    """What the videos page's JSON says was made (the same data the pictures show), of the
    videos matching ``only`` (the page's filters: ``dag_id``, ``run_id``)."""
    listing = api.get("/kling/api/videos", params=only).json()
    total = listing["spend"]["total"]
    return {
        "generations": int(total["count"]),  # all of them, whatever page the cards are on
        "credits": int(Decimal(str(total["credits"]))),
        # Money as the page prints it; str() first so a float's artifacts never show.
        "usd": f"{Decimal(str(total['usd'])):.2f}",
        "models": sorted({video["model"] for video in listing["videos"]}),
        "run_ids": sorted({video["source"]["run_id"] for video in listing["videos"]}),
    }


def take(browser: Browser, url: str, shot: Shot, run_id: str) -> dict[str, str]:
    browser.open(url + shot.path(run_id))
    browser.wait_for(shot.what, shot.ready, timeout=60)
    if shot.prepare:
        browser.evaluate(shot.prepare)
    time.sleep(0.5)  # let the last paint settle (fonts, the bar's transition)
    png = browser.screenshot(IMAGES / shot.name, scale=SCALE)
    return {"shows": shot.what, "figures": shot.record,
            "sha256": hashlib.sha256(png.read_bytes()).hexdigest()}


def start_review(api: httpx.Client, home: Path) -> tuple[str, dict[str, Any]]:
    """A run of the review DAG, and its review's request once the review waits for a reviewer.

    Also waits for the scheduler to log the parked try's worker as finished: answered before
    that (within about a second of parking), Airflow 3.3.2's scheduler can fail the resumed try
    (as ``tests/test_review_real_airflow.py`` waits before it answers)."""
    dag = f"/api/v2/dags/{REVIEW_DAG}"
    wait(f"{REVIEW_DAG} to be parsed", lambda: api.get(dag).is_success)
    api.patch(dag, json={"is_paused": False}).raise_for_status()
    created = api.post(f"{dag}/dagRuns", json={"logical_date": None})
    created.raise_for_status()
    run_id = str(created.json()["dag_run_id"])
    review = f"{dag}/dagRuns/{run_id}/taskInstances/review"

    def waiting() -> dict[str, Any] | None:
        state = api.get(review).json().get("state")
        if state in ("failed", "upstream_failed"):
            sys.exit(f"screenshots: run {run_id}'s review is {state}; see {home}/logs")
        detail = api.get(f"{review}/-1/hitlDetails")
        return detail.json() if state in ("awaiting_input", "deferred") and detail.is_success \
            else None

    request: dict[str, Any] = wait(f"run {run_id}'s review to wait for a reviewer", waiting)
    line = f"TaskInstance Finished: dag_id={REVIEW_DAG}, task_id=review, run_id={run_id},"
    wait("the scheduler to log the review's parked try",
         lambda: line in (home / "scheduler.log").read_text(errors="replace"), timeout=60)
    return run_id, request


def pick(browser: Browser, api: httpx.Client, url: str, run_id: str) -> dict[str, Any]:
    """Click :data:`PICK` in the required action as a reviewer does; what the run did then."""
    button = _OPTION.format(json.dumps(PICK))
    browser.open(url + required_action(run_id))
    browser.wait_for(f"{PICK} to be clickable", f"({button}) && !({button}).disabled")
    browser.evaluate(f"({button}).click(); true")
    dag_run = f"/api/v2/dags/{REVIEW_DAG}/dagRuns/{run_id}"

    def finished() -> str | None:
        value = api.get(dag_run).json()["state"]
        return str(value) if value in ("success", "failed") else None

    state = wait(f"run {run_id} to finish", finished)
    value = api.get(f"{dag_run}/taskInstances/publish/xcomEntries/return_value").json()["value"]
    published = json.loads(value) if isinstance(value, str) else value
    if state != "success" or published["review"]["choice"] != PICK \
            or published["generation_id"] != published["review"]["chosen"]:
        sys.exit(f"screenshots: after the pick of {PICK}, run {run_id} is {state} and "
                 f"published {published}")
    return {"choice": PICK, "run_state": state}


def photograph(state: dict[str, Any], api: httpx.Client, run_id: str, profile: Path
               ) -> tuple[dict[str, dict[str, str]], dict[str, Any]]:
    """The pictures of :data:`SHOTS` (the demo's run), then of a review run: the pictures and
    the review's record."""
    chromium = find_chromium()
    if chromium is None:
        sys.exit("screenshots: chromium is not installed (tools/ensure-chromium.sh)")
    url = state["url"]
    with Browser(chromium, profile) as browser:
        browser.set_viewport(*VIEWPORT)
        browser.log_in(url, state["username"], state["password"])
        taken = {shot.name: take(browser, url, shot, run_id) for shot in SHOTS}
        step(f"triggering {REVIEW_DAG}; waiting for its review...")
        review_run, request = start_review(api, Path(state["home"]))
        made = figures(api, dag_id=REVIEW_DAG, run_id=review_run)
        if made.pop("run_ids") != [review_run] or made["generations"] != len(
                request["options"]) - 1:
            sys.exit(f"screenshots: the review offers {request['options']}, the page shows {made}")
        step(f"the review waits ({made}); photographing, then picking {PICK}...")
        taken |= {shot.name: take(browser, url, shot, review_run) for shot in REVIEW_SHOTS}
        made |= {"options": request["options"], **pick(browser, api, url, review_run)}
        taken[PICKED.name] = take(browser, url, PICKED, review_run)
    return taken, made


def main() -> None:
    if WORK.exists():
        run([sys.executable, "tools/local_airflow.py", "stop", "--home", str(WORK / "home")],
            "stopping an earlier run's Airflow")
        shutil.rmtree(WORK)
    home, output = WORK / "home", WORK / "demo-output"
    step("make demo on a fresh home...")
    printed = run([sys.executable, "tools/demo.py", "--home", str(home), "--output", str(output)],
                  "the demo")
    step("the demo finished; starting its Airflow (as make gallery)...")
    run([sys.executable, "tools/local_airflow.py", "start", "--home", str(home), "--videos",
         str(output), "--port", str(free_port()), "--time-scale", TIME_SCALE], "starting Airflow")
    try:
        state = json.loads((home / "running.json").read_text())
        api = rest(state)
        made = figures(api)  # before the review runs: the demo's run alone
        if len(made["run_ids"]) != 1:
            sys.exit(f"screenshots: expected the demo's one run, the page shows {made}")
        step(f"the page shows {made}; photographing...")
        profile = WORK / "chromium-profile"
        profile.mkdir()
        pictures, review = photograph(state, api, made["run_ids"][0], profile)
    finally:
        run([sys.executable, "tools/local_airflow.py", "stop", "--home", str(home)],
            "stopping Airflow")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True, check=False).stdout.strip()
    creates = re.search(r"the simulator received (\d+) create request", printed)
    record = {"commit": commit, "demo": {k: v for k, v in made.items() if k != "run_ids"},
              # What the demo itself said it paid for: the page's count must agree.
              "demo_create_requests": int(creates.group(1)) if creates else None,
              "review": review, "pictures": pictures}
    MANIFEST.write_text(json.dumps(record, indent=2) + "\n")
    for name in pictures:
        step(f"{IMAGES.relative_to(ROOT) / name}: {(IMAGES / name).stat().st_size:,} bytes")
    step(f"done; figures in {MANIFEST.relative_to(ROOT)} (check the captions: "
         "pytest tests/test_screenshots.py)")


if __name__ == "__main__":
    main()
