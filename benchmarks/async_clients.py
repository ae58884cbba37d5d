"""Benchmark: the triggerer's polling cost, side by side, against the simulator on loopback.

    make bench            (or: .venv/bin/python benchmarks/async_clients.py)

1. CPU per poll: a new ``httpx.AsyncClient`` per request (what a naive trigger does) versus the
   hook's shared client.
2. 1,000 concurrent pollers against a slow API: one shared httpx client with default limits
   (unbounded callers) versus the hook (shared client, semaphore-bounded in-flight requests).

The simulator runs in a separate process so only the client's CPU is counted. Numbers are
printed, never asserted: speed is for humans to compare, not a pass/fail criterion.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable

import httpx

from kling_provider.hooks.kling import KlingHook, aclose_shared_clients
from kling_provider.testing.simulator import spawn

KEY = "bench-key"
POLLS = 300
CALLERS = 1000
SLOW_ANSWER = float(os.environ.get("BENCH_SLOW_ANSWER", "0.6"))  # seconds per answer, part 2



async def cpu_per_call(call: Callable[[], Awaitable[object]], count: int) -> tuple[float, float]:
    await call()  # warm up: imports, first connection
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(count):
        await call()
    return ((time.process_time() - cpu) / count * 1000,
            (time.perf_counter() - wall) / count * 1000)


async def concurrent(call: Callable[[], Awaitable[object]]) -> tuple[int, dict[str, int], float]:
    started = time.perf_counter()
    results = await asyncio.gather(*(call() for _ in range(CALLERS)), return_exceptions=True)
    errors: dict[str, int] = {}
    for result in results:
        if isinstance(result, BaseException):
            errors[type(result).__name__] = errors.get(type(result).__name__, 0) + 1
    return CALLERS - sum(errors.values()), errors, time.perf_counter() - started


async def main() -> None:
    process, base_url = spawn(KEY)
    os.environ["AIRFLOW_CONN_KLING_BENCH"] = json.dumps(
        {"conn_type": "kling", "host": base_url, "password": KEY})
    path = "/v2/generate/video/kling/generation"
    try:
        hook = KlingHook("kling_bench")
        generation_id = await hook.acreate_generation("klingai/v2.1-master-text-to-video",
                                                      prompt="benchmark")
        params = {"generation_id": generation_id}
        headers = {"Authorization": f"Bearer {KEY}"}

        async def fresh_client() -> object:
            async with httpx.AsyncClient(base_url=base_url) as client:
                return (await client.get(path, params=params, headers=headers)).json()

        rows = [("new AsyncClient per poll", *await cpu_per_call(fresh_client, POLLS)),
                ("KlingHook shared client", *await cpu_per_call(
                    lambda: KlingHook("kling_bench").aget_generation(generation_id), POLLS))]
        print(f"\n1) One poll, {POLLS} sequential polls each (client process only)")
        print(f"{'client':<28}{'CPU ms/poll':>14}{'wall ms/poll':>14}")
        for name, cpu, wall in rows:
            print(f"{name:<28}{cpu:>14.2f}{wall:>14.2f}")

        async with httpx.AsyncClient(base_url=base_url) as shared:
            await shared.post("/_simulator/faults", json={"delay": SLOW_ANSWER})
            unbounded = await concurrent(
                lambda: shared.get(path, params=params, headers=headers))
        bounded = await concurrent(lambda: KlingHook("kling_bench").aget_generation(generation_id))
        print(f"\n2) {CALLERS} concurrent pollers, API answering in {SLOW_ANSWER} s")
        print(f"{'client':<36}{'ok':>6}{'errors':>28}{'wall s':>9}")
        for name, (ok, errors, wall) in (("shared httpx client, default limits", unbounded),
                                         ("KlingHook (shared, bounded 64)", bounded)):
            print(f"{name:<36}{ok:>6}{json.dumps(errors) if errors else '-':>28}{wall:>9.1f}")
    finally:
        await aclose_shared_clients()
        process.terminate()
        process.wait(timeout=10)


if __name__ == "__main__":
    asyncio.run(main())
