"""``make airflow`` accepted as a user would, in headless Chromium (issue 18).

``make airflow`` starts the whole local Airflow on a fresh home (its own port, the simulator at
16x: a 5 s video in 20 s); then, in the browser: log in, trigger ``kling_raccoon`` from its DAG
page, see the task deferred, its in-flight card with a progress bar on the Kling videos page, see
the run finish, read the task's log in the UI's Logs tab with the spend line, and open the
"Kling video" extra link inside the Airflow shell. ``make stop`` stops it all afterwards. Prints
how long it took from ``make airflow`` to the video playing.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser import Browser, find_chromium
from tools.cluster import ROOT, free_port

pytestmark = pytest.mark.integration

ARTIFACTS = ROOT / "test-artifacts"
FRAME = "document.querySelector('iframe')"
IN_FRAME = f"{FRAME} && {FRAME}.contentDocument"


@pytest.fixture
def make_airflow(tmp_path: Path) -> Iterator[tuple[dict[str, Any], float, str]]:
    """``make airflow`` on a fresh home: its recorded state, when it began, what it printed."""
    home = tmp_path / "home"
    env = {**os.environ, "KLING_AIRFLOW_HOME": str(home), "AIRFLOW_PORT": str(free_port()),
           "TIME_SCALE": "16"}
    began = time.monotonic()
    try:
        started = subprocess.run(["make", "airflow"], cwd=ROOT, env=env, capture_output=True,
                                 text=True, timeout=900, check=False)
        assert started.returncode == 0, started.stdout + started.stderr
        yield json.loads((home / "running.json").read_text()), began, started.stdout
    finally:
        stopped = subprocess.run(["make", "stop"], cwd=ROOT, env=env, capture_output=True,
                                 text=True, timeout=120, check=False)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert not (home / "running.json").exists()


def test_make_airflow_in_a_real_browser(make_airflow: tuple[dict[str, Any], float, str],
                                        tmp_path: Path) -> None:
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("chromium is not installed (tools/ensure-chromium.sh installs Debian's "
                    "package where it can: root with apt-get)")
    state, began, printed = make_airflow
    url = state["url"]
    ready = time.monotonic() - began
    assert f"{url}/" in printed and f"login admin / {state['password']}" in printed
    health = httpx.get(f"{url}/api/v2/monitor/health", timeout=30).json()
    assert {k: v["status"] for k, v in health.items()} == dict.fromkeys(
        ("metadatabase", "scheduler", "triggerer", "dag_processor"), "healthy")

    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    with Browser(chromium, profile) as browser:
        browser.log_in(url, "admin", state["password"])

        # Trigger from the DAG's page, as a user does: the Trigger button, then its dialog's.
        browser.open(f"{url}/dags/kling_raccoon")
        button = ("[...document.querySelectorAll('button')].filter(b => "
                  "b.textContent.trim() === 'Trigger')")
        browser.wait_for("the Trigger button", f"{button}.length >= 1", timeout=60)
        browser.evaluate(f"{button}[0].click()")
        browser.wait_for("the trigger dialog", f"{button}.length >= 2")
        browser.evaluate(f"{button}.at(-1).click()")

        api = httpx.Client(base_url=url, timeout=30)
        token = api.post("/auth/token", json={"username": "admin",
                                              "password": state["password"]}).json()
        api.headers["Authorization"] = f"Bearer {token['access_token']}"
        runs = "/api/v2/dags/kling_raccoon/dagRuns"
        deadline = time.monotonic() + 60
        while not api.get(runs).json()["dag_runs"] and time.monotonic() < deadline:
            time.sleep(0.5)
        run_id = api.get(runs).json()["dag_runs"][0]["dag_run_id"]
        task = f"{runs}/{run_id}/taskInstances/generate"

        def state_of(path: str) -> str | None:
            found: str | None = api.get(path).json().get("state")
            return found

        deadline = time.monotonic() + 240
        while state_of(task) != "deferred" and time.monotonic() < deadline:
            time.sleep(0.5)
        assert state_of(task) == "deferred"

        # The videos page, in the Airflow shell: the in-flight card and its moving bar.
        browser.open(f"{url}/plugin/kling-videos")
        card = f"{FRAME}.contentDocument.querySelector('#in-flight .inflight progress')"
        browser.wait_for("the in-flight card", f"{IN_FRAME} && !!({card})", timeout=60)
        first = browser.evaluate(f"{card}.value")
        browser.wait_for("the bar to move without a reload", f"{card}.value > {first}",
                         timeout=10)
        browser.screenshot(ARTIFACTS / "local-airflow-in-flight.png")

        # It finishes: the page reloads itself and plays the video.
        video = f"{FRAME}.contentDocument.querySelector('video')"
        browser.wait_for("the finished video on the page", f"{IN_FRAME} && !!({video})",
                         timeout=240)
        browser.wait_for("the video's metadata", f"{video}.readyState >= 1 && {video}.duration",
                         timeout=60)
        browser.evaluate(f"{video}.muted = true; {video}.play().then(() => true)")
        browser.wait_for("playback", f"{video}.currentTime > 0.2")
        to_playing = time.monotonic() - began
        deadline = time.monotonic() + 120
        while state_of(f"{runs}/{run_id}") != "success" and time.monotonic() < deadline:
            time.sleep(0.5)
        assert state_of(f"{runs}/{run_id}") == "success"

        # The task's log in the UI's Logs tab, spend line included.
        browser.open(f"{url}/dags/kling_raccoon/runs/{run_id}/tasks/generate")
        browser.wait_for("the spend line in the Logs tab",
                         "document.body.innerText.includes('credits, $1.40')", timeout=60)
        assert "Could not read served logs" not in browser.evaluate("document.body.innerText")

        # The extra link, as the UI resolves it, opens the card inside the Airflow shell.
        link = api.get(f"{task}/links").json()["extra_links"]["Kling video"]
        assert link.startswith("/plugin/kling-videos/kling/?generation_id=")
        browser.open(f"{url}{link}")
        focused = f"{FRAME}.contentDocument.querySelector('.card.focus video')"
        browser.wait_for("the linked card inside the shell", f"{IN_FRAME} && !!({focused})")
        # ... with Airflow's own navigation around it (its "Dags" and "Kling videos" entries).
        assert browser.evaluate("['Dags', 'Kling videos'].every(name => [...document."
                                "querySelectorAll('a')].some(a => a.textContent.trim() === name))")
        browser.screenshot(ARTIFACTS / "local-airflow-link.png")
    print(f"\nmake airflow: healthy in {ready:.1f} s from a fresh home; the first video played "
          f"{to_playing:.1f} s after `make airflow` began")
