"""Headless Chromium (Debian's package) driven over the DevTools protocol, for UI tests.

Raw CDP over one WebSocket (``websockets``, already pinned for uvicorn): no driver binary, no
browser download, nothing beyond ``apt-get install chromium``. Only what the tests need: open a
URL, type into the focused field, evaluate JavaScript, wait for a condition, take a screenshot.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

#: What Chromium needs as root on a closed network (no sandbox, no updaters, no sync).
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--autoplay-policy=no-user-gesture-required",
         "--window-size=1400,1000", "--remote-debugging-address=127.0.0.1",
         "--remote-debugging-port=0")


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class BrowserError(AssertionError):
    """Raised when the browser reports an error or a wait times out."""


class Browser:
    """One headless Chromium with a fresh profile, driving its first tab."""

    def __init__(self, executable: str, profile: Path) -> None:
        self.profile = profile
        self.log = (profile.parent / "chromium.log").open("wb")
        self.process = subprocess.Popen(
            [executable, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise BrowserError(f"Chromium did not start; see {self.log.name}")
            time.sleep(0.1)
        port = int(port_file.read_text().splitlines()[0])
        pages = [t for t in httpx.get(f"http://127.0.0.1:{port}/json/list").json()
                 if t["type"] == "page"]
        # Entered like a context manager (websockets 17 wants that; 16 returns the connection).
        self.ws: ClientConnection = connect(pages[0]["webSocketDebuggerUrl"],
                                            max_size=2 ** 26).__enter__()
        self._id = 0
        self.call("Page.enable")
        self.call("Runtime.enable")

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if getattr(self, "ws", None) is not None:
            self.ws.close()
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.log.close()

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:  # events arrive interleaved with answers: skip them
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("id") == self._id:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result

    def evaluate(self, expression: str) -> Any:
        answer = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in answer:
            raise BrowserError(f"{expression!r} threw: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    def wait_for(self, what: str, expression: str, timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        value: Any = None
        while time.monotonic() < deadline:
            try:
                value = self.evaluate(expression)
            except BrowserError:
                value = None  # e.g. the page is navigating
            if value:
                return value
            time.sleep(0.2)
        raise BrowserError(f"timed out waiting for {what}: {expression} -> {value!r} "
                           f"at {self.evaluate('location.href')}")

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)
        self.wait_for(f"{url} to load", "document.readyState === 'complete'")

    def type_into(self, selector: str, text: str) -> None:
        """Focus a field and type as a user would (React sees real input events)."""
        self.wait_for(selector, f"!!document.querySelector({json.dumps(selector)})")
        self.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")
        self.call("Input.insertText", text=text)

    def set_viewport(self, width: int, height: int) -> None:
        """The page's size in CSS pixels, whatever the window's (pictures of a known size)."""
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=1, mobile=False)

    def log_in(self, base_url: str, username: str, password: str) -> None:
        """Airflow's login page (SimpleAuthManager's form), filled in and sent as a user does."""
        self.open(f"{base_url}/auth/login")
        self.type_into("input[name=username]", username)
        self.type_into("input[name=password]", password)
        self.evaluate("document.querySelector('button[type=submit]').click()")
        self.wait_for("the login to finish", "!location.pathname.startsWith('/auth/')")

    def screenshot(self, path: Path, scale: float = 1.0) -> Path:
        """The viewport as a PNG, its pixels times ``scale`` (docs pictures: smaller files)."""
        options: dict[str, Any] = {"format": "png"}
        if scale != 1.0:
            size = self.evaluate("[window.innerWidth, window.innerHeight]")
            options["clip"] = {"x": 0, "y": 0, "width": size[0], "height": size[1],
                               "scale": scale}
        data = self.call("Page.captureScreenshot", **options)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path
