"""Benchmark: what one shared timer per process would save against a sleeping chain per wait.

    flock /tmp/kling-heavy.lock .venv/bin/python benchmarks/timers.py [waits]

A Kling wait in the triggerer is a chain of coroutines (Airflow's task, the trigger's ``run()``,
the hook's driver) that sleeps between polls with ``asyncio.sleep``: per sleep a coroutine, a
future, a timer handle, its argument tuple and a copy of the context, all alive for the whole
gap, so they outlive the young collections and count towards the next full one. Two
alternatives, each in a fresh process with ``airflow.sdk`` imported (as in a triggerer), ``waits``
(default 5,000) chains of three coroutines, each waking once a second:

- ``lean sleep``: a bare future woken by ``call_later`` with a shared context (no coroutine, no
  context copy per sleep);
- ``shared timer``: one heap of futures per process and a single armed timer handle;
- ``kling driver``: what the provider does (``kling_provider._runtime.driving``): the chain awaits one
  future for its whole life, and its sleeps are numbers in one heap per loop.

Printed: tracked objects per sleeping wait (what every full collection walks), CPU per wake-up,
the full collections CPython ran during the three wake-ups of every wait (it runs one once the
objects surviving the young collections reach a quarter of the old ones: what a sleep leaves
alive sets their rate) and one full collection's pause. Numbers are printed, not asserted:
compare rows of one run.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import heapq
import itertools
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Generator
from typing import Any

KINDS = ("asyncio.sleep", "lean sleep", "shared timer", "kling driver")
CONTEXT = contextvars.Context()


def wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def lean_sleep(delay: float) -> asyncio.Future[None]:
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    loop.call_later(delay, wake, future, context=CONTEXT)
    return future


class SharedTimer:
    """Futures in one heap; one timer handle armed for the earliest."""

    def __init__(self) -> None:
        self.heap: list[tuple[float, int, asyncio.Future[None]]] = []
        self.order = itertools.count()
        self.armed: asyncio.TimerHandle | None = None

    def sleep(self, delay: float) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        heapq.heappush(self.heap, (loop.time() + delay, next(self.order), future))
        if self.armed is None or self.heap[0][2] is future:
            self.arm(loop)
        return future

    def arm(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.armed is not None:
            self.armed.cancel()
        self.armed = loop.call_at(self.heap[0][0], self.fire, loop, context=CONTEXT)

    def fire(self, loop: asyncio.AbstractEventLoop) -> None:
        self.armed = None
        while self.heap and self.heap[0][0] <= loop.time():
            wake(heapq.heappop(self.heap)[2])
        if self.heap:
            self.arm(loop)


async def child(kind: str, waits: int) -> dict[str, float]:
    import airflow.sdk  # noqa: F401  (a triggerer's heap)

    timer = SharedTimer()

    def pause() -> Awaitable[None]:
        if kind == "lean sleep":
            return lean_sleep(1.0)
        if kind == "shared timer":
            return timer.sleep(1.0)
        return asyncio.sleep(1.0)

    async def driver() -> None:
        if kind == "kling driver":
            from kling_provider._runtime import driving as _driving

            def sleeps() -> Generator[float, Any, None]:
                for _ in range(1000):
                    yield 1.0

            await _driving.drive(sleeps(), nothing)
            return
        for _ in range(1000):
            await pause()

    async def run() -> None:
        await driver()

    gc.collect()
    before = len(gc.get_objects())
    tasks = [asyncio.create_task(run()) for _ in range(waits)]
    await asyncio.sleep(0.2)
    gc.collect()
    per_wait = (len(gc.get_objects()) - before) / waits
    full = [0]

    def count(phase: str, info: dict[str, int]) -> None:
        full[0] += phase == "stop" and info["generation"] == 2

    gc.callbacks.append(count)
    cpu = time.process_time()
    await asyncio.sleep(3.0)  # three wake-ups of every wait
    cpu = time.process_time() - cpu
    gc.callbacks.remove(count)
    started = time.perf_counter()
    gc.collect()
    full_gc_ms = (time.perf_counter() - started) * 1000
    for task in tasks:
        task.cancel()
    return {"objects": per_wait, "wake_us": cpu / (3 * waits) * 1e6, "full_gcs": full[0],
            "full_gc_ms": full_gc_ms}


async def nothing(args: object, step: object) -> None:
    """The kling driver row asks no requests."""


def main() -> None:
    waits = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    print(f"\n{waits} sleeping waits (three coroutines each) waking every second, airflow.sdk "
          "imported; one process per row")
    print(f"{'sleep':<16}{'objects/wait':>13}{'CPU us/wake-up':>16}{'full GCs':>10}"
          f"{'full GC ms':>12}")
    for kind in KINDS:
        done = subprocess.run([sys.executable, __file__, "--child", kind, str(waits)],
                              capture_output=True, text=True, check=True, timeout=300)
        row = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{kind:<16}{row['objects']:>13.1f}{row['wake_us']:>16.1f}{row['full_gcs']:>10}"
              f"{row['full_gc_ms']:>12.0f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        print(json.dumps(asyncio.run(child(sys.argv[2], int(sys.argv[3])))), flush=True)
    else:
        main()
