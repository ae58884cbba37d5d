"""Benchmark: the gallery as an ``external_views`` page vs. as a ``react_apps`` component.

    make demo && .venv/bin/python benchmarks/gallery_views.py [rounds]

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


def main() -> None:
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
