"""Benchmarks of the videos page: how it is shown, and how it answers over all of history.

    make demo && .venv/bin/python benchmarks/gallery_views.py [rounds]
    .venv/bin/python benchmarks/gallery_views.py history [events] [rounds]

``history``: a metadata DB (SQLite, and PostgreSQL on 127.0.0.1:5432 when it answers) seeded with
``events`` stored videos (default 100,000) as mapped runs leave them (``tests.gallery_seed``: 25
generations a run, each with its generate task's XCom and its ``kling://videos`` event); the
page's summary is brought up to date once (``one-time catch-up``: what the first request after
an upgrade, or after a schema change of the summary, pays), then the plugin's app (in process,
a real SimpleAuthManager token) answers the page and its JSON, unfiltered and filtered,
``rounds`` times each (default 5): median and worst seconds per answer (each includes its
request's catch-up, with nothing new to read). Each generate task has also recorded a budget
check (its ``kling_budget`` XCom, 20 s apart up to now): the page and ``api/spend`` read the
newest of them.

The default mode:
Starts Airflow's api-server on the demo's home (``.airflow-demo/``, all-admins login) with the
provider's plugin (the shipped page: server-rendered HTML in the UI's iframe) plus a throw-away
``react_apps`` prototype written to a temporary plugins folder: a JavaScript module that renders
the same ``/kling/api/videos`` list with the React the Airflow UI exposes on ``globalThis``.
Headless Chromium opens each from a blank tab ``rounds`` times (default 7) and times navigation
to the first video's metadata (``readyState >= 1``). Numbers are printed, not asserted.
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.browser import Browser, find_chromium  # noqa: E402
from tools.demo import HOME, airflow_env  # noqa: E402

PROTOTYPE = '''
from fastapi import FastAPI
from fastapi.responses import Response
from airflow.plugins_manager import AirflowPlugin

BUNDLE = """
const React = globalThis.React;
function KlingVideos() {
  const [data, setData] = React.useState(null);
  React.useEffect(() => { fetch('/kling/api/videos').then(r => r.json()).then(setData); }, []);
  if (!data) return React.createElement('p', null, 'Loading...');
  return React.createElement('div', null, data.videos.filter(v => v.url).map(v =>
    React.createElement('div', {key: v.generation_id},
      React.createElement('video', {src: v.url, controls: true, preload: 'metadata'}),
      React.createElement('p', null, v.prompt))));
}
globalThis.AirflowPlugin = KlingVideos;
"""
app = FastAPI()

@app.get("/bundle.js")
def bundle() -> Response:
    return Response(BUNDLE, media_type="text/javascript")

class KlingReactPrototype(AirflowPlugin):
    name = "kling_react_prototype"
    fastapi_apps = [{"app": app, "url_prefix": "/kling-react", "name": "prototype"}]
    react_apps = [{"name": "Kling videos (React)", "bundle_url": "/kling-react/bundle.js",
                   "url_route": "kling-videos-react", "destination": "nav"}]
'''

FRAME = "document.querySelector('iframe')?.contentDocument?.querySelector('video')"
VARIANTS = {
    "external_views (shipped)": ("/plugin/kling-videos", FRAME),
    "react_apps (prototype)": ("/plugin/kling-videos-react", "document.querySelector('video')"),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


HISTORY_REQUESTS = {
    "page 1 (HTML)": ("/", {}),
    "JSON page 1": ("/api/videos", {}),
    "JSON page 2,000": ("/api/videos", {"page": "2000"}),
    "HTML one DAG run": ("/", {"dag_id": "bench_dag", "run_id": "manual__bench_dag_001234"}),
    "JSON one day": ("/api/videos", {"since": "2026-01-20", "until": "2026-01-20"}),
    "JSON one model": ("/api/videos", {"model": "klingai/v2-master-text-to-video"}),
    "JSON budgets": ("/api/spend", {}),
}


def history(events: int, rounds: int) -> None:
    """Seed ``events`` stored videos on each database, then time the page's answers."""
    from tests.gallery_seed import Runs
    from tests.gallery_site import postgres_template

    per_run = 25
    plan = Runs("bench_dag", runs=events // per_run, per_run=per_run, budget_checks=True)
    rows: list[tuple[str, str, float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        template = Path(tmp) / "template" / "airflow.db"
        template.parent.mkdir()
        env = {**os.environ, "AIRFLOW_HOME": str(template.parent),
               "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{template}"}
        subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"], env=env,
                       check=True, capture_output=True, timeout=600)
        backends: list[tuple[str, str | None]] = [("sqlite", None)]
        pg_template = postgres_template(Path(tmp) / "pg")
        try:
            backends.append(("postgresql", next(pg_template)))
        except BaseException as exc:  # pytest's Skipped: no PostgreSQL here
            print(f"PostgreSQL skipped: {exc}")
        try:
            for backend, pg_name in backends:
                rows += _history_on(backend, pg_name, Path(tmp), template, plan, rounds)
        finally:
            pg_template.close()  # drops the migrated template database
    print(f"\nThe videos page over {events:,} stored videos ({events // per_run:,} runs of "
          f"{per_run}, with their generate XComs), in-process app, {rounds} rounds each")
    print(f"{'database':<12}{'answer':<20}{'median s':>10}{'worst s':>10}")
    for backend, name, median, worst in rows:
        print(f"{backend:<12}{name:<20}{median:>10.3f}{worst:>10.3f}")


def _history_on(backend: str, pg_name: str | None, tmp: Path, template: Path, plan: Any,
                rounds: int) -> list[tuple[str, str, float, float]]:
    from tests.gallery_site import SIMPLE, make_site, postgres_database

    home = tmp / backend
    home.mkdir()
    rows: list[tuple[str, str, float, float]] = []
    for url in (postgres_database(pg_name) if pg_name else iter([None])):
        for site in make_site(home, template, SIMPLE, database=url):
            rows += _time_history(site, plan, backend, rounds)
    return rows


def _time_history(site: Any, plan: Any, backend: str, rounds: int
                  ) -> list[tuple[str, str, float, float]]:
    from airflow.utils.session import create_session

    from tests.gallery_seed import add_dag, seed, videos_asset

    started = time.monotonic()
    with create_session() as session:
        add_dag(session, plan.dag_id)
        stored = seed(session, plan, videos_asset(session))
    if backend == "postgresql":  # as autovacuum would after a bulk load: planner statistics
        with create_session() as session:
            session.connection().exec_driver_sql("ANALYZE")
    print(f"{backend}: seeded {stored:,} events in {time.monotonic() - started:.0f} s")
    rows = [(backend, "one-time catch-up", *_catch_up_once())]
    with site.client("admin") as client:
        for name, (path, params) in HISTORY_REQUESTS.items():
            times = []
            for _ in range(rounds):
                began = time.monotonic()
                answer = client.get(path, params=params)
                times.append(time.monotonic() - began)
                assert answer.status_code == 200, answer.text[:300]
            rows.append((backend, name, statistics.median(times), max(times)))
        total = client.get("/api/videos").json()["spend"]["total"]
        assert total["count"] == stored, total
        [budget] = client.get("/api/spend").json()["budgets"]  # the newest of all the checks
        assert budget["last_check"]["run_id"] == plan.run_id(plan.runs - 1), budget
        print(f"{backend}: total {total}")
    return rows


def _catch_up_once() -> tuple[float, float]:
    """Seconds the first catch-up of the summary takes (the seeded history, all of it)."""
    from kling_provider.gallery import catchup, store

    began = time.monotonic()
    caught = catchup.catch_up(store.videos_asset_ids())
    took = time.monotonic() - began
    print(f"one-time catch-up: {caught.events:,} events, {caught.runs:,} runs in {took:.1f} s")
    return took, took


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "history":
        history(int(sys.argv[2]) if len(sys.argv) > 2 else 100_000,
                int(sys.argv[3]) if len(sys.argv) > 3 else 5)
        return
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    chromium = find_chromium()
    if chromium is None or not (HOME / ".migrated").exists():
        sys.exit("needs chromium (tools/ensure-chromium.sh) and a `make demo` run first")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "kling_react_prototype.py").write_text(PROTOTYPE)
        port = free_port()
        env = {**airflow_env("", "1"), "AIRFLOW__CORE__PLUGINS_FOLDER": tmp,
               "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True"}
        log = (Path(tmp) / "api-server.log").open("wb")
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "airflow"), "api-server", "--port", str(port),
             "--host", "127.0.0.1"], env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{base}/kling/api/videos").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.5)
            profile = Path(tmp) / "profile"
            profile.mkdir()
            rows = []
            with Browser(chromium, profile) as browser:
                browser.open(f"{base}/")  # the UI's own bundle cached, as for a user already in it
                for name, (path, video) in VARIANTS.items():
                    times = []
                    for _ in range(rounds):
                        browser.open("about:blank")
                        started = time.monotonic()
                        browser.call("Page.navigate", url=base + path)
                        browser.wait_for(name, f"(({video})?.readyState ?? 0) >= 1", timeout=60)
                        times.append(time.monotonic() - started)
                    rows.append((name, statistics.median(times), min(times), max(times)))
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
            log.close()
    print(f"\nNavigation to the first video's metadata, {rounds} rounds each (headless Chromium)")
    print(f"{'variant':<28}{'median s':>10}{'min s':>8}{'max s':>8}")
    for name, median, low, high in rows:
        print(f"{name:<28}{median:>10.2f}{low:>8.2f}{high:>8.2f}")


if __name__ == "__main__":
    main()
