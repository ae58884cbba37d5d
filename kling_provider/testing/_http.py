"""The simulator's HTTP plumbing: a threaded stdlib server and the request handler.

Routes API and CDN requests to :class:`~kling_provider.testing.simulator.KlingSimulator`, which
owns all state; this module only speaks HTTP (keep-alive, error bodies per the API's error
contract, dropped connections, slow answers).
"""

from __future__ import annotations

import json
import re
import socket
import struct
import sys
import time
import uuid
from dataclasses import asdict
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from kling_provider import _endpoints
from kling_provider.catalogue import ENDPOINT_FAMILIES, endpoint_path
from kling_provider.testing import _billing, _contract, _metrics, _retirements, _usage, logs
from kling_provider.testing._world import log_time
from kling_provider.testing.records import Faults, LedgerEntry

if TYPE_CHECKING:
    from kling_provider.testing.simulator import KlingSimulator

#: Field a request body may carry to choose faults for the generation it creates.
FAULTS_FIELD = "simulator_faults"
_FAMILY_BY_PATH = {endpoint_path(f): f for f in ENDPOINT_FAMILIES}
LOGS_PATH = _endpoints.path("logs")
METRICS_PATH = _endpoints.path("metrics")
#: What the API accepts in ``X-Client-Request-Id``; anything else is dropped without a word.
_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_GENERATION_ID = re.compile(r"[0-9a-f-]{36}:[\w./-]+")


#: The messages of the definite refusals ``Faults.refusals`` scripts (the API's own words).
REFUSALS = {
    400: "Body validation error\nRequired: 'prompt'",
    401: "This request requires a valid API key. You can create a new API key on the Billing "
         "page: https://aimlapi.com/app/keys",
    403: _billing.NO_CREDITS_MESSAGE,
    404: "Not Found",
}


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
        for name, value in {**self._tracing(generation_id), **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def client_request_id(self) -> str | None:
        """The request's ``X-Client-Request-Id`` when valid; the API silently drops others."""
        value = self.headers.get("X-Client-Request-Id")
        return value if value and _CLIENT_REQUEST_ID.fullmatch(value) else None

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

    def _record(self, status: int, generation_id: str | None) -> None:
        """Complete this request's ledger entry with its answer (0: connection dropped)."""
        self._entry.status = status
        self._entry.generation_id = generation_id

    def _drop(self, generation_id: str | None) -> None:
        self._record(0, generation_id)
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def _body_bytes(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        return self.rfile.read(length) if length > 0 else b""

    def _body(self) -> Any:
        return json.loads(self._body_bytes() or b"null")

    def _error(self, status: int, message: str, generation_id: str | None = None,
               headers: dict[str, str] | None = None) -> None:
        self._send_json(status, _error_body(status, message, urlsplit(self.path).path,
                                            self.simulator.service_time()),
                        headers, generation_id)

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

    def allowed_methods(self, path: str) -> list[str]:
        """The methods ``path`` serves on this origin (none: the path does not exist)."""
        if self.server_origin == "cdn":
            return ["GET"] if path.startswith("/files/") else []
        if path in _FAMILY_BY_PATH:
            return ["GET", "POST"]
        if path in ("/_simulator/faults", _retirements.CONTROL_PATH):
            return ["POST"]
        if path in ("/_simulator/ledger", METRICS_PATH, LOGS_PATH, *_usage.PATHS,
                    *_retirements.FEED_PATHS) or _billing.is_account_path(path):
            return ["GET"]
        return []

    def __getattr__(self, name: str) -> Any:
        # ``do_<METHOD>`` for every method without a handler: the API's 405, not the stdlib's
        # 501 HTML page (a method the path does not serve), or its 404 (a path that does not
        # exist).
        if name.startswith("do_"):
            return self._not_allowed
        raise AttributeError(name)

    def _not_allowed(self) -> None:
        self._body_bytes()  # a keep-alive stream must not carry the unread body on
        path = urlsplit(self.path).path
        allowed = self.allowed_methods(path)
        if not allowed:
            return self._error(404, f"Cannot {self.command} {path}")
        return self._error(405, f"Method {self.command} not allowed on {path}",
                           headers={"Allow": ", ".join(allowed)})

    def do_GET(self) -> None:
        if self.server_origin == "cdn":
            return self._serve_video()
        parts = urlsplit(self.path)
        if parts.path == "/_simulator/ledger":
            return self._send_json(200, self.simulator.ledger.summary())
        if parts.path == METRICS_PATH:  # keyless, like the real endpoint
            return self._metrics(parts.query)
        if parts.path in _retirements.FEED_PATHS:  # keyless too
            status, data, headers = self.simulator.retirements.answer(
                parts.query, self.headers.get("If-None-Match"))
            return self._send(status, data, "application/json", headers)
        if _billing.is_account_path(parts.path):
            return self._serve_account(parts.path, parts.query)
        if parts.path == LOGS_PATH:
            return self._logs(parts.query)
        if parts.path in _usage.PATHS:
            return self._usage(parts.path, parts.query)
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
        if self._take_drop(sim.faults):  # global, like the statuses: a poll or a probe too
            return self._drop(generation_id or None)
        if generation is None:
            return self._error(404, f"Generation {generation_id!r} not found", generation_id or None)
        if self._injected(generation.faults, generation_id):
            return None
        if self._take_drop(generation.faults):
            return self._drop(generation_id)
        with sim._lock:
            state = sim._state(generation)
            usd = generation.usd if generation.charged else 0.0
        return self._send_json(200, state, _billing.cost_headers(usd), generation_id=generation_id)

    def _serve_account(self, path: str, query: str) -> None:
        """The model list (no key needed) and the balance (key needed): see ``_billing``."""
        sim = self.simulator
        if path != _billing.BILLING_PATH:
            status, data, headers = _billing.model_list_answer(
                sim.price_list, path, query, self.headers.get("If-None-Match"))
            return self._send(status, data, "application/json", headers)
        if not self._authorised():
            return None
        with sim._lock:
            balance = round(sim.balance_usd, 6)
        return self._send_json(200, {"current_balance": balance, "currency": "USD"})

    def _metrics(self, query: str) -> None:
        params = parse_qs(query)
        unknown = sorted(set(params) - {"aliases"})
        if unknown:
            return self._error(400, f"Unknown query parameter(s): {', '.join(unknown)}")
        return self._send_json(200, _metrics.answer(self.simulator, params.get("aliases")))

    def _logs(self, raw_query: str) -> None:
        if not self._authorised():
            return None
        sim = self.simulator
        if self._injected(sim.faults, None):
            return None
        key = self.headers.get("Authorization", "")
        with sim._lock:
            limited = logs.over_limit(sim._logs_calls.setdefault(key, []), sim.clock())
        if limited:
            return self._error(429, "Too Many Requests", headers={"Retry-After": "1"})
        try:
            with sim._lock:
                answer = logs.page(sim, list(sim._generations.values()), parse_qs(raw_query))
        except logs.LogsQueryError as exc:
            return self._error(400, str(exc))
        return self._send_json(200, answer)

    def _usage(self, path: str, query: str) -> None:
        if not self._authorised() or self._injected(self.simulator.faults, None):
            return None
        status, body = _usage.answer(self.simulator, path, query,
                                     self.headers.get("Authorization", ""))
        return self._send_json(200, body) if status == 200 else self._error(status, body)

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
        if parts.path == _retirements.CONTROL_PATH and self.server_origin == "api":
            try:
                return self._send_json(200, sim.retirements.control(body))
            except _retirements.RetireError as exc:
                return self._error(400, str(exc))
        family = _FAMILY_BY_PATH.get(parts.path)
        if family is None or self.server_origin != "api":
            return self._error(404, f"Cannot POST {parts.path}")
        if not self._authorised():
            return None
        if self._injected(sim.faults, None):
            return None
        gone = sim.retirements.withdrawn(body.get("model") if isinstance(body, dict) else None)
        if gone is not None:  # the real API's answer to a withdrawn model
            return self._error(404, _retirements.withdrawn_message(gone))
        requested = body.pop(FAULTS_FIELD, None) if isinstance(body, dict) else None
        try:
            faults = Faults.from_dict(requested) if requested else Faults()
        except (TypeError, ValueError) as exc:
            return self._error(400, f"Body validation error\n{FAULTS_FIELD}: {exc}")
        try:
            model, request = sim._accept(family, body)
        except _contract.ContractError as exc:
            return self._error(400, str(exc))
        with sim._lock:
            refusal = sim.faults.refusals.pop(0) if sim.faults.refusals else None
            if refusal is None and faults.refusals:  # per body: its first creates, in turn
                key = json.dumps(request, sort_keys=True, default=str)
                seen = sim._refused_bodies.get(key, 0)
                sim._refused_bodies[key] = seen + 1
                refusal = faults.refusals[seen] if seen < len(faults.refusals) else None
        if refusal is not None:  # a definite refusal: nothing is created
            sim._refuse(self.client_request_id(), model)
            return self._error(refusal, REFUSALS.get(refusal, HTTPStatus(refusal).phrase))
        if sim.balance_usd <= 0:
            sim._refuse(self.client_request_id(), model)
            return self._error(403, _billing.NO_CREDITS_MESSAGE)
        client_id = self.client_request_id()
        if faults.refuse_before_create:
            with sim._lock:
                refused = sim._refused.get(client_id or "", 0)
                sim._refused[client_id or ""] = refused + 1
            if refused < faults.refuse_before_create:
                return self._error(429, "Too Many Requests", headers={"Retry-After": "1"})
        generation = sim._create(model, family, _contract.duration_of(request), faults, client_id)
        generation.usd = _billing.price_of(sim.price_list, model, request)
        generation.key_prefix = _usage.caller_prefix(self.headers.get("Authorization", ""))
        sim._surround(generation)
        if faults.create_delay:
            time.sleep(faults.create_delay)
        if faults.create_drop or self._take_drop(sim.faults):
            return self._drop(generation.generation_id)  # created, but the answer is lost
        if faults.create_status:
            return self._error(faults.create_status, HTTPStatus(faults.create_status).phrase,
                               generation.generation_id)
        if faults.create_garbled:
            return self._send(200, b"<html><body>upstream hiccup</body></html>", "text/html",
                              None, generation.generation_id)
        return self._send_json(200, {"id": generation.generation_id, "status": "queued"},
                               _billing.cost_headers(0.0), generation_id=generation.generation_id)

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
