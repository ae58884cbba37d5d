"""The async driver of the step generators: one timer per event loop for every sleeping wait.

Used by :meth:`KlingHook._arun <kling_provider.hooks.kling.KlingHook>` (every async call: the
trigger's wait, the async create and lookups). Stdlib only.

Why not a coroutine that sleeps between steps: a triggerer holds thousands of waits, and every
``asyncio.sleep`` makes a coroutine, a future, a timer handle, its arguments, a copy of the
context and the task's wake-up callback, all alive for the whole gap between two polls. They
outlive the young collections, so each poll promoted about seven objects to CPython's oldest
generation, and 5,000 waits at 500 polls/s set off a full collection (0.3-0.4 s, walking every
tracked object of the process) about every 20 s: the steady lag of a triggerer
(``benchmarks/triggerer.py``).

Here a drive is one future awaited for its whole life. Between polls it is an entry in its
loop's :class:`Timetable`: a ``(time, number)`` pair (untracked by the collector once it has
seen it) and the number's slot in a dict, both made per sleep but never tracked objects that
survive it. Each request runs in a task that ends with the poll, so what a poll makes dies
young. Each drive's steps run in a copy of its caller's context, made once: Airflow's triggerer
routes a trigger's log lines by context variables bound in its task.
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import itertools
import math
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, Generic, TypeVar

T = TypeVar("T")
Request = Any
#: Sends one request step: ``send(args, step)`` returns what the generator is sent back (an
#: answer or a transport error); anything it raises ends the drive with that error, as it would
#: end a coroutine. A plain function and its arguments, not a closure: one object per drive.
Send = Callable[[Any, Request], Awaitable[Any]]
Sleep = Callable[[float], Awaitable[None]]

#: Timers fire this early at most (asyncio runs a timer once it is due within the clock's
#: resolution), so a due entry is never missed by a hair and re-armed for the same instant.
RESOLUTION = time.get_clock_info("monotonic").resolution
#: The timer's own callbacks need no context variables; one empty context instead of a copy each.
_TIMER_CONTEXT = contextvars.Context()


class Timetable(Generic[T]):
    """Items due at times, earliest first (ties in the order added); pure, no clock of its own."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int]] = []
        self._items: dict[int, T] = {}
        self._numbers = itertools.count()

    def __len__(self) -> int:
        return len(self._items)

    def add(self, when: float, item: T) -> int:
        """Schedule ``item`` at ``when``; return its number (for :meth:`discard`)."""
        number = next(self._numbers)
        heapq.heappush(self._heap, (when, number))
        self._items[number] = item
        return number

    def discard(self, number: int) -> None:
        """Forget an item (its heap entry is dropped when it comes up)."""
        self._items.pop(number, None)

    def next_at(self) -> float:
        """When the earliest item left is due (``inf``: none)."""
        while self._heap and self._heap[0][1] not in self._items:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else math.inf

    def pop_due(self, now: float) -> list[T]:
        """Remove and return the items due at ``now``, earliest first."""
        due = []
        while self._heap and self._heap[0][0] <= now:
            item = self._items.pop(heapq.heappop(self._heap)[1], None)
            if item is not None:
                due.append(item)
        return due


class _Drive:
    __slots__ = ("args", "context", "future", "pending", "send", "sleep", "steps")

    def __init__(self, steps: Generator[Any, Any, Any], send: Send, args: Any,
                 sleep: Sleep | None, future: asyncio.Future[Any]) -> None:
        self.steps = steps
        self.send = send
        self.args = args
        self.sleep = sleep
        self.future = future
        self.context = contextvars.copy_context()
        #: the timetable number while sleeping, the task while a request or a sleep runs
        self.pending: int | asyncio.Task[None] | None = None


class Driver:
    """Drives step generators on one event loop, with one timer for all their sleeps."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # A proxy: the registry of drivers is keyed weakly by the loop, which this must not pin.
        self._loop = weakref.proxy(loop)
        self._sleeping: Timetable[_Drive] = Timetable()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    async def drive(self, steps: Generator[Any, Any, T], send: Send, args: Any = None,
                    sleep: Sleep | None = None) -> T:
        """Run ``steps`` to its end: request steps through ``send(args, step)``, float steps slept
        (on the shared timer, or through ``sleep`` if given: fake clocks). Cancelled, it closes
        the generator and cancels what is in flight."""
        drive = _Drive(steps, send, args, sleep, self._loop.create_future())
        drive.context.run(self._advance, drive, None)
        try:
            return await drive.future  # type: ignore[no-any-return]
        finally:
            if drive.future.cancelled() or not drive.future.done():
                drive.future.cancel()
                self._stop(drive)

    def _advance(self, drive: _Drive, reply: Any) -> None:
        """Send ``reply`` in and start whatever the next step asks for (in the drive's context)."""
        if drive.future.done():
            return
        try:
            step = drive.steps.send(reply)
        except StopIteration as done:
            drive.future.set_result(done.value)
            return
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # the awaiting caller gets it, as from a coroutine
            self._fail(drive, exc)
            return
        if isinstance(step, (int, float)):
            if drive.sleep is None:
                when = self._loop.time() + step
                drive.pending = self._sleeping.add(when, drive)
                if when < self._timer_at:
                    self._arm(when)
                return
            # Tasks copy the context they are made in, which here is always the drive's (3.10
            # has no ``context=``).
            drive.pending = self._loop.create_task(self._slept(drive, step))
        else:
            drive.pending = self._loop.create_task(self._request(drive, step))

    async def _request(self, drive: _Drive, step: Request) -> None:
        try:
            reply = await drive.send(drive.args, step)
        except BaseException as exc:  # not a transport error: it ends the drive
            self._fail(drive, exc)
            return
        drive.pending = None
        self._advance(drive, reply)

    async def _slept(self, drive: _Drive, seconds: float) -> None:
        try:
            await drive.sleep(seconds)  # type: ignore[misc]  # only a drive with a sleep gets here
        except BaseException as exc:
            self._fail(drive, exc)
            return
        drive.pending = None
        self._advance(drive, None)

    def _fail(self, drive: _Drive, exc: BaseException) -> None:
        if drive.future.done():
            return
        if isinstance(exc, asyncio.CancelledError):
            drive.future.cancel()
        else:
            drive.future.set_exception(exc)

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self._loop.call_at(when, self._fire, context=_TIMER_CONTEXT)

    def _fire(self) -> None:
        self._timer, self._timer_at = None, math.inf
        for drive in self._sleeping.pop_due(self._loop.time() + RESOLUTION):
            drive.pending = None
            drive.context.run(self._advance, drive, None)
        next_at = self._sleeping.next_at()
        if next_at < self._timer_at:
            self._arm(next_at)

    def _stop(self, drive: _Drive) -> None:
        pending, drive.pending = drive.pending, None
        if isinstance(pending, int):
            self._sleeping.discard(pending)
            if not self._sleeping and self._timer is not None:  # nothing left to wake
                self._timer.cancel()
                self._timer, self._timer_at = None, math.inf
        elif pending is not None:
            pending.cancel()
        drive.steps.close()  # a cancelled drive's generator, suspended at its last step


_DRIVERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Driver] = weakref.WeakKeyDictionary()


def drive(steps: Generator[Any, Any, T], send: Send, args: Any = None,
          sleep: Sleep | None = None) -> Coroutine[Any, Any, T]:
    """:meth:`Driver.drive` on the running loop's driver (to await: no coroutine of its own)."""
    loop = asyncio.get_running_loop()
    driver = _DRIVERS.get(loop)
    if driver is None:
        driver = _DRIVERS[loop] = Driver(loop)
    return driver.drive(steps, send, args, sleep)
