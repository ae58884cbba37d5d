"""``make screenshots``: the pictures the README and the docs show, taken from a fresh demo.

Runs ``make demo`` (``tools/demo.py``) on a fresh home of its own, starts ``make gallery``'s whole
local Airflow on it (``tools/local_airflow.py``), and in headless Chromium (``tests/browser.py``)
logs in and photographs each page of :data:`SHOTS` into ``docs/images/``, where the README and the
docs reference them. What the pictures show is recorded beside them in
``docs/images/screenshots.json``: the demo's figures as the videos page's JSON reported them
(generations, credits, USD, models), the commit, and each picture's SHA-256.
``tests/test_screenshots.py`` checks every caption's figures against that record and the record
against what the demo makes today, so a stale caption or picture fails the unit suite.

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

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.browser import Browser, find_chromium  # the repo root is on sys.path first
from tools.cluster import ROOT, free_port

IMAGES = ROOT / "docs" / "images"
MANIFEST = IMAGES / "screenshots.json"
#: The demo's and its Airflow's home, remade on every run (git-ignored).
WORK = ROOT / ".screenshots"
#: CSS pixels of the page, and the factor the PNG is scaled by: legible text, files near 100 kB.
VIEWPORT = (1280, 860)
SCALE = 0.75
FRAME = "document.querySelector('iframe')"
IN_FRAME = f"{FRAME} && {FRAME}.contentDocument"


@dataclass(frozen=True)
class Shot:
    """One picture: its file under ``docs/images/``, the page, and how to know it is ready."""

    name: str
    what: str
    #: The page's path, given the demo's run id.
    path: Callable[[str], str]
    #: A JavaScript condition that holds once the page shows what the picture is for.
    ready: str
    #: JavaScript run once ready, before the picture (e.g. to show a video's frame).
    prepare: str = ""


_VIDEO = f"{FRAME}.contentDocument.querySelector('video')"
SHOTS = (
    Shot("kling-gallery.png", "the Kling videos page, the demo's video playing",
         lambda run_id: "/plugin/kling-videos",
         f"{IN_FRAME} && !!({_VIDEO}) && {_VIDEO}.readyState >= 2",
         # A frame into the clip, then paused: the picture shows the video, not a black start.
         f"{_VIDEO}.muted = true; {_VIDEO}.play().then(() => new Promise(done => "
         f"setTimeout(() => {{ {_VIDEO}.pause(); done(true); }}, 600)))"),
    Shot("kling-video-link.png", "the generate task's Details tab with its Kling video link",
         lambda run_id: f"/dags/kling_raccoon/runs/{run_id}/tasks/generate/details",
         "[...document.querySelectorAll('a,button')].some(e => "
         "e.textContent.trim() === 'Kling video')"),
)


def step(message: str, began: float) -> None:
    print(f"screenshots: [{time.monotonic() - began:5.1f} s] {message}", flush=True)


def run(args: list[str], what: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "AIMLAPI_KEY"}  # the simulator, always
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"screenshots: {what} failed (exit {done.returncode}):\n"
                 f"{(done.stdout + done.stderr)[-4000:]}")
    return done.stdout


def figures(base_url: str, username: str, password: str) -> dict[str, Any]:
    """What the videos page's JSON says the demo made (the same data the picture shows)."""
    token = httpx.post(f"{base_url}/auth/token", timeout=30,
                       json={"username": username, "password": password}).json()["access_token"]
    listing = httpx.get(f"{base_url}/kling/api/videos", timeout=60,
                        headers={"Authorization": f"Bearer {token}"}).json()
    total = listing["spend"]["total"]
    return {
        "generations": int(total["count"]),  # all of them, whatever page the cards are on
        "credits": int(Decimal(str(total["credits"]))),
        # Money as the page prints it; str() first so a float's artifacts never show.
        "usd": f"{Decimal(str(total['usd'])):.2f}",
        "models": sorted({video["model"] for video in listing["videos"]}),
        "run_ids": sorted({video["source"]["run_id"] for video in listing["videos"]}),
    }


def photograph(state: dict[str, Any], run_id: str, profile: Path) -> dict[str, dict[str, str]]:
    chromium = find_chromium()
    if chromium is None:
        sys.exit("screenshots: chromium is not installed (tools/ensure-chromium.sh)")
    taken: dict[str, dict[str, str]] = {}
    with Browser(chromium, profile) as browser:
        browser.set_viewport(*VIEWPORT)
        browser.log_in(state["url"], state["username"], state["password"])
        for shot in SHOTS:
            browser.open(state["url"] + shot.path(run_id))
            browser.wait_for(shot.what, shot.ready, timeout=60)
            if shot.prepare:
                browser.evaluate(shot.prepare)
            time.sleep(0.5)  # let the last paint settle (fonts, the bar's transition)
            png = browser.screenshot(IMAGES / shot.name, scale=SCALE)
            taken[shot.name] = {"shows": shot.what,
                                "sha256": hashlib.sha256(png.read_bytes()).hexdigest()}
    return taken


def main() -> None:
    began = time.monotonic()
    if WORK.exists():
        run([sys.executable, "tools/local_airflow.py", "stop", "--home", str(WORK / "home")],
            "stopping an earlier run's Airflow")
        shutil.rmtree(WORK)
    home, output = WORK / "home", WORK / "demo-output"
    step("make demo on a fresh home...", began)
    printed = run([sys.executable, "tools/demo.py", "--home", str(home), "--output", str(output)],
                  "the demo")
    step("the demo finished; starting its Airflow (as make gallery)...", began)
    run([sys.executable, "tools/local_airflow.py", "start", "--home", str(home),
         "--videos", str(output), "--port", str(free_port())], "starting Airflow")
    try:
        state = json.loads((home / "running.json").read_text())
        made = figures(state["url"], state["username"], state["password"])
        if len(made["run_ids"]) != 1:
            sys.exit(f"screenshots: expected the demo's one run, the page shows {made}")
        step(f"the page shows {made}; photographing...", began)
        profile = WORK / "chromium-profile"
        profile.mkdir()
        pictures = photograph(state, made["run_ids"][0], profile)
    finally:
        run([sys.executable, "tools/local_airflow.py", "stop", "--home", str(home)],
            "stopping Airflow")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True, check=False).stdout.strip()
    creates = re.search(r"the simulator received (\d+) create request", printed)
    record = {"commit": commit, "demo": {k: v for k, v in made.items() if k != "run_ids"},
              # What the demo itself said it paid for: the page's count must agree.
              "demo_create_requests": int(creates.group(1)) if creates else None,
              "pictures": pictures}
    MANIFEST.write_text(json.dumps(record, indent=2) + "\n")
    for name in pictures:
        step(f"{IMAGES.relative_to(ROOT) / name}: {(IMAGES / name).stat().st_size:,} bytes", began)
    step(f"done; figures in {MANIFEST.relative_to(ROOT)} (check the captions: "
         "pytest tests/test_screenshots.py)", began)


if __name__ == "__main__":
    main()
