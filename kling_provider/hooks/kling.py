"""``KlingHook``: the Airflow connection to the AI/ML API's Kling video models.

Workers use the sync methods (``create_generation``, ``wait_for_generation``, ``download_video``),
the triggerer the async twins (``acreate_generation``, ``aget_generation``,
``await_for_generation``). The hook is a thin front: each method builds a step generator
(:mod:`kling_provider._protocol`, :mod:`kling_provider._waiting`, :mod:`kling_provider._submission`,
:mod:`kling_provider._service`), which hold all request building, retry and error logic, and runs
it with the drivers of :mod:`kling_provider._client` (connection settings, clock, clients).

Connection (``conn_type="kling"``): password = API key; host = API base URL (default
``https://api.aimlapi.com``, a scheme-less host means https); extras: ``endpoint_family``
(``legacy`` | ``unified``), ``timeout``, ``connect_timeout``, ``max_retries``, ``max_concurrency``,
``live_timings`` (default true: read ``/models/metrics`` to place adaptive polls),
``allow_private_hosts`` (private addresses downloads may reach besides the API host's).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
from airflow.sdk import BaseHook

from kling_provider import (
    CONNECTION_FIELD_BEHAVIOUR,
    DEFAULT_CONN_ID,
    _client,
    _connections,
    _download,
    _endpoints,
    _guard,
    _pricing,
    _protocol,
    _service,
    _submission,
    _timings,
    _waiting,
)
from kling_provider._checks import wait_seconds
from kling_provider._client import (
    DEFAULT_HOST,
    USER_AGENT,
    Clock,
    KlingConnectionSettings,
    SystemClock,
    aclose_shared_clients,
)
from kling_provider._schedule import (
    DEFAULT_POLL_INTERVAL,
    PollSchedule,
    PollScheduleKind,
    check_poll_schedule,
)
from kling_provider._spend import format_usd as _spend_format_usd
from kling_provider.catalogue import PreparedRequest, prepare_request
from kling_provider.exceptions import KlingError, KlingValidationError
from kling_provider.types import Generation

# Where users and the API reference find them; the connection's own machinery is in _client.
__all__ = ["DEFAULT_HOST", "MODELS_PATH", "USER_AGENT", "Clock", "KlingConnectionSettings",
           "KlingHook", "SystemClock", "aclose_shared_clients"]

#: The model list (``?include=pricing`` adds prices); needs no API key.
MODELS_PATH = _endpoints.path("models")


def _exact(client_request_id: str | None) -> _submission.Match:
    if not client_request_id:
        raise KlingValidationError(
            "Invalid parameter 'client_request_id'=None: give the id the create request was "
            "sent with.")
    return lambda row: row.client_request_id == client_request_id


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
            self._settings = await _client.CONNECTIONS.get(self.kling_conn_id, self._alookup)
        return self._settings

    async def _alookup(self) -> KlingConnectionSettings:
        settings = KlingConnectionSettings.from_connection(
            await self.aget_connection(self.kling_conn_id))
        if settings.api_key:
            await _connections.amask(settings.api_key)
        return settings

    def _policy(self, settings: KlingConnectionSettings) -> _protocol.RetryPolicy:
        return self._retry_policy or _client.default_policy(settings.max_retries)

    def get_conn(self) -> httpx.Client:
        """The hook's sync client (one per hook, keep-alive across polls)."""
        if self._client is None:
            self._client = self.settings.sync_client(self._transport)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _run(self, steps: _protocol.Steps) -> Any:
        return _client.run(steps, self.get_conn(), self.settings, self.clock)

    async def _arun(self, steps: _protocol.Steps) -> Any:
        return await _client.arun(steps, await self.asettings(), self.clock,
                                  self._async_transport)

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
                                      conn_id=settings.conn_id, secrets=settings.secrets,
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
            conn_id=settings.conn_id, budget=self._logs_budget, secrets=settings.secrets)

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
                                     secrets=settings.secrets)

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
            conn_id=settings.conn_id, secrets=settings.secrets, timings=_client.TIMINGS,
            live_timings=settings.live_timings, **schedule)

    def expected_duration(self, model: str | None, duration: int | None = None
                          ) -> _timings.Expectation:
        """When a generation of ``model`` should finish: live figures (cached), else documented."""
        settings = self.settings
        expectation: _timings.Expectation = self._run(_waiting.expectation_steps(
            model, duration, _client.TIMINGS, now=self.clock.now, conn_id=settings.conn_id,
            live=settings.live_timings))
        return expectation

    def wait_schedule(self, generation_id: str, *, poll_schedule: PollScheduleKind,
                      started_at: float, poll_interval: float, model: str | None = None,
                      duration: int | None = None) -> PollSchedule:
        """When to poll ``generation_id`` (the sensor's ``poke`` and ``reschedule`` modes): the
        schedule the trigger and :meth:`wait_for_generation` follow."""
        settings = self.settings
        schedule: PollSchedule = self._run(_waiting.schedule_steps(
            poll_schedule, generation_id, started_at=started_at, poll_interval=poll_interval,
            model=model, duration=duration, timings=_client.TIMINGS, now=self.clock.now,
            conn_id=settings.conn_id, live=settings.live_timings))
        return schedule

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
        return _download.download(
            settings.download_client(self._transport), video_url, destination,
            auth_headers=settings.auth_headers() if settings.api_key else {},
            api_url=settings.base_url, expected_size=expected_size, file_name=file_name,
            generation_id=generation_id, overwrite=overwrite, max_bytes=max_bytes,
            verify_mp4=verify_mp4, sleep=self.clock.sleep, hosts=settings.download_hosts,
        )

    # -- spend -------------------------------------------------------------------------------

    def estimate_price(self, model: str, body: Mapping[str, Any]) -> _pricing.PriceEstimate:
        """Estimate one generation's price for a create ``body`` (as sent) from the live model
        list; never raises for an unknown price (``usd`` is ``None`` then, with the reason in
        ``basis``)."""
        estimate: _pricing.PriceEstimate = self._run(_service.estimate_steps(
            model, body, self.settings.base_url, _pricing.PRICE_LISTS))
        return estimate

    def get_balance(self) -> float:
        """The account's balance in USD (``GET /v2/billing``)."""
        settings = self.settings
        return float(self._run(_service.balance_steps(
            self._policy(settings), conn_id=settings.conn_id, secrets=settings.secrets)))

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
            result: tuple[bool, str] = self._run(_service.probe_steps(
                settings.endpoint_family, settings.base_url, conn_id=settings.conn_id,
                secrets=settings.secrets))
        except KlingError as exc:  # a bad extra, no key
            return False, str(exc)
        return result


def _schedule_args(poll_schedule: str, submitted_at: float | None, model: str | None,
                   duration: int | str | None) -> dict[str, Any]:
    return {"poll_schedule": check_poll_schedule(poll_schedule), "started_at": submitted_at,
            "model": model, "duration": int(duration) if duration else None}
