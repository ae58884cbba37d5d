"""Shared fixtures: the simulator on loopback, a fake clock, scripted httpx transports."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from kling_provider._models import feeds as _feeds
from kling_provider._money import pricing as _pricing
from kling_provider._runtime import client as _client
from kling_provider._runtime.connections import ConnectionCache
from kling_provider._wait import starting as _starting
from kling_provider._wait.timings import MetricsCache
from kling_provider.hooks import _base as hook_base
from kling_provider.hooks.kling import KlingHook, aclose_shared_clients
from kling_provider.testing.simulator import KlingSimulator
from tests import hypothesis_profiles  # noqa: F401  (the Hypothesis profile of this run)

ROOT = Path(__file__).resolve().parent.parent
SECRET_KEY = "sk-test-8f1e2d3c4b5a69788796a5b4c3d2e1f0"


class FakeClock:
    """Epoch time that moves only when something sleeps: no unit test waits on the wall clock."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.t = start
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    def monotonic(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


Answer = httpx.Response | Exception


class Script:
    """An httpx MockTransport handler answering from a list, recording what it was sent."""

    def __init__(self, *answers: Answer | Callable[[httpx.Request], Answer]) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if not self.answers:
            raise AssertionError(f"unexpected request {request.method} {request.url}")
        answer = self.answers.pop(0)
        if callable(answer) and not isinstance(answer, (httpx.Response, Exception)):
            answer = answer(request)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def methods(self) -> list[str]:
        return [r.method for r in self.requests]


def ok(body: dict[str, Any], status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def api_error(status: int, message: str, **headers: str) -> httpx.Response:
    return httpx.Response(status, headers=headers, json={
        "message": message, "path": "/v2/generate/video/kling/generation",
        "requestId": "req-123", "statusCode": status, "timestamp": "2026-11-21T00:00:00Z"})


def connection_json(host: str, key: str = SECRET_KEY, **extra: Any) -> str:
    return json.dumps({"conn_type": "kling", "host": host, "password": key, "extra": extra})


class TaskInstanceStub:
    """What the operators use of ``ti``: its identity and XCom pushes, recorded."""

    def __init__(self, try_number: int = 1, map_index: int = -1) -> None:
        self.xcom: dict[str, Any] = {}
        self.dag_id = "dag"
        self.run_id = "manual__2026-11-21T00:00:00+00:00"
        self.task_id = "generate"
        self.map_index = map_index
        self.try_number = try_number

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


class OutletEventsStub:
    """``outlet_events[asset].extra = ...`` as tasks use it; keyed by URI (Assets may not hash)."""

    def __init__(self) -> None:
        self.events: dict[str, SimpleNamespace] = {}

    def __getitem__(self, asset: Any) -> SimpleNamespace:
        return self.events.setdefault(asset.uri, SimpleNamespace(extra=None))


class StateStoreStub:
    """``task_state_store`` semantics: survives across tries of one task instance."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any, *, retention: Any = None) -> None:
        self.data[key] = json.loads(json.dumps(value))  # JSON only, like the real store


def context_for(store: StateStoreStub | None, *, try_number: int = 1,
                clear_number: int = 0) -> Any:
    """A ``Context`` with what the operators read: ``ti``, ``dag_run`` and (Airflow 3.3+) the
    state store. A new context with the same store is a retry (``try_number`` + 1) or, with a
    higher ``clear_number``, a try after the user cleared the task."""
    context: dict[str, Any] = {
        "ti": TaskInstanceStub(try_number),
        "dag_run": SimpleNamespace(clear_number=clear_number, start_date=None),
        "outlet_events": OutletEventsStub(),
    }
    if store is not None:
        context["task_state_store"] = store
    return context


def installed_packages_key() -> str:
    """A short hash of every distribution installed in this Python (names and versions): two
    venvs with the same key build the same Airflow metadata schema."""
    names = sorted(f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions())
    return hashlib.sha256("\n".join(names).encode()).hexdigest()[:16]


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes (``make test`` runs several pytest sessions at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="session")
def airflow_db_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An Airflow metadata DB migrated once per set of installed packages; tests copy it.

    Migrating takes ~7 s of CPU, and ``make test`` runs up to five pytest sessions on the same
    packages (its lanes, the matrix's Airflow 3.3 entries), so the migrated file is kept in
    ``test-artifacts/airflow-db/`` under :func:`installed_packages_key`, made by whichever session
    comes first while the others wait for it.

    ``KLING_TEST_AIRFLOW_DB`` names one already migrated (by this Airflow; tests only copy it):
    ``tools/mutation.py`` sets it, since each mutant's tests are a pytest session of their own
    (in a copy of the project) and would otherwise spend their time migrating.
    """
    migrated = os.environ.get("KLING_TEST_AIRFLOW_DB")
    if migrated:
        return Path(migrated)
    cache = ROOT / "test-artifacts" / "airflow-db" / f"airflow-{installed_packages_key()}.db"
    with file_lock(cache.with_suffix(".lock")):
        if not cache.exists():
            home = tmp_path_factory.mktemp("airflow-template")
            env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                   "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}"}
            subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
                           env=env, check=True, capture_output=True, timeout=300)
            shutil.copy(home / "airflow.db", cache.with_suffix(".partial"))
            os.replace(cache.with_suffix(".partial"), cache)  # whole or absent
    return cache


@pytest.fixture(autouse=True)
def _fresh_timings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with empty per-process caches of live model timings, of model-list
    answers (with their ETags) and of connection settings (tests point the same connection id
    at a different simulator each time)."""
    monkeypatch.setattr(_client, "TIMINGS", MetricsCache())
    monkeypatch.setattr(_pricing, "PRICE_LISTS", _pricing.PriceListCache())
    monkeypatch.setattr(_client, "CONNECTIONS", ConnectionCache())
    monkeypatch.setattr(_starting, "PACER", _starting.StartPacer())


@pytest.fixture(autouse=True)
def _fresh_feeds(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Each test starts with no deprecation feed read, in memory or on disk (its own cache
    directory, which Airflow processes the test starts inherit), never the user's ~/.cache."""
    directory = tmp_path_factory.mktemp("feeds")
    monkeypatch.setenv(_feeds.CACHE_DIR_VARIABLE, str(directory))
    monkeypatch.setattr(_feeds, "FEEDS", _feeds.FeedCache())


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def kling_env(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Point ``kling_default`` at a host (a connection in the env-var JSON form)."""

    def point(host: str, key: str = SECRET_KEY, **extra: Any) -> None:
        monkeypatch.setenv("AIRFLOW_CONN_KLING_DEFAULT", connection_json(host, key, **extra))

    return point


@pytest.fixture
def mock_hook(kling_env: Callable[..., None], clock: FakeClock) -> Callable[..., KlingHook]:
    """A hook whose sync and async paths both answer from ``script``."""

    def make(script: Script, **extra: Any) -> KlingHook:
        extra.setdefault("live_timings", False)  # scripts answer the generation calls only
        kling_env("https://api.example.test", **extra)
        transport = httpx.MockTransport(script)
        return KlingHook(clock=clock, transport=transport, async_transport=transport)

    return make


def pytest_configure(config: pytest.Config) -> None:
    # Airflow processes a module- or session-scoped fixture starts (before any test's own
    # directory is set) keep their deprecation feeds here, never in the user's ~/.cache.
    import tempfile  # only here: the session's directory

    os.environ[_feeds.CACHE_DIR_VARIABLE] = tempfile.mkdtemp(prefix="kling-feeds-")
    config.addinivalue_line(
        "markers", "simulator(**knobs): build the test's simulator with these KlingSimulator "
                   "arguments, e.g. simulator(**HOSTILE) or simulator(neighbours=3, logs_lag=60)")


@pytest.fixture
def simulator(clock: FakeClock, request: pytest.FixtureRequest) -> Iterator[KlingSimulator]:
    """A simulator on loopback sharing the fake clock: polls advance its generations.

    ``@pytest.mark.simulator(**knobs)`` on a test (or module) passes its world knobs
    (``neighbours``, ``logs_lag``, ``mixed_logs``, ``skew``, ...) to every fixture built on this
    one: ``sim_hook`` and ``airflow_sim`` included.
    """
    marker = request.node.get_closest_marker("simulator")
    knobs: dict[str, Any] = dict(marker.kwargs) if marker else {}
    with KlingSimulator(clock=clock.monotonic, wall_clock=clock.now, api_keys={SECRET_KEY},
                        **knobs) as sim:
        yield sim


@pytest.fixture
def sim_hook(simulator: KlingSimulator, kling_env: Callable[..., None],
             clock: FakeClock) -> Iterator[KlingHook]:
    kling_env(simulator.base_url)
    hook = KlingHook(clock=clock)
    yield hook
    hook.close()


@pytest.fixture
def airflow_sim(simulator: KlingSimulator, kling_env: Callable[..., None], clock: FakeClock,
                monkeypatch: pytest.MonkeyPatch) -> KlingSimulator:
    """The simulator as ``kling_default``, for hooks the operators create themselves.

    Those hooks get the default clock, so it is swapped for the fake one shared with the
    simulator: operator and trigger waits then take no wall-clock time.
    """
    kling_env(simulator.base_url)
    monkeypatch.setattr(hook_base, "SystemClock", lambda: clock)
    return simulator


@pytest.fixture
def no_requests(monkeypatch: pytest.MonkeyPatch,
                kling_env: Callable[..., None]) -> list[httpx.Request]:
    """Any request through httpx's real transports fails the test (and is recorded), for tests
    proving that checks (or ``on_kill``) run before, or without, any request."""
    kling_env("https://api.example.test")
    sent: list[httpx.Request] = []

    def refuse(self: Any, request: httpx.Request) -> httpx.Response:
        sent.append(request)
        raise AssertionError(f"a request was sent before the checks: {request.method} "
                             f"{request.url}")

    async def arefuse(self: Any, request: httpx.Request) -> httpx.Response:
        return refuse(self, request)

    monkeypatch.setattr(httpx.HTTPTransport, "handle_request", refuse)
    monkeypatch.setattr(httpx.AsyncHTTPTransport, "handle_async_request", arefuse)
    return sent


def run_async(coro_factory: Callable[[], Any]) -> Any:
    """Run one async hook call on a fresh loop and close the loop's shared clients after."""

    async def main() -> Any:
        try:
            return await coro_factory()
        finally:
            await aclose_shared_clients()

    return asyncio.run(main())


@pytest.fixture
def memory_folder() -> Iterator[Any]:
    """A folder on fsspec's in-memory filesystem, attached the way a provider attaches s3."""
    import fsspec
    from airflow.sdk import ObjectStoragePath
    from airflow.sdk.io import attach

    attach(protocol="memory", fs=fsspec.filesystem("memory"))
    folder = ObjectStoragePath("memory://kling-tests/videos/")
    yield folder
    if folder.exists():
        for item in folder.iterdir():
            item.unlink()
