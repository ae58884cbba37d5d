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

This module is the public face: the servers, their knobs and lifecycle, and the CLI. The state
and the generations' lives are in ``_service`` (the base class), the HTTP plumbing in ``_http``,
every endpoint in the one route table of ``_routes`` (answered by the ``_serve_*`` modules).
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
from collections.abc import Callable
from typing import Any

from kling_provider.testing import _billing, _contract, _retirements, _usage
from kling_provider.testing._http import _handler, _Server
from kling_provider.testing._media import IDENTITY_BOX_SIZE, sample_video
from kling_provider.testing._serve_generations import FAULTS_FIELD
from kling_provider.testing._service import SimulatedService
from kling_provider.testing.records import Faults, Ledger, LedgerEntry

__all__ = ["DEFAULT_API_KEY", "FAULTS_FIELD", "HOSTILE", "IDENTITY_BOX_SIZE", "Faults",
           "KlingSimulator", "Ledger", "LedgerEntry", "main", "sample_video"]

DEFAULT_API_KEY = "kling-simulator-key"
#: Every world knob turned up at once (``KlingSimulator(**HOSTILE)``): six neighbours per create,
#: logs rows 4 simulated minutes late, 140 unusable rows per create (the first logs page holds
#: none of the task's), the service's clock 4 minutes ahead.
HOSTILE: dict[str, Any] = {"neighbours": 6, "logs_lag": 240.0, "mixed_logs": 140, "skew": 240.0}


class KlingSimulator(SimulatedService):
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
        self._generations = {}
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
          f"{args.api_key!r} (change it with --api-key); simulated time runs "
          f"{args.time_scale:g}x (--time-scale)", flush=True)
    stop.wait()
    sim.stop()


if __name__ == "__main__":
    main()
