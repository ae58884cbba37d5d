"""``KlingHook``: the Airflow connection to the AI/ML API's Kling video models.

Workers use the sync methods (``create_generation``, ``wait_for_generation``, ``download_video``),
the triggerer the async twins (``acreate_generation``, ``aget_generation``,
``await_for_generation``). Both are thin drivers over the same step generators in
:mod:`kling_provider._protocol`, which hold all request building, retry and error logic.

Connection (``conn_type="kling"``): password = API key; host = API base URL (default
``https://api.aimlapi.com``, a scheme-less host means https); extras: ``endpoint_family``
(``legacy`` | ``unified``), ``timeout``, ``connect_timeout``, ``max_retries``, ``max_concurrency``,
``live_timings`` (default true: read ``/models/metrics`` to place adaptive polls),
``allow_private_hosts`` (private addresses downloads may reach besides the API host's).
"""

from __future__ import annotations

import asyncio
import functools
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import httpx
from airflow.sdk import BaseHook

from kling_provider import (
    CONNECTION_FIELD_BEHAVIOUR,
    DEFAULT_CONN_ID,
    _aiohttp,
    _answers,
    _connections,
    _download,
    _endpoints,
    _guard,
    _hosts,
    _network,
    _pricing,
    _protocol,
    _submission,
    _timings,
    _waiting,
)
from kling_provider._checks import wait_seconds
from kling_provider._schedule import DEFAULT_POLL_INTERVAL, PollScheduleKind, check_poll_schedule
from kling_provider._spend import format_usd as _spend_format_usd
from kling_provider.catalogue import PreparedRequest, endpoint_family, prepare_request
from kling_provider.exceptions import KlingAuthenticationError, KlingError, KlingValidationError
from kling_provider.types import Generation

DEFAULT_HOST = "https://api.aimlapi.com"
#: The model list (``?include=pricing`` adds prices); needs no API key.
MODELS_PATH = _endpoints.path("models")
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
            except (TypeError, ValueError):
                result = None
            if result is None or result <= 0:
                raise KlingValidationError(
                    f"Invalid extra {name!r}={value!r} in connection {conn.conn_id!r}: must be a "
                    "positive number."
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
        )

    @property
    def httpx_timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.timeout, connect=self.connect_timeout)

    def auth_headers(self) -> dict[str, str]:
        if not self.api_key:
            raise KlingAuthenticationError(
                f"Connection {self.conn_id!r} has no API key: set its password (shown as "
                "'API Key' in the UI) to your AI/ML API key."
            )
        return {"Authorization": f"Bearer {self.api_key}"}


class _SharedAsyncClient:
    """A shared async client plus a semaphore bounding its in-flight requests.

    Why shared: creating a client builds an SSL context (~20 ms CPU); the triggerer polls
    hundreds of generations, so one client per event loop and connection settings is reused by
    every trigger. Why bounded: with 1,000 concurrent pollers an unbounded pool raises
    ``PoolTimeout`` (and httpcore's pool walks every queued request on each change); waiting on
    the semaphore instead queues them fairly. Why aiohttp: a third of the CPU per poll of the
    httpx client (``kling_provider._aiohttp``); an explicit ``transport`` (tests) keeps httpx.
    """

    def __init__(self, settings: KlingConnectionSettings,
                 transport: httpx.AsyncBaseTransport | None) -> None:
        self.client: httpx.AsyncClient | _aiohttp.AiohttpSender
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
_TIMINGS = _timings.MetricsCache()

#: Connection settings, per process: every wait of a triggerer shares one lookup per connection.
_CONNECTIONS: _connections.ConnectionCache[KlingConnectionSettings] = _connections.ConnectionCache()

_ASYNC_CLIENTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop,
                                          dict[tuple[Any, ...], _SharedAsyncClient]] = (
    weakref.WeakKeyDictionary()
)


async def aclose_shared_clients() -> None:
    """Close the shared async clients of the running loop (tests and orderly shutdowns)."""
    clients = _ASYNC_CLIENTS.pop(asyncio.get_running_loop(), {})
    for shared in clients.values():
        await shared.client.aclose()


@functools.lru_cache(maxsize=16)
def _default_policy(max_attempts: int) -> _protocol.RetryPolicy:
    """One frozen policy per retry count, shared by every wait instead of one per wait."""
    return _protocol.RetryPolicy(max_attempts=max_attempts)


def _exact(client_request_id: str | None) -> _submission.Match:
    if not client_request_id:
        raise KlingValidationError(
            "Invalid parameter 'client_request_id'=None: give the id the create request was "
            "sent with.")
    return lambda row: row.client_request_id == client_request_id


def _headers(settings: KlingConnectionSettings, step: _protocol.ApiRequest) -> dict[str, str]:
    """Authentication (unless the endpoint is keyless) over the request's own headers."""
    auth = settings.auth_headers() if step.authenticated else {}
    return {**(step.headers or {}), **auth}


class KlingHook(BaseHook):
    """Talk to Kling video models on the AI/ML API.

    :param kling_conn_id: Airflow connection of type ``kling``.
    :param clock: time source; tests pass a fake clock.
    :param retry_policy: override the connection's retry settings.
    :param transport: an httpx transport for the sync client, for tests with
        ``httpx.MockTransport``.
    :param async_transport: the same for the async client.
    :param logs_budget: the usage logs' rate budget; default: the one shared by the process.
    """

    conn_name_attr = "kling_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "kling"
    hook_name = "Kling (AI/ML API)"

    def __init__(
        self,
        kling_conn_id: str = default_conn_name,
        *,
        clock: Clock | None = None,
        retry_policy: _protocol.RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
        logs_budget: _submission.RateBudget | None = None,
    ) -> None:
        super().__init__()
        self._logs_budget = logs_budget or _submission.SHARED_LOGS_BUDGET
        self.kling_conn_id = kling_conn_id
        self.clock: Clock = clock or SystemClock()
        self._retry_policy = retry_policy
        self._transport = transport
        self._async_transport = async_transport
        self._settings: KlingConnectionSettings | None = None
        self._client: httpx.Client | None = None

    def __repr__(self) -> str:
        return f"KlingHook(kling_conn_id={self.kling_conn_id!r})"

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """The provider-info form in the hook-method spelling, for UIs that ask the hook."""
        return {key.replace("-", "_"): value for key, value in CONNECTION_FIELD_BEHAVIOUR.items()}

    # -- connection ------------------------------------------------------------------------

    @property
    def settings(self) -> KlingConnectionSettings:
        """Connection settings, loaded once (sync: use from workers, never from a trigger)."""
        if self._settings is None:
            settings = KlingConnectionSettings.from_connection(
                self.get_connection(self.kling_conn_id))
            if settings.api_key:
                from airflow.sdk.log import mask_secret

                mask_secret(settings.api_key)
            self._settings = settings
        return self._settings

    async def asettings(self) -> KlingConnectionSettings:
        """Connection settings without blocking the loop: one lookup per connection and process,
        shared by every wait and refreshed in the background (:mod:`kling_provider._connections`)."""
        if self._settings is None:
            self._settings = await _CONNECTIONS.get(self.kling_conn_id, self._alookup)
        return self._settings

    async def _alookup(self) -> KlingConnectionSettings:
        settings = KlingConnectionSettings.from_connection(
            await self.aget_connection(self.kling_conn_id))
        if settings.api_key:
            await _connections.amask(settings.api_key)
        return settings

    def _policy(self, settings: KlingConnectionSettings) -> _protocol.RetryPolicy:
        return self._retry_policy or _default_policy(settings.max_retries)

    def get_conn(self) -> httpx.Client:
        """The hook's sync client (one per hook, keep-alive across polls)."""
        if self._client is None:
            settings = self.settings
            self._client = httpx.Client(base_url=settings.base_url, timeout=settings.httpx_timeout,
                                        transport=self._transport,
                                        headers={"User-Agent": USER_AGENT})
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _async_client(self, settings: KlingConnectionSettings) -> _SharedAsyncClient:
        loop = asyncio.get_running_loop()
        per_loop = _ASYNC_CLIENTS.setdefault(loop, {})
        key = (settings.base_url, settings.timeout, settings.connect_timeout,
               settings.max_concurrency, id(self._async_transport))
        shared = per_loop.get(key)
        if shared is None or shared.client.is_closed:
            shared = per_loop[key] = _SharedAsyncClient(settings, self._async_transport)
        return shared

    # -- drivers: the only sync/async-specific code ------------------------------------------

    def _run(self, steps: _protocol.Steps) -> Any:
        settings = self.settings
        client = self.get_conn()
        reply: Any = None
        while True:
            try:
                step = steps.send(reply)
            except StopIteration as done:
                return done.value
            if isinstance(step, _protocol.ApiRequest):
                try:
                    reply = client.request(step.method, step.path, params=step.params,
                                           json=step.json, headers=_headers(settings, step))
                except httpx.RequestError as exc:  # incl. undecodable answers
                    reply = exc
            else:
                self.clock.sleep(step)
                reply = None

    async def _arun(self, steps: _protocol.Steps) -> Any:
        """Drive ``steps`` on the loop's shared client.

        A triggerer holds thousands of these between polls, and CPython's full garbage
        collection walks every object they hold: so nothing of the last answer is kept across a
        sleep, and the real clock sleeps without a coroutine of its own
        (``benchmarks/triggerer.py`` measures the pause).
        """
        settings = await self.asettings()
        shared = self._async_client(settings)
        sleep = asyncio.sleep if type(self.clock) is SystemClock else self.clock.asleep
        reply: Any = None
        while True:
            try:
                step = steps.send(reply)
            except StopIteration as done:
                return done.value
            reply = None
            if isinstance(step, _protocol.ApiRequest):
                try:
                    async with shared.slots:
                        reply = await shared.client.request(
                            step.method, step.path, params=step.params, json=step.json,
                            headers=_headers(settings, step))
                except httpx.RequestError as exc:  # incl. undecodable answers
                    reply = exc
            else:
                await sleep(step)

    # -- API ---------------------------------------------------------------------------------

    def prepare_request(self, model: str, params: Mapping[str, Any] | None = None, *,
                        extra_params: Mapping[str, Any] | None = None,
                        endpoint_family: str | None = None,
                        allow_unknown_model: bool = False) -> PreparedRequest:
        """Validate a create request against the catalogue; no network."""
        family = endpoint_family or self.settings.endpoint_family
        return prepare_request(model, params or {}, family=family, extra_params=extra_params,
                               allow_unknown_model=allow_unknown_model)

    def _create(self, settings: KlingConnectionSettings, model: str, params: Mapping[str, Any],
                extra_params: Mapping[str, Any] | None, family: str | None,
                allow_unknown_model: bool = False,
                client_request_id: str | None = None) -> _protocol.Steps:
        prepared = prepare_request(model, params, family=family or settings.endpoint_family,
                                   extra_params=extra_params,
                                   allow_unknown_model=allow_unknown_model)
        return self._create_prepared(settings, prepared, client_request_id)

    def _create_prepared(self, settings: KlingConnectionSettings, prepared: PreparedRequest,
                         client_request_id: str | None) -> _protocol.Steps:
        model = prepared.body.get("model")
        self.log.info("Creating a %s generation on the %s endpoint (client request id %s)",
                      model, prepared.family, client_request_id)
        return _protocol.create_steps(prepared.family, prepared.body, self._policy(settings),
                                      conn_id=settings.conn_id, secrets=(settings.api_key,),
                                      client_request_id=client_request_id)

    def create_generation(self, model: str, *, extra_params: Mapping[str, Any] | None = None,
                          endpoint_family: str | None = None, allow_unknown_model: bool = False,
                          client_request_id: str | None = None, **params: Any) -> str:
        """Validate, then POST a generation; return its id. The POST is never sent twice.

        An id the catalogue lacks is refused ("did you mean") unless ``allow_unknown_model``.
        ``client_request_id`` (1-128 chars of ``A-Za-z0-9._:-``) is sent as
        ``X-Client-Request-Id``: the usage logs then show it next to the generation id, which is
        how :meth:`find_generation` finds a generation whose create answer was lost.
        """
        settings = self.settings
        return str(self._run(self._create(settings, model, params, extra_params, endpoint_family,
                                          allow_unknown_model, client_request_id)))

    def create_prepared(self, prepared: PreparedRequest, *,
                        client_request_id: str | None = None) -> str:
        """POST a request :meth:`prepare_request` validated, as it is; return the generation id.

        For callers that validated before paying and must send exactly what they checked.
        """
        return str(self._run(self._create_prepared(self.settings, prepared, client_request_id)))

    async def acreate_generation(self, model: str, *,
                                 extra_params: Mapping[str, Any] | None = None,
                                 endpoint_family: str | None = None,
                                 allow_unknown_model: bool = False,
                                 client_request_id: str | None = None, **params: Any) -> str:
        """Async twin of :meth:`create_generation`."""
        settings = await self.asettings()
        return str(await self._arun(
            self._create(settings, model, params, extra_params, endpoint_family,
                         allow_unknown_model, client_request_id)))

    def _find(self, settings: KlingConnectionSettings, *, model: str, since: float,
              match: _submission.Match, deadline: float | None,
              poll_interval: float) -> _protocol.Steps:
        return _submission.recover_steps(
            model=model, since=since, match=match,
            deadline=self.clock.now() if deadline is None else deadline,
            interval=poll_interval, now=self.clock.now, policy=self._policy(settings),
            conn_id=settings.conn_id, budget=self._logs_budget, secrets=(settings.api_key,))

    def find_generation(self, client_request_id: str | None = None, *, model: str,
                        since: float, deadline: float | None = None, poll_interval: float = 10.0,
                        match: _submission.Match | None = None) -> _submission.LogRow | None:
        """Find the generation created with ``client_request_id`` in the usage logs.

        ``GET /v2/logs`` (filtered by ``model`` and by time from ``since``, epoch seconds, paged)
        lists a video once it has *finished*; so with an absolute ``deadline`` the lookup is
        repeated every ``poll_interval`` seconds until the row shows or the deadline passes
        (``None``: look once). Returns the row (``generation_id``, ``status``) or ``None``.
        Lookups of one process share the endpoint's rate limit (200 requests per 60 s).
        """
        settings = self.settings
        row: _submission.LogRow | None = self._run(self._find(
            settings, model=model, since=since, match=match or _exact(client_request_id),
            deadline=deadline, poll_interval=poll_interval))
        return row

    async def afind_generation(self, client_request_id: str | None = None, *, model: str,
                               since: float, deadline: float | None = None,
                               poll_interval: float = 10.0,
                               match: _submission.Match | None = None
                               ) -> _submission.LogRow | None:
        """Async twin of :meth:`find_generation` (the recovery trigger's wait)."""
        settings = await self.asettings()
        row: _submission.LogRow | None = await self._arun(self._find(
            settings, model=model, since=since, match=match or _exact(client_request_id),
            deadline=deadline, poll_interval=poll_interval))
        return row

    def _fetch(self, settings: KlingConnectionSettings, generation_id: str,
               family: str | None) -> _protocol.Steps:
        return _protocol.fetch_steps(family or settings.endpoint_family, generation_id,
                                     self._policy(settings), conn_id=settings.conn_id,
                                     secrets=(settings.api_key,))

    def get_generation(self, generation_id: str, *, endpoint_family: str | None = None
                       ) -> Generation:
        """Fetch a generation's current state (retried on transient faults)."""
        generation: Generation = self._run(
            self._fetch(self.settings, generation_id, endpoint_family))
        return generation

    async def aget_generation(self, generation_id: str, *, endpoint_family: str | None = None
                              ) -> Generation:
        """Async twin of :meth:`get_generation`."""
        settings = await self.asettings()
        generation: Generation = await self._arun(
            self._fetch(settings, generation_id, endpoint_family))
        return generation

    def _wait(self, settings: KlingConnectionSettings, generation_id: str, poll_interval: float,
              deadline: float, family: str | None, schedule: dict[str, Any]) -> _protocol.Steps:
        return _waiting.wait_steps(
            family or settings.endpoint_family, generation_id, poll_interval=poll_interval,
            deadline=deadline, now=self.clock.now, policy=self._policy(settings),
            conn_id=settings.conn_id, secrets=(settings.api_key,), timings=_TIMINGS,
            live_timings=settings.live_timings, **schedule)

    def expected_duration(self, model: str | None, duration: int | None = None
                          ) -> _timings.Expectation:
        """When a generation of ``model`` should finish: live figures (cached), else documented."""
        settings = self.settings
        expectation: _timings.Expectation = self._run(_waiting.expectation_steps(
            model, duration, _TIMINGS, now=self.clock.now, conn_id=settings.conn_id,
            live=settings.live_timings))
        return expectation

    def wait_for_generation(self, generation_id: str, *,
                            poll_interval: float = DEFAULT_POLL_INTERVAL,
                            timeout: float = 1800.0, endpoint_family: str | None = None,
                            poll_schedule: PollScheduleKind = "adaptive",
                            submitted_at: float | None = None, model: str | None = None,
                            duration: int | None = None) -> Generation:
        """Poll until completed (returned), failed (raised) or ``timeout`` seconds pass (raised).

        :param poll_interval: the longest gap between two polls.
        :param poll_schedule: ``adaptive`` (default: polls placed around when ``model`` should
            finish, see :mod:`kling_provider._schedule`) or ``fixed`` (every ``poll_interval``).
        :param submitted_at: epoch seconds of the submission (default: now); adaptive polls
            count from it.
        :param model: the generation's model (default: the one its id names), which places the
            adaptive polls.
        :param duration: the generation's video length, which places them too.
        """
        deadline = self.clock.now() + wait_seconds("timeout", timeout)
        schedule = _schedule_args(poll_schedule, submitted_at, model, duration)
        generation: Generation = self._run(self._wait(
            self.settings, generation_id, poll_interval, deadline, endpoint_family, schedule))
        return generation

    async def await_for_generation(self, generation_id: str, *,
                                   poll_interval: float = DEFAULT_POLL_INTERVAL,
                                   deadline: float, endpoint_family: str | None = None,
                                   poll_schedule: PollScheduleKind = "adaptive",
                                   submitted_at: float | None = None, model: str | None = None,
                                   duration: int | None = None) -> Generation:
        """Async twin of :meth:`wait_for_generation`, bounded by an absolute epoch ``deadline``."""
        settings = await self.asettings()
        schedule = _schedule_args(poll_schedule, submitted_at, model, duration)
        generation: Generation = await self._arun(self._wait(
            settings, generation_id, poll_interval, deadline, endpoint_family, schedule))
        return generation

    def download_video(self, video_url: str, destination: Any, *,
                       expected_size: int | None = None, file_name: str | None = None,
                       generation_id: str | None = None, overwrite: bool = False,
                       max_bytes: int | None = None,
                       verify_mp4: bool = True) -> _download.DownloadResult:
        """Stream a video to a local path or ``ObjectStoragePath`` atomically; see ``_download``.

        ``generation_id`` names the video: a folder destination (trailing ``/``) stores it as
        ``<generation uuid>.mp4``, and an existing file is kept only if it holds this video.
        """
        settings = self.settings
        headers = settings.auth_headers() if settings.api_key else {}
        policy = settings.download_hosts
        # Its own client: its transport (shared per process, never closed here) refuses the
        # addresses the policy does not allow.
        client = httpx.Client(timeout=settings.httpx_timeout, headers={"User-Agent": USER_AGENT},
                              transport=self._transport or _hosts.guarded_transport(policy))
        return _download.download(
            client, video_url, destination, auth_headers=headers,
            api_url=settings.base_url, expected_size=expected_size, file_name=file_name,
            generation_id=generation_id, overwrite=overwrite, max_bytes=max_bytes,
            verify_mp4=verify_mp4, sleep=self.clock.sleep, hosts=policy,
        )

    # -- spend -------------------------------------------------------------------------------

    def estimate_price(self, model: str, body: Mapping[str, Any]) -> _pricing.PriceEstimate:
        """Estimate one generation's price for a create ``body`` (as sent); never raises for an
        unknown price (``usd`` is ``None`` then, with the reason in ``basis``)."""
        listing, source = self._price_list(model)
        return _pricing.estimate_price(model, _pricing.find_pricing(listing, model),
                                       _pricing.request_as_sent(model, body), source=source)

    def _price_list(self, model: str) -> tuple[Mapping[str, Any], str]:
        """The live model list for ``model`` (ETag-cached per process), else an empty list and why.

        No prices ship with the provider: a guessed fallback could let a limit pass a costly
        generation or block a cheap one. Without the live list the price is unknown, which warns
        and never blocks."""
        base_url = self.settings.base_url
        cache = _pricing.PRICE_LISTS
        try:
            response = self.get_conn().get(
                MODELS_PATH, params={"include": "pricing", "id": model},
                headers=cache.conditional_headers(base_url, model))
        except httpx.TransportError as exc:
            problem = type(exc).__name__
        else:
            cached = cache.cached(base_url, model)
            if response.status_code == 304 and cached is not None:
                return cached, "live price list, unchanged (304)"
            listing = _answers.json_object(response) if response.is_success else None
            if listing is not None and _pricing.find_pricing(listing, model) is not None:
                cache.store(base_url, model, response.headers.get("etag"), listing)
                return listing, "live price list"
            problem = (f"HTTP {response.status_code}" if listing is None
                       else f"no price for {model} in it")
        return {}, f"the live price list of {base_url} could not be used: {problem}"

    def get_balance(self) -> float:
        """The account's balance in USD (``GET /v2/billing``)."""
        settings = self.settings
        return float(self._run(_guard.balance_steps(self._policy(settings),
                                                    conn_id=settings.conn_id,
                                                    secrets=(settings.api_key,))))

    def guard_spend(self, model: str, body: Mapping[str, Any], *,
                    max_cost_usd: float | None = None,
                    check_balance: bool = False) -> _pricing.PriceEstimate:
        """Estimate and log the price, then fail before any paid request when it exceeds
        ``max_cost_usd`` or (``check_balance``) the account balance. Unknown price: warn only."""
        estimate = self.estimate_price(model, body)
        if estimate.usd is None:
            self.log.warning(estimate.describe())
        else:
            self.log.info(estimate.describe())
        _guard.check_max_cost(estimate, max_cost_usd)
        if check_balance:
            balance = self.get_balance()
            self.log.info("Account balance: %s.", _spend_format_usd(balance))
            _guard.check_balance(balance, estimate, conn_id=self.settings.conn_id)
        return estimate

    def test_connection(self) -> tuple[bool, str]:
        """Probe the fetch endpoint with a made-up id: authenticated, free, and creates nothing."""
        try:
            settings = self.settings
            probe = replace(_protocol.build_fetch_request(settings.endpoint_family,
                                                          "airflow-connection-test"),
                            operation="probe")
            response = self.get_conn().get(probe.path, params=probe.params,
                                           headers=settings.auth_headers())
        except KlingError as exc:
            return False, str(exc)
        except httpx.TransportError as exc:
            return False, (f"Could not reach {self.settings.base_url} "
                           f"({type(exc).__name__}): {_network.transport_cause(exc)}")
        if response.status_code in (401, 403):
            error = _answers.error_for_response(probe, response, conn_id=settings.conn_id,
                                                secrets=(settings.api_key,))
            return False, str(error)
        if response.status_code >= 500:
            return False, f"The API at {settings.base_url} answered HTTP {response.status_code}."
        return True, (f"Connected to {settings.base_url}: API key accepted "
                      f"({settings.endpoint_family} endpoint).")


def _schedule_args(poll_schedule: str, submitted_at: float | None, model: str | None,
                   duration: int | str | None) -> dict[str, Any]:
    return {"poll_schedule": check_poll_schedule(poll_schedule), "started_at": submitted_at,
            "model": model, "duration": int(duration) if duration else None}
