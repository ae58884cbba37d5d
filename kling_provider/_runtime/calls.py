"""The step generators behind the hook's methods, bound to one connection's settings.

A method of :class:`~kling_provider.hooks.kling.KlingHook` and its async twin differ only in the
driver that runs the steps (:func:`kling_provider._runtime.client.run` or
:func:`~kling_provider._runtime.client.arun`); what they run is built here, once for both, from
the connection's settings and the hook's own options (clock, retry policy, logs budget). Nothing
here sends a request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from kling_provider import metrics
from kling_provider._api import protocol as _protocol
from kling_provider._api import service as _service
from kling_provider._api.protocol import RetryPolicy, Steps
from kling_provider._models import feeds as _feeds
from kling_provider._models import retirement as _retirement
from kling_provider._money import pricing as _pricing
from kling_provider._runtime import client as _client
from kling_provider._runtime.client import Clock, KlingConnectionSettings
from kling_provider._task import submission as _submission
from kling_provider._wait import waiting as _waiting
from kling_provider._wait.schedule import PollScheduleKind, check_poll_schedule
from kling_provider.catalogue import PreparedRequest
from kling_provider.exceptions import KlingValidationError


class Log(Protocol):
    """The calls :meth:`Calls.create` and :meth:`Calls.check_model` make on the hook's logger
    (Airflow's or stdlib)."""

    def info(self, msg: str, /, *args: Any) -> Any: ...
    def log(self, level: int, msg: str, /, *args: Any) -> Any: ...


def exact(client_request_id: str | None) -> _submission.Match:
    """The usage-log rows of the create request sent with ``client_request_id``."""
    if not client_request_id:
        raise KlingValidationError(
            "Invalid parameter 'client_request_id'=None: give the id the create request was "
            "sent with.")
    return lambda row: row.client_request_id == client_request_id


def schedule_args(poll_schedule: str, submitted_at: float | None, model: str | None,
                  duration: int | str | None) -> dict[str, Any]:
    """A wait's schedule arguments, checked (before any request)."""
    return {"poll_schedule": check_poll_schedule(poll_schedule), "started_at": submitted_at,
            "model": model, "duration": int(duration) if duration else None}


@dataclass(frozen=True)
class Calls:
    """Builds each API call of one hook as steps, for either driver."""

    settings: KlingConnectionSettings
    clock: Clock
    policy: RetryPolicy
    logs_budget: _submission.RateBudget

    def create(self, prepared: PreparedRequest, client_request_id: str | None,
               log: Log) -> Steps:
        """The paid POST, announced in ``log`` (the hook's: a task log line before paying)."""
        log.info("Creating a %s generation on the %s endpoint (client request id %s)",
                 prepared.body.get("model"), prepared.family, client_request_id)
        create = _protocol.create_steps(
            prepared.family, prepared.body, self.policy, conn_id=self.settings.conn_id,
            secrets=self.settings.secrets, client_request_id=client_request_id)
        return _service.noting_retirement(
            create, self.retirement(str(prepared.body.get("model")), refresh=True))

    def find(self, client_request_id: str | None, *, model: str, since: float,
             deadline: float | None, poll_interval: float,
             match: _submission.Match | None) -> Steps:
        now = self.clock.now
        return _submission.recover_steps(
            model=model, since=since, match=match or exact(client_request_id),
            deadline=now() if deadline is None else deadline, interval=poll_interval, now=now,
            policy=self.policy, conn_id=self.settings.conn_id, budget=self.logs_budget,
            secrets=self.settings.secrets)

    def fetch(self, generation_id: str, family: str | None) -> Steps:
        return _protocol.fetch_steps(family or self.settings.endpoint_family, generation_id,
                                     self.policy, conn_id=self.settings.conn_id,
                                     secrets=self.settings.secrets)

    def wait(self, generation_id: str, poll_interval: float, deadline: float,
             family: str | None, schedule: dict[str, Any]) -> Steps:
        """Poll until done; ``schedule`` from :func:`schedule_args`."""
        settings = self.settings
        return _waiting.wait_steps(
            family or settings.endpoint_family, generation_id, poll_interval=poll_interval,
            deadline=deadline, now=self.clock.now, policy=self.policy, conn_id=settings.conn_id,
            secrets=settings.secrets, timings=_client.TIMINGS,  # read now: tests swap it
            live_timings=settings.live_timings, **schedule)

    def expectation(self, model: str | None, duration: int | None) -> Steps:
        return _waiting.expectation_steps(model, duration, _client.TIMINGS, now=self.clock.now,
                                          conn_id=self.settings.conn_id,
                                          live=self.settings.live_timings)

    def schedule(self, generation_id: str, *, poll_schedule: PollScheduleKind, started_at: float,
                 poll_interval: float, model: str | None, duration: int | None) -> Steps:
        return _waiting.schedule_steps(
            poll_schedule, generation_id, started_at=started_at, poll_interval=poll_interval,
            model=model, duration=duration, timings=_client.TIMINGS, now=self.clock.now,
            conn_id=self.settings.conn_id, live=self.settings.live_timings)

    def balance(self) -> Steps:
        return _service.balance_steps(self.policy, conn_id=self.settings.conn_id,
                                      secrets=self.settings.secrets)

    def check_model(self, model: str, log: Log) -> Steps:
        """Before paying: the model's feed entry, counted and logged (in the task log); a
        withdrawn model raises (:func:`kling_provider._models.retirement.verdict`)."""
        entry, source = yield from self.retirement(model)
        if entry is not None:
            metrics.model_retiring(model, entry.status)
            log.log(*_retirement.verdict(model, entry, source))
        return entry

    def retirement(self, model: str, *, refresh: bool = False) -> Steps:
        """The model's deprecation-feed entry and where it came from (the feed read at most
        daily per base URL; the caches are read and written here, the request is the steps')."""
        feeds, base_url = _feeds.FEEDS, self.settings.base_url  # read now: tests swap it
        entry, source, keep = yield from _service.retirement_steps(
            model, base_url, feeds.get(base_url), _feeds.shipped(), now=self.clock.now(),
            refresh=refresh)
        if keep is not None:
            feeds.store(keep)
        return entry, source

    def usage(self, window: str) -> Steps:
        return _service.usage_steps(window, self.policy, conn_id=self.settings.conn_id,
                                    secrets=self.settings.secrets)

    def usage_detail(self, start: str, end: str) -> Steps:
        return _service.usage_detail_steps(start, end, self.policy,
                                           conn_id=self.settings.conn_id,
                                           secrets=self.settings.secrets)

    def estimate(self, model: str, body: Mapping[str, Any]) -> Steps:
        return _service.estimate_steps(model, body, self.settings.base_url, _pricing.PRICE_LISTS)

    def probe(self) -> Steps:
        settings = self.settings
        return _service.probe_steps(settings.endpoint_family, settings.base_url,
                                    conn_id=settings.conn_id, secrets=settings.secrets)
