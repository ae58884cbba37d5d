"""``KlingHook``: the Airflow connection to the AI/ML API's Kling video models.

Workers use the sync methods (``create_generation``, ``wait_for_generation``, ``download_video``),
the triggerer the async twins (``acreate_generation``, ``aget_generation``,
``await_for_generation``). A thin front: each method runs the steps :mod:`kling_provider._runtime.calls`
builds (all request, retry and error logic) with the drivers of :mod:`kling_provider._runtime.client`; the
connection part is :class:`~kling_provider.hooks._base.KlingConnectionHook`, the money part
(estimate, balance, guard, the key's spend) :class:`~kling_provider.hooks._spending.SpendingHook`.

Connection (``conn_type="kling"``): password = API key; host = API base URL (default
``https://api.aimlapi.com``, a scheme-less host means https); extras: ``endpoint_family``
(``legacy`` | ``unified``), ``timeout``, ``connect_timeout``, ``max_retries``, ``max_concurrency``,
``live_timings`` (default true: read ``/models/metrics`` to place adaptive polls),
``allow_private_hosts`` (private addresses downloads may reach besides the API host's),
``budget_usd``, ``budget_period`` (``day`` | ``week`` | ``month``) and ``on_unknown_spend``
(``fail`` | ``warn``): a budget across runs (docs/spend.rst).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kling_provider import DEFAULT_CONN_ID, _endpoints
from kling_provider._checks import wait_seconds
from kling_provider._models import feeds as _feeds
from kling_provider._models import retirement as _retirement
from kling_provider._runtime import calls as _calls
from kling_provider._runtime.client import (
    DEFAULT_HOST,
    USER_AGENT,
    Clock,
    KlingConnectionSettings,
    SystemClock,
    aclose_shared_clients,
)
from kling_provider._storage import download as _download
from kling_provider._task import submission as _submission
from kling_provider._wait import timings as _timings
from kling_provider._wait.schedule import DEFAULT_POLL_INTERVAL, PollSchedule, PollScheduleKind
from kling_provider.catalogue import PreparedRequest, get_model, prepare_request
from kling_provider.hooks._spending import SpendingHook
from kling_provider.types import Generation

# Where users and the API reference find them.
__all__ = ["DEFAULT_HOST", "MODELS_PATH", "USER_AGENT", "Clock", "KlingConnectionSettings",
           "KlingHook", "SystemClock", "aclose_shared_clients"]

#: The model list (``?include=pricing`` adds prices); needs no API key.
MODELS_PATH = _endpoints.path("models")


class KlingHook(SpendingHook):
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

    # -- API ---------------------------------------------------------------------------------

    def prepare_request(self, model: str, params: Mapping[str, Any] | None = None, *,
                        extra_params: Mapping[str, Any] | None = None,
                        endpoint_family: str | None = None,
                        allow_unknown_model: bool = False) -> PreparedRequest:
        """Validate a create request against the catalogue; no network. A model the catalogue
        lacks is checked as the catalogue model the cached deprecation feed of this connection's
        API maps it to (an alias, a superseded id), and a withdrawn one is refused."""
        family = endpoint_family or self.settings.endpoint_family
        known_as = None
        if get_model(model) is None:  # the cached feed only: no request (it is only validation)
            entry, known_as = _feeds.resolve(model, self.settings.base_url)
            _retirement.refuse_withdrawn(model, entry,
                                         f"cached deprecation feed of {self.settings.base_url}")
        return prepare_request(model, params or {}, family=family, extra_params=extra_params,
                               allow_unknown_model=allow_unknown_model, known_as=known_as)

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
        prepared = self.prepare_request(model, params, extra_params=extra_params,
                                        endpoint_family=endpoint_family,
                                        allow_unknown_model=allow_unknown_model)
        steps = self._calls_for(settings).create(prepared, client_request_id, self.log)
        return str(self._run(steps))

    def create_prepared(self, prepared: PreparedRequest, *,
                        client_request_id: str | None = None) -> str:
        """POST a request :meth:`prepare_request` validated, as it is; return the generation id.

        For callers that validated before paying and must send exactly what they checked.
        """
        steps = self._calls_for(self.settings).create(prepared, client_request_id, self.log)
        return str(self._run(steps))

    async def acreate_generation(self, model: str, *,
                                 extra_params: Mapping[str, Any] | None = None,
                                 endpoint_family: str | None = None,
                                 allow_unknown_model: bool = False,
                                 client_request_id: str | None = None, **params: Any) -> str:
        """Async twin of :meth:`create_generation`."""
        settings = await self.asettings()
        prepared = self.prepare_request(model, params, extra_params=extra_params,
                                        endpoint_family=endpoint_family,
                                        allow_unknown_model=allow_unknown_model)
        steps = self._calls_for(settings).create(prepared, client_request_id, self.log)
        return str(await self._arun(steps))

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
        row: _submission.LogRow | None = self._run(self._calls_for(self.settings).find(
            client_request_id, model=model, since=since, deadline=deadline,
            poll_interval=poll_interval, match=match))
        return row

    async def afind_generation(self, client_request_id: str | None = None, *, model: str,
                               since: float, deadline: float | None = None,
                               poll_interval: float = 10.0,
                               match: _submission.Match | None = None
                               ) -> _submission.LogRow | None:
        """Async twin of :meth:`find_generation` (the recovery trigger's wait)."""
        row: _submission.LogRow | None = await self._arun(self._calls_for(await self.asettings()).find(
            client_request_id, model=model, since=since, deadline=deadline,
            poll_interval=poll_interval, match=match))
        return row

    def get_generation(self, generation_id: str, *, endpoint_family: str | None = None
                       ) -> Generation:
        """Fetch a generation's current state (retried on transient faults)."""
        generation: Generation = self._run(
            self._calls_for(self.settings).fetch(generation_id, endpoint_family))
        return generation

    async def aget_generation(self, generation_id: str, *, endpoint_family: str | None = None
                              ) -> Generation:
        """Async twin of :meth:`get_generation`."""
        generation: Generation = await self._arun(
            self._calls_for(await self.asettings()).fetch(generation_id, endpoint_family))
        return generation

    def expected_duration(self, model: str | None, duration: int | None = None
                          ) -> _timings.Expectation:
        """When a generation of ``model`` should finish: live figures (cached), else documented."""
        expectation: _timings.Expectation = self._run(
            self._calls_for(self.settings).expectation(model, duration))
        return expectation

    def wait_schedule(self, generation_id: str, *, poll_schedule: PollScheduleKind,
                      started_at: float, poll_interval: float, model: str | None = None,
                      duration: int | None = None) -> PollSchedule:
        """When to poll ``generation_id`` (the sensor's ``poke`` and ``reschedule`` modes): the
        schedule the trigger and :meth:`wait_for_generation` follow."""
        schedule: PollSchedule = self._run(self._calls_for(self.settings).schedule(
            generation_id, poll_schedule=poll_schedule, started_at=started_at,
            poll_interval=poll_interval, model=model, duration=duration))
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
            finish, see :mod:`kling_provider._wait.schedule`) or ``fixed`` (every ``poll_interval``).
        :param submitted_at: epoch seconds of the submission (default: now); adaptive polls
            count from it.
        :param model: the generation's model (default: the one its id names), which places the
            adaptive polls.
        :param duration: the generation's video length, which places them too.
        """
        deadline = self.clock.now() + wait_seconds("timeout", timeout)
        schedule = _calls.schedule_args(poll_schedule, submitted_at, model, duration)
        generation: Generation = self._run(self._calls_for(self.settings).wait(
            generation_id, poll_interval, deadline, endpoint_family, schedule))
        return generation

    async def await_for_generation(self, generation_id: str, *,
                                   poll_interval: float = DEFAULT_POLL_INTERVAL,
                                   deadline: float, endpoint_family: str | None = None,
                                   poll_schedule: PollScheduleKind = "adaptive",
                                   submitted_at: float | None = None, model: str | None = None,
                                   duration: int | None = None) -> Generation:
        """Async twin of :meth:`wait_for_generation`, bounded by an absolute epoch ``deadline``."""
        settings = await self.asettings()
        schedule = _calls.schedule_args(poll_schedule, submitted_at, model, duration)
        generation: Generation = await self._arun(self._calls_for(settings).wait(
            generation_id, poll_interval, deadline, endpoint_family, schedule))
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
