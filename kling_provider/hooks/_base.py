"""The hook's link to its Airflow connection: settings, clients, and the drivers that run steps.

:class:`~kling_provider.hooks.kling.KlingHook` builds on it and adds the methods users call; this
base holds what every one of them needs (the connection's settings, loaded once, the worker's
client, the choice of driver) and what Airflow asks of a hook's connection (its form, its test),
and the one read about the connection's service rather than a generation: whether a model is
retiring (:meth:`KlingConnectionHook.check_model`).
The machinery itself (settings, clock, drivers, shared clients) is :mod:`kling_provider._runtime.client`.
"""

from __future__ import annotations

from typing import Any

import httpx
from airflow.sdk import BaseHook

from kling_provider import CONNECTION_FIELD_BEHAVIOUR, DEFAULT_CONN_ID
from kling_provider._api import protocol as _protocol
from kling_provider._models.retirement import Retirement
from kling_provider._runtime import calls as _calls
from kling_provider._runtime import client as _client
from kling_provider._runtime.client import Clock, KlingConnectionSettings, SystemClock
from kling_provider._task.submission import SHARED_LOGS_BUDGET, RateBudget
from kling_provider.exceptions import KlingError


class KlingConnectionHook(BaseHook):
    """A Kling connection, its settings and clients (the parameters: see ``KlingHook``)."""

    def __init__(
        self,
        kling_conn_id: str = DEFAULT_CONN_ID,
        *,
        clock: Clock | None = None,
        retry_policy: _protocol.RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
        logs_budget: RateBudget | None = None,
    ) -> None:
        super().__init__()
        self._logs_budget = logs_budget or SHARED_LOGS_BUDGET
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
            self._settings = _client.load_settings(self.get_connection(self.kling_conn_id))
        return self._settings

    async def asettings(self) -> KlingConnectionSettings:
        """Connection settings without blocking the loop: one lookup per connection and process,
        shared by every wait and refreshed in the background (:mod:`kling_provider._runtime.connections`)."""
        if self._settings is None:
            self._settings = await _client.CONNECTIONS.get(self.kling_conn_id, self._alookup)
        return self._settings

    async def _alookup(self) -> KlingConnectionSettings:
        return await _client.aload_settings(await self.aget_connection(self.kling_conn_id))

    def get_conn(self) -> httpx.Client:
        """The hook's sync client (one per hook, keep-alive across polls)."""
        if self._client is None:
            self._client = self.settings.sync_client(self._transport)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _calls_for(self, settings: KlingConnectionSettings) -> _calls.Calls:
        policy = self._retry_policy or _client.default_policy(settings.max_retries)
        return _calls.Calls(settings, self.clock, policy, self._logs_budget)

    def _run(self, steps: _protocol.Steps) -> Any:
        return _client.run(steps, self.get_conn(), self.settings, self.clock)

    async def _arun(self, steps: _protocol.Steps) -> Any:
        return await _client.arun(steps, await self.asettings(), self.clock,
                                  self._async_transport)

    def test_connection(self) -> tuple[bool, str]:
        """Probe the fetch endpoint with a made-up id: authenticated, free, and creates nothing."""
        try:
            result: tuple[bool, str] = self._run(self._calls_for(self.settings).probe())
        except KlingError as exc:  # a bad extra, no key
            return False, str(exc)
        return result

    def check_model(self, model: str) -> Retirement | None:
        """Before paying: ``model``'s entry in the API's deprecation feed, or ``None``.

        The feed is read at most once a day per API base URL (and kept on disk for other
        processes); an unreadable feed never blocks. A ``deprecated`` model is logged as a
        warning with its shutdown date and replacement, a ``superseded`` one noted with the id
        the API runs it as, both counted (``kling.model.retiring``); a ``withdrawn`` one raises
        :class:`~kling_provider.exceptions.KlingModelWithdrawnError`.
        """
        entry: Retirement | None = self._run(
            self._calls_for(self.settings).check_model(model, self.log))
        return entry
