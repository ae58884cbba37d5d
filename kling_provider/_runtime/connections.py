"""Connection settings shared by every wait of a process: one lookup per connection, refreshed.

Used by :meth:`KlingHook.asettings <kling_provider.hooks.kling.KlingHook.asettings>` (the
triggerer's path; a worker resolves its connection once per task). A triggerer taking over 5,000
Kling waits at once resolved the same connection 5,000 times: in a real triggerer each lookup is a
round trip to its supervisor, and Airflow's SDK re-reads its secrets-backend configuration on
each, about 0.7 ms of the event loop per lookup; with the waits' other start-up work that stalled
the loop for seconds (``benchmarks/triggerer.py``, the "all start at once" row).

:class:`ConnectionCache` keeps the last settings of each connection id for :data:`TTL` seconds:

- concurrent waits of a connection not yet resolved await the one lookup in flight (which a
  cancelled waiter does not cancel for the others);
- after :data:`TTL` the next wait still gets the settings it has at once, and starts one lookup
  in the background, so an edited connection (a rotated key) reaches new waits within about
  :data:`TTL` without any wait ever blocking on it; a refresh that fails keeps the last settings
  and is tried again one :data:`TTL` later;
- a first lookup that fails is not kept: the next wait tries again.

The values are the hook's ``KlingConnectionSettings``, whose ``repr`` leaves the key out; the
cache's own ``repr`` and log lines name connection ids only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

#: Seconds a connection's settings serve before the next wait refreshes them (in the background).
TTL = 60.0

T = TypeVar("T")
log = logging.getLogger("kling_provider")


class ConnectionCache(Generic[T]):
    """Settings per connection id, for every event loop of the process.

    :param ttl: seconds after a lookup when the next :meth:`get` starts a refresh.
    :param clock: monotonic seconds (tests pass a fake one; nothing here sleeps).
    """

    def __init__(self, ttl: float = TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._entries: dict[str, tuple[float, T]] = {}
        self._lookups: dict[str, asyncio.Task[T]] = {}

    def __repr__(self) -> str:
        return f"ConnectionCache(conn_ids={sorted(self._entries)!r}, ttl={self.ttl})"

    async def get(self, conn_id: str, lookup: Callable[[], Awaitable[T]]) -> T:
        """``conn_id``'s settings: cached, else from the lookup in flight, else from ``lookup()``."""
        entry = self._entries.get(conn_id)
        if entry is None:
            # shield: a waiter cancelled meanwhile (a killed task) leaves the lookup to the others
            return await asyncio.shield(self._lookup(conn_id, lookup))
        looked_up_at, settings = entry
        if self._clock() - looked_up_at >= self.ttl:
            self._lookup(conn_id, lookup)  # in the background: this wait goes on with `settings`
        return settings

    def forget(self) -> None:
        """Drop every entry (the next wait of each connection looks it up again)."""
        self._entries.clear()

    def _lookup(self, conn_id: str, lookup: Callable[[], Awaitable[T]]) -> asyncio.Task[T]:
        loop = asyncio.get_running_loop()
        task = self._lookups.get(conn_id)
        if task is None or task.done() or task.get_loop() is not loop:
            task = self._lookups[conn_id] = loop.create_task(self._store(conn_id, lookup))
            task.add_done_callback(self._settled)
        return task

    async def _store(self, conn_id: str, lookup: Callable[[], Awaitable[T]]) -> T:
        try:
            settings = await lookup()
        except Exception:
            if conn_id in self._entries:  # a refresh: keep what works, try again one TTL later
                self._entries[conn_id] = (self._clock(), self._entries[conn_id][1])
            raise
        self._entries[conn_id] = (self._clock(), settings)
        return settings

    def _settled(self, task: asyncio.Task[T]) -> None:
        for conn_id, pending in list(self._lookups.items()):
            if pending is task:
                del self._lookups[conn_id]
                if not task.cancelled() and task.exception() is not None:
                    # Read here so a background refresh's failure is never "never retrieved";
                    # the type only: an error's text is not ours to vouch for.
                    log.warning("Looking up connection %r failed (%s); its waits go on with the "
                                "settings they have, if any.", conn_id,
                                type(task.exception()).__name__)


async def amask(secret: str) -> None:
    """Mask the key in logs without blocking the loop (a second layer: Airflow's SDK already
    masks a connection's password when it loads it).

    ``mask_secret``'s blocking send to the supervisor can deadlock an event loop; Airflow 3.3
    added ``amask_secret`` for that. Older versions have no async variant: rely on the SDK's own
    masking there rather than block the triggerer.
    """
    try:
        # Airflow 3.2+ only: the ImportError below is the older versions
        from airflow.sdk.log import amask_secret
    except ImportError:
        return
    await amask_secret(secret)
