"""An offline AI/ML API for Kling: a real HTTP server on loopback, plus a "CDN" origin.

For the provider's own tests, for ``make demo``, and for users who want to run their DAGs without
credits or network::

    python -m kling_provider.testing.simulator --port 8765

or in-process::

    with KlingSimulator(time_scale=600) as sim:
        hook = ...  # connection host = sim.base_url, password = sim.api_key

Both endpoint families are served, requests are validated with the provider's own catalogue
(400 bodies in the documented error structure), generations walk queued -> generating ->
completed on a clock that ``time_scale`` speeds up, and videos are served by a second origin so
tests can prove the API key never reaches it. :class:`Faults` injects the failures real users
meet; the :class:`Ledger` records every request so tests can assert "exactly one POST".
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import socket
import struct
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from kling_provider.catalogue import ENDPOINT_FAMILIES, endpoint_path, get_model, prepare_request
from kling_provider.exceptions import KlingValidationError

__all__ = ["DEFAULT_API_KEY", "Faults", "KlingSimulator", "Ledger", "main"]

DEFAULT_API_KEY = "kling-simulator-key"
#: Field a request body may carry to choose faults for the generation it creates.
FAULTS_FIELD = "simulator_faults"
_FAMILY_BY_PATH = {endpoint_path(f): f for f in ENDPOINT_FAMILIES}


def sample_video() -> bytes:
    """The small playable MP4 (H.264, 160x90, 1 s) shipped with the package."""
    return resources.files("kling_provider.testing").joinpath("sample.mp4").read_bytes()


@dataclass
class Faults:
    """Failures to inject. Counters are consumed one request at a time.

    Global faults (``KlingSimulator.faults``) apply to every API request, including the create
    POST; per-generation faults apply to that generation's polls and download.
    """

    #: HTTP statuses to answer the next requests with, in order (e.g. ``[429, 503]``).
    statuses: list[int] = field(default_factory=list)
    #: ``Retry-After`` header sent with injected 429/503 answers.
    retry_after: float | None = None
    #: Close the connection without answering the next N requests. On a POST the generation is
    #: created first: the "paid but the answer was lost" case.
    drop_connections: int = 0
    #: Answer the next N requests with a body that is not JSON.
    malformed_json: int = 0
    #: Seconds to wait before every answer.
    delay: float = 0.0
    #: End the generation with status ``error`` and this ``{"name", "message"}``.
    error: dict[str, str] | None = None
    #: Report this status instead of the real one for ``unknown_status_polls`` polls.
    unknown_status: str = "mystery"
    unknown_status_polls: int = 0
    #: Report ``completed`` without a video URL for N polls once complete.
    completed_without_url: int = 0
    #: Send half the video, then close the connection (Content-Length announces all of it).
    truncate_download: bool = False
    #: Reset the connection after this many bytes of the video (a mid-stream drop).
    drop_download_after: int | None = None
    #: Announce and send 100 bytes fewer than the API's ``file_size``.
    wrong_content_length: bool = False
    #: Pad the served video to this many bytes (a valid MP4 ``free`` box), for big-file tests.
    video_size: int | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Faults:
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown fault(s) {sorted(unknown)}; known: {sorted(names)}")
        return cls(**data)


@dataclass
class LedgerEntry:
    method: str
    path: str
    status: int | None  #: None while the answer is pending, 0 for a dropped connection
    generation_id: str | None
    origin: str  #: "api", "cdn" or "admin"
    headers: dict[str, str]


class Ledger:
    """Every request the simulator saw, with its answer status; thread-safe."""

    def __init__(self) -> None:
        self._entries: list[LedgerEntry] = []
        self._lock = threading.Lock()

    def record(self, entry: LedgerEntry) -> None:
        with self._lock:
            self._entries.append(entry)

    def entries(self, *, method: str | None = None, origin: str | None = None,
                generation_id: str | None = None, path: str | None = None) -> list[LedgerEntry]:
        with self._lock:
            return [e for e in self._entries
                    if (method is None or e.method == method)
                    and (origin is None or e.origin == origin)
                    and (generation_id is None or e.generation_id == generation_id)
                    and (path is None or e.path == path)]

    def count(self, **criteria: Any) -> int:
        return len(self.entries(**criteria))

    def summary(self) -> dict[str, Any]:
        """Counts per path and per generation id (what the admin endpoint returns)."""
        by_path: dict[str, int] = {}
        by_generation: dict[str, dict[str, int]] = {}
        for e in self.entries():
            by_path[f"{e.method} {e.path}"] = by_path.get(f"{e.method} {e.path}", 0) + 1
            if e.generation_id:
                slot = by_generation.setdefault(e.generation_id, {})
                slot[f"{e.origin} {e.method}"] = slot.get(f"{e.origin} {e.method}", 0) + 1
        return {"by_path": by_path, "by_generation": by_generation,
                "posts": self.count(method="POST", origin="api")}

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


@dataclass
class _Generation:
    generation_id: str
    model: str
    family: str
    created: float
    duration: int
    faults: Faults
    token: str


def _error_body(status: int, message: str, path: str) -> dict[str, Any]:
    return {"message": message, "path": path, "requestId": str(uuid.uuid4()),
            "statusCode": status, "timestamp": datetime.now(timezone.utc).isoformat()}


def _generation_path(model: str) -> str:
    """The model part of a generation id, as the real API writes it (``kling-video/v2/master/...``)."""
    found = re.fullmatch(r"klingai/(v[\d.]+)-(master|pro|standard)-(.+)", model)
    if found:
        return f"kling-video/{found[1]}/{found[2]}/{found[3]}"
    return model.replace("klingai/", "kling-video/", 1)


class KlingSimulator:
    """The API and CDN servers, their state, and the knobs tests turn.

    :param time_scale: simulated seconds per real second (600: a 5-minute generation takes 0.5 s).
    :param queued_seconds: / :param generating_seconds: simulated time in each status; a 10 s video
        generates twice as long, like the real service.
    :param api_keys: accepted keys; ``None`` accepts any non-empty key.
    :param accept_unknown_models: accept models the catalogue lacks (the real API would 400).
    :param clock: monotonic seconds; tests pass a fake clock to move generations deterministically.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, cdn_port: int = 0,
                 time_scale: float = 1.0, queued_seconds: float = 20.0,
                 generating_seconds: float = 300.0,
                 api_keys: set[str] | None = frozenset({DEFAULT_API_KEY}),  # type: ignore[assignment]
                 accept_unknown_models: bool = False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.time_scale = time_scale
        self.queued_seconds = queued_seconds
        self.generating_seconds = generating_seconds
        self.api_keys = set(api_keys) if api_keys is not None else None
        self.accept_unknown_models = accept_unknown_models
        self.clock = clock
        self.faults = Faults()
        self.ledger = Ledger()
        self.video = sample_video()
        self._generations: dict[str, _Generation] = {}
        self._lock = threading.RLock()
        self._api = _Server((host, port), _handler(self, "api"))
        self._cdn = _Server((host, cdn_port), _handler(self, "cdn"))
        self._threads: list[threading.Thread] = []

    @property
    def api_key(self) -> str:
        """A key this simulator accepts."""
        return next(iter(sorted(self.api_keys))) if self.api_keys else DEFAULT_API_KEY

    @property
    def base_url(self) -> str:
        return "http://{}:{}".format(*self._api.server_address[:2])

    @property
    def cdn_url(self) -> str:
        return "http://{}:{}".format(*self._cdn.server_address[:2])

    def connection_uri(self, family: str = "legacy") -> str:
        """An Airflow connection in JSON form, ready for ``AIRFLOW_CONN_KLING_DEFAULT``."""
        return json.dumps({"conn_type": "kling", "host": self.base_url, "password": self.api_key,
                           "extra": {"endpoint_family": family}})

    def start(self) -> KlingSimulator:
        for server in (self._api, self._cdn):
            thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="kling-simulator",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        for server in (self._api, self._cdn):
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> KlingSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- state ---------------------------------------------------------------------------------

    def set_faults(self, generation_id: str, faults: Faults) -> None:
        with self._lock:
            self._generations[generation_id].faults = faults

    def generation_ids(self) -> list[str]:
        with self._lock:
            return list(self._generations)

    def _create(self, model: str, family: str, duration: int, faults: Faults) -> _Generation:
        generation = _Generation(
            generation_id=f"{uuid.uuid4()}:{_generation_path(model)}", model=model,
            family=family, created=self.clock(), duration=duration, faults=faults,
            token=uuid.uuid4().hex)
        with self._lock:
            self._generations[generation.generation_id] = generation
        return generation

    def _video_size(self, generation: _Generation) -> int:
        return max(generation.faults.video_size or 0, len(self.video))

    def _state(self, generation: _Generation) -> dict[str, Any]:
        elapsed = (self.clock() - generation.created) * self.time_scale
        generating = self.generating_seconds * (2 if generation.duration >= 10 else 1)
        body: dict[str, Any] = {"id": generation.generation_id}
        faults = generation.faults
        if faults.unknown_status_polls > 0:
            faults.unknown_status_polls -= 1
            return {**body, "status": faults.unknown_status}
        if elapsed < self.queued_seconds:
            return {**body, "status": "queued"}
        if elapsed < self.queued_seconds + generating:
            return {**body, "status": "generating"}
        if faults.error is not None:
            return {**body, "status": "error", "error": faults.error, "video": None}
        if faults.completed_without_url > 0:
            faults.completed_without_url -= 1
            return {**body, "status": "completed", "video": None}
        usage_key = "tokens_used" if generation.family == "legacy" else "credits_used"
        return {**body, "status": "completed",
                "video": {"url": f"{self.cdn_url}/files/{generation.token}/output.mp4",
                          "content_type": "video/mp4", "file_name": "output.mp4",
                          "file_size": self._video_size(generation), "duration": generation.duration},
                "meta": {"usage": {usage_key: 120000 if generation.duration >= 10 else 60000}}}

    def _by_token(self, token: str) -> _Generation | None:
        with self._lock:
            return next((g for g in self._generations.values() if g.token == token), None)

    def _validate(self, family: str, body: dict[str, Any]) -> tuple[str, int]:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise KlingValidationError("Body validation error\nRequired: 'model'")
        spec = get_model(model)
        if spec is None and not self.accept_unknown_models:
            raise KlingValidationError(
                f"Body validation error\nInvalid enum value for 'model', received '{model}'")
        if spec is not None and family not in spec.families:
            raise KlingValidationError(
                f"Body validation error\nModel '{model}' is not served by {endpoint_path(family)}")
        params = {k: v for k, v in body.items() if k != "model"}
        if spec is not None:
            allowed = set(spec.parameters(family))
            params = {k: v for k, v in params.items() if k in allowed}  # like zod: strip unknown
        prepared = prepare_request(model, params, family=family)
        return model, int(prepared.body.get("duration", 5) or 5)

    def video_bytes(self, generation: _Generation) -> Iterator[bytes]:
        """The sample MP4, then a ``free`` box padding it to the generation's video size."""
        yield self.video
        padding = self._video_size(generation) - len(self.video)
        if padding >= 8:
            yield struct.pack(">I4s", padding, b"free")
            remaining = padding - 8
            block = bytes(1024 * 1024)
            while remaining > 0:
                yield block[: min(remaining, len(block))]
                remaining -= len(block)
        elif padding > 0:
            yield bytes(padding)


class _Server(ThreadingHTTPServer):
    # The stdlib default backlog of 5 refuses bursts of connections a real API would accept.
    request_queue_size = 256
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that stops reading (size cap, aborted download) is normal here, not an error.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


def _handler(sim: KlingSimulator, origin: str) -> type[BaseHTTPRequestHandler]:
    class Handler(_SimulatorHandler):
        simulator = sim
        server_origin = origin

    return Handler


class _SimulatorHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real API behind its load balancer
    # Headers and body are separate writes; with Nagle on, delayed ACKs add ~40 ms per answer.
    disable_nagle_algorithm = True
    simulator: KlingSimulator
    server_origin: str
    _entry: LedgerEntry

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the ledger is the record."""

    # -- plumbing --------------------------------------------------------------------------

    def _send_json(self, status: int, body: Any, headers: dict[str, str] | None = None,
                   generation_id: str | None = None) -> None:
        data = json.dumps(body).encode()
        self._send(status, data, "application/json", headers, generation_id)

    def _send(self, status: int, data: bytes, content_type: str,
              headers: dict[str, str] | None = None, generation_id: str | None = None) -> None:
        self._record(status, generation_id)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def parse_request(self) -> bool:
        """Record every request on arrival: a slow or dropped answer must still be counted."""
        if not super().parse_request():
            return False
        self._entry = LedgerEntry(
            method=self.command, path=urlsplit(self.path).path, status=None,
            generation_id=None, origin=self.server_origin,
            headers={k.lower(): v for k, v in self.headers.items()})
        self.simulator.ledger.record(self._entry)
        return True

    def _record(self, status: int, generation_id: str | None) -> None:
        """Complete this request's ledger entry with its answer (0: connection dropped)."""
        self._entry.status = status
        self._entry.generation_id = generation_id

    def _drop(self, generation_id: str | None) -> None:
        self._record(0, generation_id)
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw or b"null")

    def _error(self, status: int, message: str, generation_id: str | None = None,
               headers: dict[str, str] | None = None) -> None:
        self._send_json(status, _error_body(status, message, urlsplit(self.path).path), headers,
                        generation_id)

    def _injected(self, faults: Faults, generation_id: str | None) -> bool:
        """Apply request-level faults; True when an answer was already sent (or dropped)."""
        if faults.delay:
            time.sleep(faults.delay)
        with self.simulator._lock:
            status = faults.statuses.pop(0) if faults.statuses else None
            malformed = faults.malformed_json > 0
            if malformed:
                faults.malformed_json -= 1
        if status is not None:
            headers = {}
            if faults.retry_after is not None and status in (429, 503):
                headers["Retry-After"] = f"{faults.retry_after:g}"
            message = {429: "Too Many Requests", 503: "Service unavailable",
                       500: "Internal server error", 502: "Bad Gateway",
                       504: "Generation timeout"}.get(status, HTTPStatus(status).phrase)
            self._error(status, message, generation_id, headers)
            return True
        if malformed:
            self._send(200, b"<html>upstream hiccup</html>", "text/html", None, generation_id)
            return True
        return False

    def _authorised(self) -> bool:
        auth = self.headers.get("Authorization", "")
        key = auth[7:].strip() if auth.startswith("Bearer ") else ""
        keys = self.simulator.api_keys
        if key and (keys is None or key in keys):
            return True
        self._error(401, "This request requires a valid API key. You can create a new API key "
                         "on the Billing page: https://aimlapi.com/app/keys")
        return False

    # -- routes ------------------------------------------------------------------------------

    def do_GET(self) -> None:
        if self.server_origin == "cdn":
            return self._serve_video()
        parts = urlsplit(self.path)
        if parts.path == "/_simulator/ledger":
            return self._send_json(200, self.simulator.ledger.summary())
        family = _FAMILY_BY_PATH.get(parts.path)
        if family is None:
            return self._error(404, f"Cannot GET {parts.path}")
        if not self._authorised():
            return None
        generation_id = (parse_qs(parts.query).get("generation_id") or [""])[0]
        sim = self.simulator
        with sim._lock:
            generation = sim._generations.get(generation_id)
        if self._injected(sim.faults, generation_id or None):
            return None
        if generation is None:
            return self._error(404, f"Generation {generation_id!r} not found", generation_id or None)
        if self._injected(generation.faults, generation_id):
            return None
        if self._take_drop(generation.faults):
            return self._drop(generation_id)
        with sim._lock:
            state = sim._state(generation)
        return self._send_json(200, state, generation_id=generation_id)

    def _take_drop(self, faults: Faults) -> bool:
        with self.simulator._lock:
            if faults.drop_connections > 0:
                faults.drop_connections -= 1
                return True
        return False

    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        sim = self.simulator
        # Read the body before any answer: leftover bytes would corrupt the keep-alive stream.
        try:
            body = self._body()
        except ValueError:
            body = None
        if parts.path == "/_simulator/faults" and self.server_origin == "api":
            sim.faults = Faults.from_dict(body or {})
            return self._send_json(200, asdict(sim.faults))
        family = _FAMILY_BY_PATH.get(parts.path)
        if family is None or self.server_origin != "api":
            return self._error(404, f"Cannot POST {parts.path}")
        if not self._authorised():
            return None
        if self._injected(sim.faults, None):
            return None
        try:
            if not isinstance(body, dict):
                raise KlingValidationError("Body validation error\nExpected object")
            requested = body.pop(FAULTS_FIELD, None)
            faults = Faults.from_dict(requested) if requested else Faults()
            model, duration = sim._validate(family, body)
        except (KlingValidationError, ValueError) as exc:
            return self._error(400, str(exc))
        generation = sim._create(model, family, duration, faults)
        if self._take_drop(sim.faults):
            return self._drop(generation.generation_id)  # created, but the answer is lost
        return self._send_json(200, {"id": generation.generation_id, "status": "queued"},
                               generation_id=generation.generation_id)

    def _serve_video(self) -> None:
        found = re.fullmatch(r"/files/([0-9a-f]+)/[^/]+", urlsplit(self.path).path)
        generation = self.simulator._by_token(found[1]) if found else None
        if generation is None:
            return self._error(404, "No such file")
        faults = generation.faults
        size = self.simulator._video_size(generation)
        announced = size - 100 if faults.wrong_content_length else size
        sent_limit = size // 2 if faults.truncate_download else announced
        if faults.drop_download_after is not None:
            sent_limit = min(sent_limit, faults.drop_download_after)
        self._record(200, generation.generation_id)
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(announced))
        self.end_headers()
        sent = 0
        for chunk in self.simulator.video_bytes(generation):
            chunk = chunk[: max(0, sent_limit - sent)]
            if not chunk:
                break
            self.wfile.write(chunk)
            sent += len(chunk)
        if sent < announced:
            self.wfile.flush()
            self.close_connection = True
            if faults.drop_download_after is not None:
                # Linger 0: the close sends a reset, like a CDN node dying mid-transfer.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
            else:
                self.connection.shutdown(socket.SHUT_RDWR)  # a clean but early end
        return None


def main(argv: list[str] | None = None) -> None:
    """Run the simulator until interrupted; print its URLs and key (one JSON line, then prose)."""
    parser = argparse.ArgumentParser(prog="python -m kling_provider.testing.simulator",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="API port (0 = any free port)")
    parser.add_argument("--cdn-port", type=int, default=0, help="video origin port")
    parser.add_argument("--time-scale", type=float, default=60.0,
                        help="simulated seconds per real second (default 60: 5 min in 5 s)")
    parser.add_argument("--api-key", default=DEFAULT_API_KEY, help="the key to accept")
    args = parser.parse_args(argv)
    sim = KlingSimulator(host=args.host, port=args.port, cdn_port=args.cdn_port,
                         time_scale=args.time_scale, api_keys={args.api_key}).start()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(json.dumps({"base_url": sim.base_url, "cdn_url": sim.cdn_url}), flush=True)
    print(f"Kling simulator: API {sim.base_url}  CDN {sim.cdn_url}  "
          f"(API key: the one passed with --api-key)", flush=True)
    stop.wait()
    sim.stop()


if __name__ == "__main__":
    main()
