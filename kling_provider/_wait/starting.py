"""How a Kling trigger starts in the triggerer's shared event loop: the hook imported once, off
the loop, and waits arriving together started spread out.

Used by :mod:`kling_provider.triggers.kling` at the top of each ``run()``. Stdlib only: Airflow
imports the trigger module (and so this one) inside the event loop every trigger shares.

A triggerer restart or a failover hand-over gives one triggerer thousands of waits in the same
instant. Each one's first step (the hook, its settings, the first poll) runs before it first
sleeps; run back to back, 5,000 of them kept the loop from every other trigger for seconds
(``benchmarks/triggerer.py``, the "all start at once" row). :class:`StartPacer` lets the first
:data:`BURST` start at once and the others at :data:`RATE` per second. Only the start moves:
where the polls fall is a function of the submission time and the generation id
(:mod:`kling_provider._wait.schedule`), so a handed-over wait resumes the same schedule.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import time
from collections.abc import Callable
from types import ModuleType

#: Waits that start at once without being spread.
BURST = 50
#: Waits started per second beyond the burst (5,000 waits: about 10 s). A start costs about a
#: poll (0.5-1 ms of the loop) and a fixed schedule polls right away: faster starts squeezed
#: each round of polls into half the interval and doubled the steady lag (benchmarks/triggerer.py).
RATE = 500.0


class StartPacer:
    """When each of the waits starting now may begin: a leaky bucket of start times.

    :param rate: starts per second once the burst is used up.
    :param burst: starts allowed at once.
    :param clock: monotonic seconds (tests pass a fake one; nothing here sleeps).
    """

    def __init__(self, rate: float = RATE, burst: int = BURST,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._next = float("-inf")  # when the bucket would be empty again

    def delay(self) -> float:
        """Seconds the wait starting now should wait before its first step (0: start now)."""
        now = self._clock()
        self._next = max(self._next, now)
        delay = max(0.0, self._next - now - self.burst / self.rate)
        self._next += 1 / self.rate
        return delay

    async def start(self) -> None:
        """Sleep until this wait's turn (not at all unless many waits start together)."""
        delay = self.delay()
        if delay > 0:
            await asyncio.sleep(delay)


#: One pacer per process: every Kling trigger of the triggerer draws from it.
PACER = StartPacer()
_IMPORTS: dict[str, asyncio.Future[ModuleType]] = {}


async def import_off_loop(name: str) -> ModuleType:
    """``name``, imported in a worker thread unless it already is: the loop runs on meanwhile.

    Waits that start together await the one import in flight: a module another thread is still
    importing is in ``sys.modules`` half-built, and touching it would block the loop on its
    import lock (or find names missing).
    """
    pending = _IMPORTS.get(name)
    if pending is None or pending.get_loop() is not asyncio.get_running_loop():
        module = sys.modules.get(name)
        if module is not None and not getattr(module.__spec__, "_initializing", False):
            return module
        pending = _IMPORTS[name] = asyncio.ensure_future(
            asyncio.to_thread(importlib.import_module, name))
        pending.add_done_callback(lambda _: _IMPORTS.pop(name, None))
    return await asyncio.shield(pending)
