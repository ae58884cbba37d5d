"""The simulator's HTTP plumbing: a threaded stdlib server and the request handler every route uses.

Used by :class:`~kling_provider.testing.simulator.KlingSimulator` (one server per origin, "api"
and "cdn") and by the route modules (``_serve_*``), which answer through the handler's methods
here. This module only speaks HTTP: keep-alive, the ledger entry of every request, error bodies
per the API's error contract, injected faults (statuses, garbled bodies, slow answers), dropped
connections, and the dispatch through the one route table in :mod:`._routes` (a path or method
it lacks gets the API's 404 or 405). The state is the simulator's; what each endpoint answers is
its route module's.
"""

from __future__ import annotations

import json
import re
import socket
import sys
import time
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from kling_provider import _endpoints
from kling_provider.testing import _routes
from kling_provider.testing._world import log_time
from kling_provider.testing.records import Faults, LedgerEntry

if TYPE_CHECKING:
    from kling_provider.testing.simulator import KlingSimulator

LOGS_PATH = _endpoints.path("logs")
#: What the API accepts in ``X-Client-Request-Id``; anything else is dropped without a word.
_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_GENERATION_ID = re.compile(r"[0-9a-f-]{36}:[\w./-]+")
#: The API's message for each status a ``Faults.statuses`` entry injects.
_FAULT_MESSAGES = {429: "Too Many Requests", 503: "Service unavailable",
                   500: "Internal server error", 502: "Bad Gateway", 504: "Generation timeout"}
_NO_KEY = ("This request requires a valid API key. You can create a new API key on the Billing "
           "page: https://aimlapi.com/app/keys")


def _error_body(status: int, message: str, path: str, now: float) -> dict[str, Any]:
    return {"message": message, "path": path, "requestId": str(uuid.uuid4()),
            "statusCode": status, "timestamp": log_time(now)}


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
    class Handler(SimulatorHandler):
        simulator = sim
        server_origin = origin

    return Handler


class SimulatorHandler(BaseHTTPRequestHandler):
    """One request to one origin ("api" or "cdn"); the route modules answer through it."""

    protocol_version = "HTTP/1.1"  # keep-alive, like the real API behind its load balancer
    # Headers and body are separate writes; with Nagle on, delayed ACKs add ~40 ms per answer.
    disable_nagle_algorithm = True
    simulator: KlingSimulator
    server_origin: str
    _entry: LedgerEntry

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the ledger is the record."""

    # -- dispatch ----------------------------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        # ``do_<METHOD>`` for every method: one dispatch through the route table, so a method or
        # path it lacks gets the API's 405 or 404, not the stdlib's 501 HTML page.
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        serve = _routes.route(self.server_origin, self.command, url.path)
        if serve is not None:
            return serve(self, url)
        self.body_bytes()  # a keep-alive stream must not carry the unread body on
        allowed = _routes.allowed_methods(self.server_origin, url.path)
        if not allowed:
            return self.error(404, f"Cannot {self.command} {url.path}")
        return self.error(405, f"Method {self.command} not allowed on {url.path}",
                          headers={"Allow": ", ".join(allowed)})

    # -- the request -------------------------------------------------------------------------

    def parse_request(self) -> bool:
        """Record every request on arrival: a slow or dropped answer must still be counted."""
        if not super().parse_request():
            return False
        parts = urlsplit(self.path)
        self._entry = LedgerEntry(
            method=self.command, path=parts.path, status=None,
            generation_id=None, origin=self.server_origin,
            headers={k.lower(): v for k, v in self.headers.items()}, query=parts.query)
        self.simulator.ledger.record(self._entry)
        return True

    def client_request_id(self) -> str | None:
        """The request's ``X-Client-Request-Id`` when valid; the API silently drops others."""
        value = self.headers.get("X-Client-Request-Id")
        return value if value and _CLIENT_REQUEST_ID.fullmatch(value) else None

    def body_bytes(self) -> bytes:
        """The request body (read it before any answer: leftover bytes corrupt keep-alive)."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        return self.rfile.read(length) if length > 0 else b""

    def body(self) -> Any:
        """The request body as JSON (``None`` when empty); ``ValueError`` when it is not JSON."""
        return json.loads(self.body_bytes() or b"null")

    def authorised(self) -> bool:
        """Whether the request carries an accepted key; answers the API's 401 when not."""
        auth = self.headers.get("Authorization", "")
        key = auth[7:].strip() if auth.startswith("Bearer ") else ""
        keys = self.simulator.api_keys
        if key and (keys is None or key in keys):
            return True
        self.error(401, _NO_KEY)
        return False

    # -- answers -----------------------------------------------------------------------------

    def send_json(self, status: int, body: Any, headers: dict[str, str] | None = None,
                  generation_id: str | None = None) -> None:
        data = json.dumps(body).encode()
        self.send(status, data, "application/json", headers, generation_id)

    def send(self, status: int, data: bytes, content_type: str,
             headers: dict[str, str] | None = None, generation_id: str | None = None) -> None:
        """Answer ``data`` whole, recorded in the ledger, with the API's tracing headers."""
        self.record(status, generation_id)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in {**self._tracing(generation_id), **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def error(self, status: int, message: str, generation_id: str | None = None,
              headers: dict[str, str] | None = None) -> None:
        """Answer the API's error structure (``message``, ``path``, ``statusCode``...)."""
        self.send_json(status, _error_body(status, message, urlsplit(self.path).path,
                                           self.simulator.service_time()),
                       headers, generation_id)

    def _tracing(self, generation_id: str | None) -> dict[str, str]:
        """The tracing headers of an API answer: ``x-inference-id`` and the echoed client id."""
        if self.server_origin != "api":
            return {}
        headers: dict[str, str] = {}
        if self.command == "POST" or self.path.startswith(LOGS_PATH):
            headers["x-inference-id"] = generation_id or uuid.uuid4().hex
        elif generation_id and _GENERATION_ID.fullmatch(generation_id):
            headers["x-inference-id"] = generation_id  # a poll: the id it was asked about
        client_id = self.client_request_id()
        if client_id:
            headers["x-client-request-id"] = client_id
        return headers

    def record(self, status: int, generation_id: str | None) -> None:
        """Complete this request's ledger entry with its answer (0: connection dropped)."""
        self._entry.status = status
        self._entry.generation_id = generation_id

    def drop(self, generation_id: str | None) -> None:
        """Close the connection without an answer (recorded as status 0)."""
        self.record(0, generation_id)
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    # -- faults ------------------------------------------------------------------------------

    def injected(self, faults: Faults, generation_id: str | None) -> bool:
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
            message = _FAULT_MESSAGES.get(status, HTTPStatus(status).phrase)
            self.error(status, message, generation_id, headers)
            return True
        if malformed:
            self.send(200, b"<html>upstream hiccup</html>", "text/html", None, generation_id)
            return True
        return False

    def take_drop(self, faults: Faults) -> bool:
        """Whether to drop this answer's connection (consumes one ``drop_connections``)."""
        with self.simulator._lock:
            if faults.drop_connections > 0:
                faults.drop_connections -= 1
                return True
        return False
