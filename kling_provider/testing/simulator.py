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
import copy
import json
import signal
import subprocess  # nosec B404  # spawn() starts this module in our own interpreter
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from kling_provider._wait.timings import generation_id_path
from kling_provider.catalogue import ENDPOINT_FAMILIES
from kling_provider.testing import _billing, _contract, _media, _retirements, _usage, _world, logs
from kling_provider.testing._billing import CREDITS_PER_USD
from kling_provider.testing._http import FAULTS_FIELD, _handler, _Server
from kling_provider.testing._media import IDENTITY_BOX_SIZE, sample_video
from kling_provider.testing.records import Faults, Ledger, LedgerEntry

__all__ = ["DEFAULT_API_KEY", "FAULTS_FIELD", "HOSTILE", "IDENTITY_BOX_SIZE", "Faults",
           "KlingSimulator", "Ledger", "LedgerEntry", "main", "sample_video"]

DEFAULT_API_KEY = "kling-simulator-key"
#: Every world knob turned up at once (``KlingSimulator(**HOSTILE)``): six neighbours per create,
#: logs rows 4 simulated minutes late, 140 unusable rows per create (the first logs page holds
#: none of the task's), the service's clock 4 minutes ahead.
HOSTILE: dict[str, Any] = {"neighbours": 6, "logs_lag": 240.0, "mixed_logs": 140, "skew": 240.0}


@dataclass
class _Generation:
    generation_id: str
    model: str
    family: str
    created: float
    duration: int
    faults: Faults
    token: str
    #: The price charged to the balance when the generation completes (see ``_billing``).
    usd: float = 0.0
    charged: bool = False
    #: Wall-clock epoch seconds of the POST (the logs' ``created``).
    created_at: float = 0.0
    #: The ``X-Client-Request-Id`` the POST carried, when valid (the API drops invalid ones).
    client_request_id: str | None = None
    #: Started by another caller of the account (``neighbours``), not through this server.
    neighbour: bool = False
    #: The creating key's prefix, and when the charge landed: ``GET /v2/usage`` (``_usage``).
    key_prefix: str = ""
    charged_at: float | None = None


class KlingSimulator:
    """The API and CDN servers, their state, and the knobs tests turn.

    :param time_scale: simulated seconds per real second (600: a 5-minute generation takes 0.5 s).
    :param queued_seconds: simulated time in ``queued``.
    :param generating_seconds: simulated time in ``generating``; a 10 s video generates twice as
        long, like the real service.
    :param api_keys: accepted keys; ``None`` accepts any non-empty key.
    :param accept_unknown_models: accept models the catalogue lacks (the real API would 400).
    :param clock: monotonic seconds; tests pass a fake clock to move generations deterministically.
    :param balance_usd: the account balance; creates are refused (403) once it is at or below 0.
    :param wall_clock: epoch seconds for the usage logs' timestamps (tests pass the fake clock).
    :param neighbours: with each create, start this many generations of the same model for other
        callers of the account (other DAGs, callers sending no client request id, sibling map
        indexes) within the same minute; most are listed before the task's own logs row.
    :param logs_lag: simulated seconds between a generation finishing and its usage-logs row.
    :param mixed_logs: with each create, this many logs rows a recovery cannot use (no or empty
        ``inference_id``, other models, failed requests), listed before the task's own row.
    :param skew: seconds the service's clock runs ahead of the worker's (negative: behind); its
        logs timestamps, windows and error bodies are shifted by it.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, cdn_port: int = 0,
                 time_scale: float = 1.0, queued_seconds: float = 20.0,
                 generating_seconds: float = 300.0,
                 api_keys: set[str] | None = frozenset({DEFAULT_API_KEY}),  # type: ignore[assignment]
                 accept_unknown_models: bool = False,
                 clock: Callable[[], float] = time.monotonic,
                 balance_usd: float = 100.0,
                 wall_clock: Callable[[], float] = time.time, neighbours: int = 0,
                 logs_lag: float = 0.0, mixed_logs: int = 0, skew: float = 0.0) -> None:
        self.time_scale = time_scale
        self.queued_seconds = queued_seconds
        self.generating_seconds = generating_seconds
        self.api_keys = set(api_keys) if api_keys is not None else None
        self.accept_unknown_models = accept_unknown_models
        self.clock = clock
        self.wall_clock = wall_clock
        self.neighbours = neighbours
        self.logs_lag = logs_lag
        self.mixed_logs = mixed_logs
        self.skew = skew
        #: Usage-log rows of no generation here (``mixed_logs``): (epoch created, row).
        self.extra_log_rows: list[tuple[float, dict[str, Any]]] = []
        self.faults = Faults()
        #: Times of ``GET /v2/logs`` requests per key, for its 200 requests / 60 s limit.
        self._logs_calls: dict[str, list[float]] = {}
        #: POSTs refused so far per client request id (``refuse_before_create``).
        self._refused: dict[str, int] = {}
        #: Creates seen so far per request body (a body's ``refusals``).
        self._refused_bodies: dict[str, int] = {}
        self.ledger = Ledger()
        self.video = sample_video()
        #: The model list with pricing this simulator serves and charges by (tests may edit it).
        self.price_list: dict[str, Any] = copy.deepcopy(_billing.simulator_price_list())
        #: ``GET /v2/billing``'s ``current_balance``; completed generations are charged to it.
        self.balance_usd = balance_usd
        #: Spend outside this server and management keys, for ``GET /v2/usage`` (``_usage``).
        self.usage = _usage.UsageBook()
        #: The model deprecation feed; ``retirements.retire(model, ...)`` retires one.
        self.retirements = _retirements.Retirements(self.service_time)
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
        _contract.warm()  # parse the contract now, not inside the first create's answer
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

    def generation_ids(self, *, include_neighbours: bool = False) -> list[str]:
        """Ids of the generations created through this server (and neighbours' when asked)."""
        with self._lock:
            return [g.generation_id for g in self._generations.values()
                    if include_neighbours or not g.neighbour]

    def service_time(self) -> float:
        """The service's epoch clock: the wall clock shifted by ``skew``."""
        return self.wall_clock() + self.skew

    def _create(self, model: str, family: str, duration: int, faults: Faults,
                client_request_id: str | None = None) -> _Generation:
        generation = _Generation(
            generation_id=f"{uuid.uuid4()}:{generation_id_path(model)}", model=model,
            family=family, created=self.clock(), duration=duration, faults=faults,
            token=uuid.uuid4().hex, created_at=self.service_time(),
            client_request_id=client_request_id)
        with self._lock:
            self._generations[generation.generation_id] = generation
        return generation

    def add_neighbour(self, model: str, *, client_request_id: str | None, offset: float = 0.0,
                      failed: bool = False, duration: int = 5) -> str:
        """Start a generation of ``model`` for another caller of the account; return its id.

        It starts ``offset`` seconds after now on the service's clock (its logs ``created``),
        finishes as a generation started now would, and is never polled (so never charged).
        """
        error = {"name": "NeighbourFailed", "message": "a neighbour's generation failed"}
        generation = self._create(model, self._family_of(model), duration,
                                  Faults(error=error if failed else None), client_request_id)
        generation.neighbour = True
        generation.created_at += offset
        return generation.generation_id

    def _surround(self, generation: _Generation) -> None:
        """The rest of the world around a create: ``neighbours`` and ``mixed_logs`` rows."""
        seed = generation.generation_id
        ids = _world.neighbour_ids(generation.client_request_id, self.neighbours, seed)
        offsets = _world.neighbour_offsets(len(ids))
        for i, (cri, offset) in enumerate(zip(ids, offsets, strict=True)):
            self.add_neighbour(generation.model, client_request_id=cri, offset=offset,
                               failed=i % 5 == 4, duration=generation.duration)
        rows = _world.unusable_rows(generation.model, generation.client_request_id,
                                    generation.created_at, self.mixed_logs, seed)
        self.add_log_rows(rows)

    def _refuse(self, client_request_id: str | None, model: Any) -> None:
        """A refused create: with ``mixed_logs``, its failed row (no ``inference_id``) is logged."""
        if self.mixed_logs and isinstance(model, str):
            self.add_log_rows([_world.refused_row(model, client_request_id, self.service_time())])

    def add_log_rows(self, rows: list[dict[str, Any]]) -> None:
        """Add usage-log rows of no generation here; each shows from now on, filtered by its
        ``created``, ``model`` and ``status`` like any row."""
        with self._lock:
            self.extra_log_rows.extend(
                (logs.parse_created(str(row.get("created") or "")), row) for row in rows)

    def _video_size(self, generation: _Generation) -> int:
        return max(generation.faults.video_size or 0, len(self.video) + IDENTITY_BOX_SIZE)

    def _finished(self, generation: _Generation, lag: float = 0.0) -> bool:
        """Whether the generation has reached its terminal status ``lag`` simulated seconds ago."""
        elapsed = (self.clock() - generation.created) * self.time_scale
        return elapsed >= self.queued_seconds + self._generating(generation) + lag

    def logged(self, generation: _Generation) -> bool:
        """Whether the generation's usage-logs row exists: finished, ``logs_lag`` ago."""
        return self._finished(generation, self.logs_lag)

    def _generating(self, generation: _Generation) -> float:
        return self.generating_seconds * (2 if generation.duration >= 10 else 1)

    def generations_by_client_request_id(self, *, include_neighbours: bool = False
                                         ) -> dict[str | None, list[str]]:
        """Generation ids per client request id: what a test counts to prove one payment."""
        found: dict[str | None, list[str]] = {}
        with self._lock:
            for generation in self._generations.values():
                if generation.neighbour and not include_neighbours:
                    continue
                found.setdefault(generation.client_request_id, []).append(
                    generation.generation_id)
        return found

    def _state(self, generation: _Generation) -> dict[str, Any]:
        elapsed = (self.clock() - generation.created) * self.time_scale
        generating = self._generating(generation)
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
        if not generation.charged:  # the charge lands once the generation is completed
            generation.charged, generation.charged_at = True, self.service_time()
            self.balance_usd -= generation.usd
        credits = round(generation.usd * CREDITS_PER_USD)
        usage: dict[str, Any] = ({"tokens_used": credits} if generation.family == "legacy"
                                 else {"credits_used": credits, "usd_spent": generation.usd})
        return {**body, "status": "completed",
                "video": {"url": f"{self.cdn_url}/files/{generation.token}/output.mp4",
                          "content_type": "video/mp4", "file_name": "output.mp4",
                          "file_size": self._video_size(generation), "duration": generation.duration},
                "meta": {"usage": usage}}

    def _family_of(self, model: str) -> str:
        return next((f for f in ENDPOINT_FAMILIES if model in _contract.create_schemas(f)),
                    "unified")

    def _by_token(self, token: str) -> _Generation | None:
        with self._lock:
            return next((g for g in self._generations.values() if g.token == token), None)

    def _accept(self, family: str, body: Any) -> tuple[str, dict[str, Any]]:
        """The model and the request as the service runs it, or ``ContractError`` (a 400)."""
        request = _contract.accepted(family, body, allow_unknown_model=self.accept_unknown_models)
        return str(request["model"]), request

    def video_of(self, generation_id: str) -> bytes:
        """The whole video the CDN serves for ``generation_id`` (for tests comparing files)."""
        with self._lock:
            generation = self._generations[generation_id]
        return b"".join(self.video_bytes(generation))

    def video_bytes(self, generation: _Generation) -> Iterator[bytes]:
        """What the CDN serves for ``generation``, in chunks (see :func:`_media.video_bytes`)."""
        return _media.video_bytes(self.video, generation.generation_id,
                                  self._video_size(generation))


def spawn(api_key: str = DEFAULT_API_KEY, *, time_scale: float = 1.0) -> tuple[subprocess.Popen[str], str]:
    """Start the simulator CLI in its own process; return it and its API base URL.

    For benchmarks: a server in another process keeps its CPU out of the measured process.
    """
    process = subprocess.Popen(  # noqa: S603  # nosec B603  # our own interpreter and module, fixed args
        [sys.executable, "-m", "kling_provider.testing.simulator", "--port", "0",
         "--api-key", api_key, "--time-scale", str(time_scale)], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None  # nosec B101  # type narrowing: stdout=PIPE gives a stream
    return process, str(json.loads(process.stdout.readline())["base_url"])


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
    print(json.dumps({"base_url": sim.base_url, "cdn_url": sim.cdn_url, "api_key": args.api_key}),
          flush=True)
    # A throwaway key for a local fake, not a credential: users need it to set up the connection.
    print(f"Kling simulator: API {sim.base_url}  CDN {sim.cdn_url}  accepts API key "
          f"{args.api_key!r} (change it with --api-key)", flush=True)
    stop.wait()
    sim.stop()


if __name__ == "__main__":
    main()
