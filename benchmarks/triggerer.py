"""Benchmark: many waits in one triggerer event loop, side by side, against a separate server.

    flock /tmp/kling-heavy.lock .venv/bin/python benchmarks/triggerer.py [waits] [seconds]

    flock /tmp/kling-heavy.lock .venv/bin/python benchmarks/triggerer.py 5000 30 trigger-aiohttp,...

Each row is a fresh child process running ``waits`` (default 5,000) concurrent waits that poll
every 10 s, starts staggered over the first interval so the load is even (500 polls/s asked at
5,000 waits), against the simulator in its own process. A third argument picks rows by variant.

Counted in the child only. Over the first interval (every wait starts and polls once):
``start stall``, the longest an event-loop callback was late (a 50 ms ticker), and ``lookups``,
the connection lookups the waits made (each a round trip to the supervisor in a real triggerer).
Over the steady rest of the run: CPU per poll (``getrusage``); ``max lag`` (the same ticker);
``full GCs``, how many full (generation 2) collections ran (``gc.callbacks``): CPython runs one
once the objects that survived the young collections since the last one reach a quarter of the
old ones, so their rate grows with what each poll leaves alive; ``full GC ms``, the longest,
which walks every tracked object of the process, so its pause grows with what each wait keeps
(none in the window: one is forced at its end, marked ``*``); ``obj/wait``, the tracked objects
the process holds per wait at the end (a collected heap, counted from just before the waits);
RSS growth (peak) and polls/s reached.

Every row's child imports Airflow and the provider first, as a running triggerer has (about
150,000 tracked objects). Rows: 5,000 waits that only sleep (the floor); a new
``httpx.AsyncClient`` per poll (1/50 of the waits: it cannot keep up), a shared
``httpx.AsyncClient``, a shared aiohttp session; the provider's ``KlingGenerationTrigger`` (built
from its serialised kwargs, fixed 10 s schedule so every row asks for the same polls) on each
transport the hook can use (httpx with 64 or 8 connections, aiohttp: the provider's own); the provider after
``gc.freeze()`` (the sizing advice of ``docs/waiting.rst``); all 5,000 arriving at once (a
restart or hand-over), created as Airflow's triggerer does (one a loop turn), or all woken in
one turn. Numbers are printed, not asserted: compare rows of one run (the machine is shared).
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import json
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

KEY = "bench-key"
INTERVAL = 10.0
PATH = "/v2/generate/video/kling/generation"
MODEL = "klingai/v2-master-text-to-video"
#: (row label, variant, share of the waits it runs)
ROWS: list[tuple[str, str, float]] = [
    ("bare sleeping waits (the floor)", "bare-sleep", 1.0),
    ("new httpx client per poll", "client-per-poll", 0.02),
    ("shared httpx client (defaults)", "httpx-shared", 1.0),
    ("shared aiohttp session", "aiohttp-shared", 1.0),
    ("trigger, httpx 64 conns (before)", "trigger-httpx-64", 1.0),
    ("trigger, httpx 8 connections", "trigger-httpx-8", 1.0),
    ("trigger, aiohttp (the provider)", "trigger-aiohttp", 1.0),
    ("provider + gc.freeze() at start", "trigger-aiohttp-frozen", 1.0),
    ("provider, all start at once", "trigger-aiohttp-burst", 1.0),
    ("all at once + gc.freeze()", "trigger-aiohttp-burst-frozen", 1.0),
    ("all at once, woken in one turn", "trigger-aiohttp-burst-1turn", 1.0),
]


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def one_poller(variant: str, base_url: str) -> Callable[[str], Awaitable[Any]]:
    """The poll function of a plain-client row (the trigger rows use the provider instead)."""
    headers = {"Authorization": f"Bearer {KEY}"}
    if variant == "client-per-poll":
        import httpx

        async def fresh(generation_id: str) -> Any:
            async with httpx.AsyncClient(base_url=base_url) as client:
                response = await client.get(PATH, params={"generation_id": generation_id},
                                            headers=headers)
                return response.json()
        return fresh
    if variant == "httpx-shared":
        import httpx

        client = httpx.AsyncClient(base_url=base_url)

        async def shared(generation_id: str) -> Any:
            response = await client.get(PATH, params={"generation_id": generation_id},
                                        headers=headers)
            return response.json()
        return shared
    import aiohttp

    session = aiohttp.ClientSession(base_url=base_url)

    async def aio(generation_id: str) -> Any:
        async with session.get(PATH, params={"generation_id": generation_id},
                               headers=headers) as response:
            return await response.json()
    return aio


async def child(variant: str, base_url: str, generation_id: str, waits: int,
                seconds: float) -> dict[str, Any]:
    polls, errors, lookups = [0], [0], [0]
    loop = asyncio.get_running_loop()
    at_once = "-burst" in variant  # a triggerer restart: every wait starts in the same instant
    # Every row holds what a running triggerer holds (Airflow and the provider imported), so the
    # GC and obj/wait columns compare like with like.
    for name in ("kling_provider.hooks.kling", "kling_provider.triggers.kling"):
        importlib.import_module(name)
    if variant == "bare-sleep":  # the floor: the same imports, waits that only sleep
        async def wait(i: int) -> None:
            await asyncio.sleep(max(0.0, start + i * INTERVAL / waits - time.time()))
            for _ in range(int(seconds / INTERVAL) + 2):  # the row's whole run
                await asyncio.sleep(INTERVAL)
    elif variant.startswith("trigger"):
        import httpx

        from kling_provider._api import protocol as _protocol
        from kling_provider.hooks import kling as hook_module
        from kling_provider.triggers.kling import KlingGenerationTrigger

        # A running triggerer has Airflow imported and its settings loaded: so does this one.
        await hook_module.KlingHook("kling_bench").aget_generation(generation_id)
        from kling_provider._runtime import client as _client

        _client.CONNECTIONS.forget()  # a fresh triggerer has looked up nothing yet
        lookup = hook_module.KlingHook.aget_connection

        async def counted_lookup(conn_id: str) -> Any:  # each is a supervisor round trip in Airflow
            lookups[0] += 1
            return await lookup(conn_id)

        hook_module.KlingHook.aget_connection = staticmethod(counted_lookup)  # type: ignore[method-assign]

        counted = _protocol.build_fetch_request

        def counting(family: str, gid: str) -> _protocol.ApiRequest:
            polls[0] += 1
            return counted(family, gid)

        _protocol.build_fetch_request = counting  # type: ignore[assignment]
        if variant.endswith("-frozen"):  # the sizing advice: after the imports, before any wait
            gc.collect()
            gc.freeze()
        transport: httpx.AsyncBaseTransport | None = None  # None: the provider's own choice
        if variant.startswith("trigger-httpx-"):
            size = int(variant.rsplit("-", 1)[1])
            transport = httpx.AsyncHTTPTransport(limits=httpx.Limits(
                max_connections=size, max_keepalive_connections=size))
        KlingGenerationTrigger._hook = (  # type: ignore[method-assign]
            lambda self: hook_module.KlingHook(self.kling_conn_id, async_transport=transport))

        async def wait(i: int) -> None:
            if variant.endswith("-1turn"):  # harsher than Airflow: all wake in one loop turn
                await asyncio.sleep(max(0.0, start - time.time()))
            elif not at_once:
                await asyncio.sleep(max(0.0, start + i * INTERVAL / waits - time.time()))
            # As the triggerer builds it: from the kwargs the deferring task serialised.
            trigger = KlingGenerationTrigger(**KlingGenerationTrigger(
                kling_conn_id="kling_bench", generation_id=generation_id,
                poll_interval=INTERVAL, deadline=end + 3600, poll_schedule="fixed").serialize()[1])
            async for _ in trigger.run():
                pass

        async def restart() -> None:  # Airflow's create_triggers: all of them, one per loop turn
            await asyncio.sleep(max(0.0, start - time.time()))
            for i in range(waits):
                await asyncio.sleep(0)
                tasks.append(loop.create_task(wait(i)))
    else:
        poll = await one_poller(variant, base_url)

        async def wait(i: int) -> None:
            at = start + i * INTERVAL / waits
            while True:
                await asyncio.sleep(max(0.0, at - time.time()))
                try:
                    await poll(generation_id)
                except Exception:  # a failed poll is not counted; waiting goes on
                    errors[0] += 1
                else:
                    polls[0] += 1
                at = max(at + INTERVAL, time.time())  # like a trigger: sleep after each poll

    rss_start = rss_mb()
    start = time.time() + 1.0
    end = start + seconds
    lag, stall = [0.0], [0.0]
    window: dict[str, float] = {}
    full_gc = {"ms": 0.0, "forced": 0.0, "count": 0}
    gc_started = [0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            gc_started[0] = time.perf_counter()
        elif info["generation"] == 2 and window:
            full_gc["count"] += 1
            full_gc["ms"] = max(full_gc["ms"], (time.perf_counter() - gc_started[0]) * 1000)

    gc.callbacks.append(on_gc)

    async def ticker() -> None:
        while time.time() < end:
            before = time.perf_counter()
            await asyncio.sleep(0.05)
            late = time.perf_counter() - before - 0.05
            if time.time() > start + INTERVAL:
                if not window:
                    window.update(cpu=cpu(), polls=polls[0], wall=time.perf_counter())
                lag[0] = max(lag[0], late)
            else:  # the first interval: every wait starts (and polls once) in it
                stall[0] = max(stall[0], late)

    def report() -> dict[str, Any]:
        collections = full_gc["count"]  # before the ones this report makes
        if not full_gc["ms"]:  # none fell in the window: time the one that is coming
            before = time.perf_counter()
            gc.collect()
            full_gc["ms"] = full_gc["forced"] = (time.perf_counter() - before) * 1000
        gc.collect()
        kept = (len(gc.get_objects()) - tracked_before) / waits
        measured = {"cpu": cpu() - window.get("cpu", 0.0), "polls": polls[0] - window.get("polls", 0),
                    "wall": time.perf_counter() - window.get("wall", time.perf_counter() - 1)}
        failed = sum(t.done() and not t.cancelled() and t.exception() is not None for t in tasks)
        return {"errors": errors[0] + failed, "stall_ms": stall[0] * 1000, "lookups": lookups[0],
                "cpu_ms_per_poll": measured["cpu"] / max(1, measured["polls"]) * 1000,
                "max_lag_ms": lag[0] * 1000 if window else None, "full_gc_ms": full_gc["ms"],
                "full_gc_forced": bool(full_gc["forced"]), "full_gcs": collections,
                "objects_per_wait": kept, "rss_growth_mb": rss_peak_mb() - rss_start,
                "polls_per_s": measured["polls"] / measured["wall"], "asked": waits / INTERVAL,
                "overrun_s": time.time() - end}  # > 0: the loop could not keep up

    def watchdog() -> None:  # a loop too busy to end the run on time still gets a row
        print(json.dumps({**report(), "stalled": True}), flush=True)
        os._exit(0)

    threading.Timer(seconds + 30, watchdog).start()
    tasks: list[asyncio.Task[None]] = []
    gc.collect()  # every row starts from a collected heap; what the waits keep is counted from here
    tracked_before = len(gc.get_objects())
    if at_once and not variant.endswith("-1turn"):
        tasks.append(loop.create_task(restart()))
    else:
        tasks.extend(loop.create_task(wait(i)) for i in range(waits))
    await ticker()
    return report()


def rss_peak_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0



def main() -> None:
    waits = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 20.0
    print(f"\n{waits} waits polling every {INTERVAL:.0f} s in one event loop "
          f"({waits / INTERVAL:.0f} polls/s asked), {seconds:.0f} s each, "
          "server in its own process; CPU, lag and RSS of the waiting process only")
    only = set(sys.argv[3].split(",")) if len(sys.argv) > 3 else None
    print(f"{'client':<34}{'waits':>6}{'start stall ms':>15}{'lookups':>8}{'CPU ms/poll':>12}"
          f"{'max lag ms':>11}{'full GCs':>9}{'full GC ms':>11}{'obj/wait':>9}{'RSS +MB':>9}"
          f"{'polls/s':>9}{'asked':>7}{'late s':>8}{'errors':>8}")
    from kling_provider.testing.simulator import spawn

    for label, variant, share in ROWS:
        if only is not None and variant not in only:
            continue
        server, base_url = spawn(KEY)
        try:
            import httpx

            generation_id = httpx.post(f"{base_url}{PATH}", headers={"Authorization": f"Bearer {KEY}"},
                                       json={"model": MODEL, "prompt": "bench"}).json()["id"]
            n = max(10, int(waits * share))
            env = {**os.environ, "AIRFLOW_CONN_KLING_BENCH": json.dumps(
                {"conn_type": "kling", "host": base_url, "password": KEY,
                 "extra": {"max_concurrency": 8 if variant.endswith("-8") else 64}})}
            done = subprocess.run(
                [sys.executable, __file__, "--child", variant, base_url, generation_id, str(n),
                 str(seconds)], env=env, capture_output=True, text=True, timeout=seconds + 120)
            if done.returncode != 0:
                print(f"{label:<34} not run: {done.stderr.strip().splitlines()[-1:]}")
                continue
            r = json.loads(done.stdout.strip().splitlines()[-1])
            forced = "*" if r["full_gc_forced"] else " "
            # None: the loop never got to the steady window (stalled), so no lag was measured
            lag = "-" if r["max_lag_ms"] is None else f"{r['max_lag_ms']:.0f}"
            cpu_ms = f"{r['cpu_ms_per_poll']:.2f}" if r["polls_per_s"] else "-"
            print(f"{label:<34}{n:>6}{r['stall_ms']:>15.0f}{r['lookups']:>8}{cpu_ms:>12}{lag:>11}"
                  f"{r['full_gcs']:>9}{r['full_gc_ms']:>10.0f}{forced}{r['objects_per_wait']:>9.1f}"
                  f"{r['rss_growth_mb']:>9.0f}{r['polls_per_s']:>9.0f}{r['asked']:>7.0f}"
                  f"{r['overrun_s']:>8.1f}{r['errors']:>8}{'  stalled' if r.get('stalled') else ''}")
        finally:
            server.terminate()
            server.wait(timeout=10)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        _, _, variant, base_url, gid, n, secs = sys.argv
        loop = asyncio.new_event_loop()
        result = loop.run_until_complete(child(variant, base_url, gid, int(n), float(secs)))
        print(json.dumps(result), flush=True)
        os._exit(0)  # thousands of pending waits: no point in unwinding them one by one
    else:
        main()
