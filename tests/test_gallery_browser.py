"""The "Kling videos" page in real Airflow, after a real DAG run, in a real browser.

One cluster (api-server, scheduler, dag-processor, triggerer; SQLite, LocalExecutor) runs the
raccoon DAG against the simulator, with SimpleAuthManager users ``admin`` and ``outsider``, where
``outsider`` may not read ``kling_raccoon`` (``tests.gallery_auth``); the videos folder is the
one ``[kling] video_roots`` entry. Then: the gallery's HTTP contract (listing, range requests,
both refusals: 401, and the 404 that names nothing), and headless Chromium logs in through
Airflow's login form, opens the page inside the Airflow UI and plays the video; logged in as
``outsider``, the same page is empty. The screenshot is kept in ``test-artifacts/``.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from kling_provider._models import feeds as _feeds
from kling_provider._models.retirement import Retirement
from kling_provider.gallery import gallery_link
from kling_provider.testing.simulator import KlingSimulator
from tests.browser import Browser, find_chromium
from tests.conftest import SECRET_KEY, connection_json
from tests.test_real_airflow import ROOT, AirflowCluster, cluster_env, free_port

pytestmark = pytest.mark.integration

ARTIFACTS = ROOT / "test-artifacts"
PASSWORDS = {"admin": "admin-pass-1", "outsider": "outsider-pass-2"}
DAG_ID = "kling_raccoon"
REPORT_DAG = "kling_spend_report"


@dataclass
class Gallery:
    airflow: AirflowCluster
    sim: KlingSimulator
    base: str
    videos: Path
    run_id: str

    def client(self, user: str | None) -> httpx.Client:
        """A REST client as ``user`` (a Bearer token from Airflow's login), or anonymous."""
        headers = {}
        if user is not None:
            answer = httpx.post(f"{self.base}/auth/token", timeout=30,
                                json={"username": user, "password": PASSWORDS[user]})
            assert answer.status_code in (200, 201), answer.text
            headers["Authorization"] = f"Bearer {answer.json()['access_token']}"
        return httpx.Client(base_url=self.base, timeout=30, headers=headers)


@pytest.fixture(scope="module")
def gallery(tmp_path_factory: pytest.TempPathFactory,
            airflow_db_template: Path) -> Iterator[Gallery]:
    tmp = tmp_path_factory.mktemp("gallery")
    # 320 simulated seconds take 20 s: clear of apache/airflow#67287 (see test_real_airflow).
    with KlingSimulator(time_scale=16, api_keys={SECRET_KEY}) as sim:
        port = free_port()
        home = tmp / "airflow"
        home.mkdir()
        (home / "passwords.json").write_text(json.dumps(PASSWORDS))
        dags = tmp / "dags"  # the raccoon, and the spend report the page reconciles
        dags.mkdir()
        for source in (ROOT / "dags" / "kling_raccoon.py",
                       ROOT / "tests" / "dags" / "kling_spend_report.py"):
            shutil.copy(source, dags / source.name)
        env = cluster_env(home, port, sim, tmp / "videos", {
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__AUTH_MANAGER": "tests.gallery_auth.DagDenyingAuthManager",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,outsider:viewer",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            "KLING_TEST_DENIED_DAGS": f"outsider={DAG_ID}|{REPORT_DAG}",
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            # A budget on the connection: the raccoon's generate task checks it before paying.
            "AIRFLOW_CONN_KLING_DEFAULT": connection_json(sim.base_url, budget_usd="20",
                                                          budget_period="day"),
            "PYTHONPATH": str(ROOT),
            _feeds.CACHE_DIR_VARIABLE: str(tmp / "feeds"),
        })
        shutil.copy(airflow_db_template, home / "airflow.db")
        airflow = AirflowCluster(home, env, port)
        try:
            for name in ("api-server", "scheduler", "dag-processor", "triggerer"):
                args = ("--port", str(port), "--host", "127.0.0.1") if name == "api-server" else ()
                airflow.start(name, name, *args)
            gallery = Gallery(airflow, sim, f"http://127.0.0.1:{port}", tmp / "videos", "")
            admin = airflow.wait_for("the API server", lambda: gallery.client("admin"))
            airflow.api = admin
            gallery.run_id = run_raccoon(airflow)
            yield gallery
        finally:
            airflow.stop()


def run_raccoon(airflow: AirflowCluster, dag_id: str = DAG_ID,
                conf: dict[str, Any] | None = None) -> str:
    """Run ``dag_id`` (the raccoon's by default) once to its end, with ``conf``; its run id."""
    api = airflow.api
    airflow.wait_for(f"DAG {dag_id} to be parsed",
                     lambda: api.get(f"/api/v2/dags/{dag_id}").status_code == 200)
    assert api.patch(f"/api/v2/dags/{dag_id}", json={"is_paused": False}).status_code == 200
    run = api.post(f"/api/v2/dags/{dag_id}/dagRuns",
                   json={"logical_date": None, **({"conf": conf} if conf else {})})
    assert run.status_code == 200, run.text
    run_id: str = run.json()["dag_run_id"]

    def finished() -> str | None:
        state = api.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}").json()["state"]
        return str(state) if state in ("success", "failed") else None

    assert airflow.wait_for("the DAG run", finished) == "success", airflow.diagnostics()
    return run_id


def only_video(listing: dict[str, Any]) -> dict[str, Any]:
    assert len(listing["videos"]) == 1, listing
    video: dict[str, Any] = listing["videos"][0]
    return video


def test_gallery_lists_the_run_with_its_links_and_spend(gallery: Gallery) -> None:
    with gallery.client("admin") as admin:
        video = only_video(admin.get("/kling/api/videos").json())
        generation_id = gallery.sim.generation_ids()[0]
        assert video["generation_id"] == generation_id
        assert video["model"] == "klingai/v2-master-text-to-video"
        assert video["prompt"].startswith("A cheerful white raccoon")
        assert video["source"] == {"dag_id": DAG_ID, "run_id": gallery.run_id,
                                   "task_id": "download", "map_index": -1}
        assert video["generate_task"]["task_id"] == "generate"
        stored = [p for p in gallery.videos.rglob("*.mp4")]
        assert len(stored) == 1 and video["uri"] == stored[0].resolve().as_uri()
        assert video["size"] == stored[0].stat().st_size
        spend = admin.get("/kling/api/videos").json()["spend"]
        assert spend["total"]["count"] == 1
        page = admin.get("/kling/").text
        assert f'src="/kling/videos/{video["event_id"]}.mp4"' in page
        assert f"/dags/{DAG_ID}/runs/" in page
        # Filters narrow the list; the task's "Kling video" link opens the page at the video.
        assert admin.get("/kling/api/videos", params={"model": "other"}).json()["videos"] == []
        assert admin.get("/kling/api/videos", params={"since": "bad"}).status_code == 400
        links = admin.get(f"/api/v2/dags/{DAG_ID}/dagRuns/{gallery.run_id}/taskInstances/"
                          "download/links").json()["extra_links"]
        assert links["Kling video"] == gallery_link(generation_id)
        # The link opens the page inside the UI, which shows /kling/?... in its iframe.
        focused = admin.get(links["Kling video"].removeprefix("/plugin/kling-videos")).text
        assert f'class="card focus" data-generation-id="{generation_id}"' in focused


def test_gallery_serves_the_stored_mp4_with_range_requests(gallery: Gallery) -> None:
    stored = next(gallery.videos.rglob("*.mp4")).read_bytes()
    size = len(stored)
    with gallery.client("admin") as admin:
        url = only_video(admin.get("/kling/api/videos").json())["url"]
        whole = admin.get(url)
        assert whole.status_code == 200 and whole.content == stored
        assert whole.headers["content-type"] == "video/mp4"
        assert whole.headers["accept-ranges"] == "bytes"
        part = admin.get(url, headers={"Range": "bytes=100-199"})
        assert part.status_code == 206
        assert part.headers["content-range"] == f"bytes 100-199/{size}"
        assert part.content == stored[100:200]
        tail = admin.get(url, headers={"Range": "bytes=-16"})
        assert tail.status_code == 206 and tail.content == stored[-16:]
        beyond = admin.get(url, headers={"Range": f"bytes={size}-"})
        assert beyond.status_code == 416
        assert beyond.headers["content-range"] == f"bytes */{size}"
        poster = admin.get(url.replace(".mp4", "/poster.jpg"))
        if shutil.which("ffmpeg"):
            assert poster.status_code == 200 and poster.content[:2] == b"\xff\xd8", poster.text
        assert admin.get("/kling/videos/999999.mp4").status_code == 404
        # Only an event id names a file: a path in its place matches no route.
        assert admin.get("/kling/videos/..%2F..%2Fetc%2Fpasswd.mp4").status_code == 404
        assert admin.get("/kling/videos/passwd.mp4").status_code == 422


def test_gallery_refuses_anonymous_and_unauthorised_users(gallery: Gallery) -> None:
    with gallery.client("admin") as admin:
        video = only_video(admin.get("/kling/api/videos").json())
    url, poster = video["url"], f"/kling/videos/{video['event_id']}/poster.jpg"
    with gallery.client(None) as anonymous:
        for path in ("/kling/api/videos", url, poster):
            assert anonymous.get(path).status_code == 401, path
        page = anonymous.get("/kling/")
        assert page.status_code == 303 and "/auth/login" in page.headers["location"]
        forged = anonymous.get(url, headers={"Authorization": "Bearer not-a-token"})
        assert forged.status_code == 401
    with gallery.client("outsider") as outsider:
        assert outsider.get(f"/api/v2/dags/{DAG_ID}").status_code == 403  # Airflow agrees
        assert outsider.get("/kling/api/videos").json()["videos"] == []
        empty = outsider.get("/kling/").text
        assert video["generation_id"] not in empty and "No Kling videos match" in empty
        # The same answer as for an event that does not exist: it names no DAG.
        missing = outsider.get("/kling/videos/999999.mp4")
        for answer in (outsider.get(url), outsider.get(url, headers={"Range": "bytes=0-99"}),
                       outsider.get(poster), missing):
            assert (answer.status_code, answer.json()) == (404, {"detail": "No such video."})
        for path in ("/kling/docs", "/kling/redoc", "/kling/openapi.json"):
            assert outsider.get(path).status_code == 404, path


def test_gallery_plays_the_video_in_a_real_browser(gallery: Gallery) -> None:
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("chromium is not installed (tools/ensure-chromium.sh installs Debian's "
                    "package where it can: root with apt-get)")
    profile = gallery.airflow.home / "chromium-profile"
    profile.mkdir()
    # A worker read the deprecation feed (as a task about to pay does) and found the raccoon's
    # model deprecated: the page, which never asks the API, badges it from that cached feed.
    retiring = Retirement("klingai/v2-master-text-to-video", (), "deprecated", "2026-08-01",
                          "2099-12-31", "klingai/v2.1-master-text-to-video")
    _feeds.FeedCache(gallery.videos.parent / "feeds").store(
        _feeds.Feed(gallery.sim.base_url, None, time.time(), (retiring,)))
    with Browser(chromium, profile) as browser:
        browser.log_in(gallery.base, "admin", PASSWORDS["admin"])
        # The nav entry, then the page as Airflow shows it: inside its UI, in an iframe.
        browser.open(f"{gallery.base}/")
        browser.wait_for("the Kling videos nav entry",
                         "[...document.querySelectorAll('a,button')].some(e => (e.textContent"
                         " + e.title + (e.getAttribute('aria-label') || ''))"
                         ".includes('Kling videos'))")
        opened = time.monotonic()
        browser.open(f"{gallery.base}/plugin/kling-videos")
        video = "document.querySelector('iframe').contentDocument.querySelector('video')"
        browser.wait_for("the gallery inside the Airflow UI", f"!!({video})")
        ready = browser.wait_for("the video's metadata",
                                 f"{video}.readyState >= 1 && {video}.duration")
        to_metadata = time.monotonic() - opened
        browser.evaluate(f"{video}.muted = true; {video}.loop = true; "
                         f"{video}.play().then(() => true)")
        browser.wait_for("playback to advance", f"{video}.currentTime > 0.3")
        # Seekable over the whole clip: the browser saw the server answer range requests.
        state = browser.evaluate(
            f"({{readyState: {video}.readyState, duration: {video}.duration, "
            f"error: {video}.error && {video}.error.code, played: {video}.played.length, "
            f"paused: {video}.paused, seekable: {video}.seekable.length && "
            f"{video}.seekable.end(0), "
            f"spend: {video}.ownerDocument.getElementById('spend') !== null, "
            f"src: {video}.getAttribute('src')}})")
        shot = browser.screenshot(ARTIFACTS / "gallery.png")  # while it plays
        # Where the user is among the pages, and what the run cost, with a link to just it.
        frame = "document.querySelector('iframe').contentDocument"
        seen = browser.evaluate(f"({{pager: {frame}.getElementById('pager').innerText, "
                                f"runs: {frame}.getElementById('runs').innerText, "
                                f"badge: {frame}.querySelector('.retiring').innerText}})")
        browser.evaluate(f"{frame}.querySelector('#runs a').click(); true")
        browser.wait_for("the page narrowed to the run",
                         f"{frame}.location.search.includes('run_id=') && "
                         f"{frame}.readyState === 'complete' && !!{frame}.getElementById('pager')")
        narrowed = browser.evaluate(
            f"({{pager: {frame}.getElementById('pager').innerText, "
            f"cards: {frame}.querySelectorAll('.card').length, "
            f"run: {frame}.querySelector('input[name=run_id]').value}})")
    print(f"browser: Airflow UI + gallery opened to video metadata in {to_metadata:.2f} s; "
          f"duration {ready} s, state {state}, screenshot {shot}")
    assert state["error"] is None and state["readyState"] >= 2 and state["played"] >= 1
    assert state["paused"] is False and state["seekable"] >= state["duration"] - 0.05
    assert abs(state["duration"] - 1.0) < 0.2  # the simulator's 1 s clip
    assert state["spend"]
    assert shot.stat().st_size > 10_000
    assert "Page 1 of 1 (1-1 of 1 generations)" in seen["pager"], seen
    assert seen["badge"] == "deprecated, shuts down 2099-12-31", seen
    assert f"{DAG_ID} / {gallery.run_id}" in seen["runs"] and "$1.40" in seen["runs"], seen
    assert narrowed["run"] == gallery.run_id and narrowed["cards"] == 1, narrowed
    assert "(1-1 of 1 generations)" in narrowed["pager"], narrowed
    # A user who may not read the DAG: the same page, empty, and the video's URL a 404.
    profile = gallery.airflow.home / "chromium-profile-outsider"
    profile.mkdir()
    with Browser(chromium, profile) as browser:
        browser.log_in(gallery.base, "outsider", PASSWORDS["outsider"])
        browser.open(f"{gallery.base}/plugin/kling-videos")
        frame = "document.querySelector('iframe').contentDocument"
        browser.wait_for("the empty gallery inside the Airflow UI",
                         f"!!{frame}.querySelector('.empty')")
        assert browser.evaluate(f"{frame}.querySelectorAll('video').length") == 0
        status = browser.evaluate(f"fetch('{state['src']}').then(r => r.status)")
    assert status == 404


def test_the_page_shows_budgets_in_flight_and_reconciled_spend(gallery: Gallery) -> None:
    """The raccoon's generate task checked the connection's $20-a-day budget before paying; a
    spend report then compares what the page recorded with what the simulator billed. The page
    shows both from those tasks' records (it never calls the API), in a real browser."""
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("chromium is not installed (tools/ensure-chromium.sh)")
    with gallery.client("admin") as admin:
        video = only_video(admin.get("/kling/api/videos").json())
    day = video["timestamp"][:10]
    recorded = [[day, video["model"], video["usd_spent"]], [day, "klingai/never-billed", "0.50"]]
    report_run = run_raccoon(gallery.airflow, REPORT_DAG, {"recorded": recorded})
    calls = gallery.sim.ledger.count(method="GET", path="/v2/usage")
    with gallery.client("admin") as admin:
        spend = admin.get("/kling/api/spend").json()
    [budget] = spend["budgets"]
    assert (budget["budget_usd"], budget["period"], budget["source"]) == (
        "20", "day", "on connection 'kling_default'")
    check = budget["last_check"]
    assert (Decimal(check["spent_usd"]), check["in_flight_count"], Decimal(check["estimate_usd"]),
            check["decision"], check["dag_id"], check["task_id"]) == (
        Decimal(0), 0, Decimal("1.4"), "admitted", DAG_ID, "generate")
    now = budget["in_flight_now"]
    assert (Decimal(now["usd"]), now["count"], now["as_of"]) == (Decimal(0), 0, spend["as_of"])
    rows = {r["model"]: (Decimal(r["recorded_usd"]), Decimal(r["billed_usd"]), r["status"],
                         r["run_id"]) for r in spend["reconciliation"]}
    assert rows == {video["model"]: (Decimal("1.4"), Decimal("1.4"), "matches", report_run),
                    "klingai/never-billed": (Decimal("0.5"), 0, "recorded, not billed",
                                             report_run)}
    profile = gallery.airflow.home / "chromium-profile-spend"
    profile.mkdir()
    frame = "document.querySelector('iframe').contentDocument"
    with Browser(chromium, profile) as browser:
        browser.log_in(gallery.base, "admin", PASSWORDS["admin"])
        browser.open(f"{gallery.base}/plugin/kling-videos")
        browser.wait_for("the budgets on the page", f"!!{frame}.getElementById('budgets')")
        seen = browser.evaluate(
            f"({{budgets: {frame}.getElementById('budgets').innerText, "
            f"reconciliation: {frame}.getElementById('reconciliation').innerText, "
            f"differs: [...{frame}.querySelectorAll('#reconciliation tr.differs')]"
            ".map(r => r.innerText), "
            f"color: getComputedStyle({frame}.querySelector('#reconciliation tr.differs td'))"
            ".backgroundColor})")
        browser.evaluate(f"{frame}.getElementById('budgets').scrollIntoView(); true")
        shot = browser.screenshot(ARTIFACTS / "gallery-spend.png")
    print(f"browser: budgets {seen['budgets']!r}; reconciliation {seen['reconciliation']!r}; "
          f"screenshot {shot}")
    assert "$20.00 per day" in seen["budgets"] and "admitted" in seen["budgets"], seen
    assert f"{DAG_ID} / generate" in seen["budgets"], seen
    assert "$1.40" in seen["reconciliation"] and "matches" in seen["reconciliation"], seen
    [differs] = seen["differs"]
    assert "klingai/never-billed" in differs and "$0.50" in differs, seen
    assert "recorded, not billed" in differs and seen["color"] == "rgb(254, 215, 215)", seen
    # The page asked the API nothing: the only usage read was the task's.
    assert gallery.sim.ledger.count(method="GET", path="/v2/usage") == calls == 1
    with gallery.client("outsider") as outsider:
        assert outsider.get("/kling/api/spend").json()["budgets"] == []
        assert outsider.get("/kling/api/spend").json()["reconciliation"] == []
