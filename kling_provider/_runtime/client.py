"""What the hook runs the step generators with: connection settings, clock, senders, drivers.

:class:`~kling_provider.hooks.kling.KlingHook` is a thin front: each of its methods builds a step
generator (:mod:`kling_provider._api.protocol` and the modules beside it) and hands it to :func:`run`
(workers: the hook's own ``httpx.Client``) or :func:`arun` (the triggerer: the event loop's shared
client). This module holds everything those two need and nothing about the API itself:

- :class:`KlingConnectionSettings`, what a Kling connection resolves to;
- :class:`Clock`, time as the drivers see it (tests pass a fake one, so nothing sleeps);
- :class:`Sender` and :class:`AsyncSender`, the one call a driver makes, declared so that any
  client answering it fits (``httpx.Client``, ``httpx.AsyncClient``,
  :class:`~kling_provider._runtime.aiohttp_client.AiohttpSender`);
- the registry of shared async clients (one per event loop and settings), and the caches every
  wait of a process shares (:data:`TIMINGS`, :data:`CONNECTIONS`).
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
import weakref
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import httpx

from kling_provider._api.protocol import ApiRequest, RetryPolicy, Step, Steps
from kling_provider._money.budget import BUDGET_EXTRAS, resolve_budget
from kling_provider._runtime import aiohttp_client as _aiohttp
from kling_provider._runtime import connections as _connections
from kling_provider._runtime import driving as _driving
from kling_provider._storage import hosts as _hosts
from kling_provider._wait import timings as _timings
from kling_provider.catalogue import endpoint_family
from kling_provider.exceptions import KlingAuthenticationError, KlingValidationError

DEFAULT_HOST = "https://api.aimlapi.com"
USER_AGENT = "airflow-provider-kling"


class Clock(Protocol):
    """Time as the hook sees it; tests pass a fake one so no unit test sleeps on the wall clock."""

    def now(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...
    async def asleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock: epoch seconds, blocking sleep in workers, ``asyncio.sleep`` in triggers."""

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    async def asleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class Sender(Protocol):
    """The one call the sync driver makes (``httpx.Client`` answers it)."""

    def request(self, method: str, url: str, /, *, params: Mapping[str, str] | None,
                json: Any, headers: Mapping[str, str]) -> httpx.Response: ...


class AsyncSender(Protocol):
    """The async driver's client: one request at a time, and closable (httpx or aiohttp)."""

    @property
    def is_closed(self) -> bool: ...
    async def request(self, method: str, url: str, /, *, params: Mapping[str, str] | None,
                      json: Any, headers: Mapping[str, str]) -> httpx.Response: ...
    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class KlingConnectionSettings:
    """What a Kling connection resolves to. The key is excluded from ``repr`` and equality."""

    conn_id: str
    base_url: str
    endpoint_family: str
    api_key: str = field(repr=False, compare=False)
    timeout: float = 30.0
    connect_timeout: float = 10.0
    max_retries: int = 5
    max_concurrency: int = 64
    live_timings: bool = True
    #: Which non-public addresses a download may reach (``allow_private_hosts`` + the API host).
    download_hosts: _hosts.HostPolicy = field(default_factory=_hosts.HostPolicy)
    #: The extras ``budget_usd``, ``budget_period``, ``on_unknown_spend`` as set (checked when
    #: loaded; a task's own values override each: :func:`kling_provider._money.budget.resolve_budget`).
    budget_extra: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def from_connection(cls, conn: Any) -> KlingConnectionSettings:
        extra: Mapping[str, Any] = conn.extra_dejson or {}
        host = (conn.host or "").strip() or DEFAULT_HOST
        if "://" not in host:
            host = f"https://{host}"
        if conn.port:
            host = f"{host.rstrip('/')}:{conn.port}"

        def number(name: str, default: float, cast: type = float) -> Any:
            value = extra.get(name, default)
            try:
                result = cast(value)
            except (TypeError, ValueError, OverflowError):  # OverflowError: int(inf)
                result = None
            # isfinite: a JSON extra may hold Infinity or NaN ("nan" too), which no wait can use
            if result is None or not math.isfinite(result) or result <= 0:
                raise KlingValidationError(
                    f"Invalid extra {name!r}={value!r} in connection {conn.conn_id!r}: must be a "
                    "finite positive number."
                )
            return result

        return cls(
            conn_id=conn.conn_id,
            base_url=host.rstrip("/"),
            endpoint_family=endpoint_family(str(extra.get("endpoint_family", "legacy"))),
            api_key=(conn.password or "").strip(),
            timeout=number("timeout", 30.0),
            connect_timeout=number("connect_timeout", 10.0),
            max_retries=number("max_retries", 5, int),
            max_concurrency=number("max_concurrency", 64, int),
            live_timings=str(extra.get("live_timings", True)).lower() not in ("false", "0", "no"),
            download_hosts=_hosts.HostPolicy.of(
                extra.get("allow_private_hosts"), api_host=httpx.URL(host).host,
                conn_id=conn.conn_id),
            budget_extra=_budget_extra(extra, conn.conn_id),
        )

    @property
    def httpx_timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.timeout, connect=self.connect_timeout)

    @property
    def secrets(self) -> tuple[str, ...]:
        """What the step generators scrub out of answers and messages."""
        return (self.api_key,)

    def auth_headers(self) -> dict[str, str]:
        if not self.api_key:
            raise KlingAuthenticationError(
                f"Connection {self.conn_id!r} has no API key: set its password (shown as "
                "'API Key' in the UI) to your AI/ML API key."
            )
        return {"Authorization": f"Bearer {self.api_key}"}

    def headers_for(self, step: ApiRequest) -> dict[str, str]:
        """Authentication (unless the endpoint is keyless) over the request's own headers."""
        auth = self.auth_headers() if step.authenticated else {}
        return {**(step.headers or {}), **auth}

    def download_client(self, transport: httpx.BaseTransport | None) -> httpx.Client:
        """A client of its own for a download: its transport (shared per process, never closed
        here) refuses the addresses :attr:`download_hosts` does not allow."""
        return httpx.Client(timeout=self.httpx_timeout, headers={"User-Agent": USER_AGENT},
                            transport=transport or _hosts.guarded_transport(self.download_hosts))

    def sync_client(self, transport: httpx.BaseTransport | None) -> httpx.Client:
        """A worker's client for the API (one per hook, keep-alive across polls)."""
        return httpx.Client(base_url=self.base_url, timeout=self.httpx_timeout,
                            transport=transport, headers={"User-Agent": USER_AGENT})


def _budget_extra(extra: Mapping[str, Any], conn_id: str) -> tuple[tuple[str, Any], ...]:
    """The budget extras, refused now when invalid (naming the extra and the connection)."""
    found = tuple((name, extra[name]) for name in BUDGET_EXTRAS if extra.get(name) is not None)
    resolve_budget({}, dict(found), task_id="", conn_id=conn_id)
    return found


def load_settings(conn: Any) -> KlingConnectionSettings:
    """A worker's settings of ``conn``, its key masked in the task's logs."""
    settings = KlingConnectionSettings.from_connection(conn)
    if settings.api_key:
        # Airflow's log machinery: a task has it loaded, the triggerer uses aload_settings
        from airflow.sdk.log import mask_secret

        mask_secret(settings.api_key)
    return settings


async def aload_settings(conn: Any) -> KlingConnectionSettings:
    """The triggerer's twin of :func:`load_settings`: masks without blocking the loop."""
    settings = KlingConnectionSettings.from_connection(conn)
    if settings.api_key:
        await _connections.amask(settings.api_key)
    return settings


@functools.lru_cache(maxsize=16)
def default_policy(max_attempts: int) -> RetryPolicy:
    """One frozen policy per retry count, shared by every wait instead of one per wait."""
    return RetryPolicy(max_attempts=max_attempts)


class SharedAsyncClient:
    """A shared async client plus a semaphore bounding its in-flight requests.

    Why shared: creating a client builds an SSL context (~20 ms CPU); the triggerer polls
    hundreds of generations, so one client per event loop and connection settings is reused by
    every trigger. Why bounded: with 1,000 concurrent pollers an unbounded pool raises
    ``PoolTimeout`` (and httpcore's pool walks every queued request on each change); waiting on
    the semaphore instead queues them fairly. Why aiohttp: a third of the CPU per poll of the
    httpx client (``kling_provider._runtime.aiohttp_client``); an explicit ``transport`` (tests) keeps httpx.
    """

    def __init__(self, settings: KlingConnectionSettings,
                 transport: httpx.AsyncBaseTransport | None) -> None:
        self.client: AsyncSender
        if transport is None:
            self.client = _aiohttp.AiohttpSender(
                settings.base_url, timeout=settings.timeout,
                connect_timeout=settings.connect_timeout,
                max_connections=settings.max_concurrency, user_agent=USER_AGENT)
        else:
            limits = httpx.Limits(max_connections=settings.max_concurrency,
                                  max_keepalive_connections=settings.max_concurrency)
            self.client = httpx.AsyncClient(base_url=settings.base_url,
                                            timeout=settings.httpx_timeout, limits=limits,
                                            transport=transport,
                                            headers={"User-Agent": USER_AGENT})
        self.slots = asyncio.Semaphore(settings.max_concurrency)


#: Live model timings, per process: every wait of a triggerer shares one lookup per model.
TIMINGS = _timings.MetricsCache()

#: Connection settings, per process: every wait of a triggerer shares one lookup per connection.
CONNECTIONS: _connections.ConnectionCache[KlingConnectionSettings] = _connections.ConnectionCache()

#: The shared async clients of each event loop, by the settings that shape them.
ASYNC_CLIENTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop,
                                         dict[tuple[Any, ...], SharedAsyncClient]] = (
    weakref.WeakKeyDictionary()
)


def shared_async_client(settings: KlingConnectionSettings,
                        transport: httpx.AsyncBaseTransport | None) -> SharedAsyncClient:
    """The running loop's client for ``settings`` (and ``transport``), made on first use."""
    per_loop = ASYNC_CLIENTS.setdefault(asyncio.get_running_loop(), {})
    key = (settings.base_url, settings.timeout, settings.connect_timeout,
           settings.max_concurrency, id(transport))
    shared = per_loop.get(key)
    if shared is None or shared.client.is_closed:
        shared = per_loop[key] = SharedAsyncClient(settings, transport)
    return shared


async def aclose_shared_clients() -> None:
    """Close the shared async clients of the running loop (tests and orderly shutdowns)."""
    clients = ASYNC_CLIENTS.pop(asyncio.get_running_loop(), {})
    for shared in clients.values():
        await shared.client.aclose()


# -- drivers: the only sync/async-specific code --------------------------------------------------

class _Done(NamedTuple):
    """What a step generator returned."""

    value: Any


def _advance(steps: Steps, reply: Any) -> Step | _Done:
    """Send ``reply`` in; the generator's next step, or what it returned."""
    try:
        return steps.send(reply)
    except StopIteration as done:
        return _Done(done.value)


def run(steps: Steps, sender: Sender, settings: KlingConnectionSettings, clock: Clock) -> Any:
    """Drive ``steps`` to their result on a worker: requests through ``sender``, blocking sleeps."""
    step = _advance(steps, None)
    while not isinstance(step, _Done):
        reply: Any = None
        if isinstance(step, ApiRequest):
            try:
                reply = sender.request(step.method, step.path, params=step.params,
                                       json=step.json, headers=settings.headers_for(step))
            except httpx.RequestError as exc:  # incl. undecodable answers
                reply = exc
        else:
            clock.sleep(step)
        step = _advance(steps, reply)
    return step.value


def arun(steps: Steps, settings: KlingConnectionSettings, clock: Clock,
         transport: httpx.AsyncBaseTransport | None) -> Coroutine[Any, Any, Any]:
    """Drive ``steps`` on the loop's shared client (to await).

    A triggerer holds thousands of these between polls, and CPython's full garbage collection
    walks every object they hold, and runs when enough objects survived the young collections:
    so nothing of the last answer is kept across a sleep, and the real clock's sleeps are
    entries of one timer per loop, not objects per sleep (:mod:`kling_provider._runtime.driving`;
    ``benchmarks/triggerer.py`` measures the pause and the lag). Not a coroutine itself: one
    object fewer per waiting trigger.
    """
    return _driving.drive(steps, _asend, (shared_async_client(settings, transport), settings),
                          None if type(clock) is SystemClock else clock.asleep)


async def _asend(on: tuple[SharedAsyncClient, KlingConnectionSettings], step: ApiRequest) -> Any:
    """One request step on the shared client with the settings' key; a transport error is
    returned (the steps decide on it), anything else raised."""
    shared, settings = on
    try:
        async with shared.slots:
            return await shared.client.request(
                step.method, step.path, params=step.params, json=step.json,
                headers=settings.headers_for(step))
    except httpx.RequestError as exc:  # incl. undecodable answers
        return exc
