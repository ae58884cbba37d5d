"""Thousands of waits starting together: one connection lookup shared and refreshed, the hook
imported once, starts spread out (``_connections``, ``_starting``). Fake clocks, no sleeps."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import pytest

from kling_provider._runtime import client as _client
from kling_provider._runtime.connections import ConnectionCache
from kling_provider._wait import starting as _starting
from kling_provider._wait.starting import StartPacer, import_off_loop
from kling_provider.hooks.kling import KlingConnectionSettings, KlingHook
from tests.conftest import SECRET_KEY


class Ticks:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Lookups:
    """A connection lookup the test releases by hand, counting how often it was asked."""

    def __init__(self, *values: Any) -> None:
        self.values = list(values)
        self.calls = 0
        self.release = asyncio.Event()

    async def __call__(self) -> Any:
        self.calls += 1
        value = self.values.pop(0)
        await self.release.wait()
        if isinstance(value, BaseException):
            raise value
        return value


def settings(key: str = SECRET_KEY, base_url: str = "https://api.example") -> KlingConnectionSettings:
    return KlingConnectionSettings(conn_id="kling_default", base_url=base_url,
                                   endpoint_family="legacy", api_key=key)


def test_waits_starting_together_share_one_lookup() -> None:
    async def scenario() -> tuple[int, set[int]]:
        cache: ConnectionCache[KlingConnectionSettings] = ConnectionCache(clock=Ticks())
        lookup = Lookups(settings())
        waits = [asyncio.ensure_future(cache.get("kling_default", lookup)) for _ in range(500)]
        await asyncio.sleep(0)
        lookup.release.set()
        results = await asyncio.gather(*waits)
        return lookup.calls, {id(result) for result in results}

    calls, distinct = asyncio.run(scenario())
    assert calls == 1
    assert len(distinct) == 1


def test_settings_are_refreshed_after_the_ttl_in_the_background() -> None:
    async def scenario() -> list[str]:
        ticks = Ticks()
        # The default: docs/connection.rst promises edits reach new waits within about a minute.
        cache: ConnectionCache[KlingConnectionSettings] = ConnectionCache(clock=ticks)
        lookup = Lookups(settings(base_url="https://old"), settings(base_url="https://new"))
        lookup.release.set()
        seen = [(await cache.get("kling_default", lookup)).base_url]
        ticks.t += 59.9
        seen.append((await cache.get("kling_default", lookup)).base_url)  # fresh: no lookup
        assert lookup.calls == 1
        ticks.t += 0.1
        lookup.release.clear()
        # Due: this wait still goes on at once with what it has, and one refresh starts.
        seen.append((await cache.get("kling_default", lookup)).base_url)
        seen.append((await cache.get("kling_default", lookup)).base_url)
        await asyncio.sleep(0)
        assert lookup.calls == 2
        lookup.release.set()
        for _ in range(3):
            await asyncio.sleep(0)
        seen.append((await cache.get("kling_default", lookup)).base_url)
        return seen

    assert asyncio.run(scenario()) == ["https://old"] * 4 + ["https://new"]


def test_a_failed_refresh_keeps_the_settings_and_waits_one_ttl(
        caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> tuple[list[str], int]:
        ticks = Ticks()
        cache: ConnectionCache[KlingConnectionSettings] = ConnectionCache(ttl=60, clock=ticks)
        lookup = Lookups(settings(base_url="https://kept"),
                         RuntimeError(f"backend down, it said {SECRET_KEY}"),
                         settings(base_url="https://later"))
        lookup.release.set()
        seen = [(await cache.get("kling_default", lookup)).base_url]
        ticks.t += 60
        seen.append((await cache.get("kling_default", lookup)).base_url)
        for _ in range(3):
            await asyncio.sleep(0)
        ticks.t += 30  # within a TTL of the failure: no new lookup
        seen.append((await cache.get("kling_default", lookup)).base_url)
        calls = lookup.calls
        ticks.t += 30
        await cache.get("kling_default", lookup)
        for _ in range(3):
            await asyncio.sleep(0)
        seen.append((await cache.get("kling_default", lookup)).base_url)
        return seen, calls

    with caplog.at_level(logging.WARNING, logger="kling_provider"):
        seen, calls_within_ttl = asyncio.run(scenario())
    assert seen == ["https://kept", "https://kept", "https://kept", "https://later"]
    assert calls_within_ttl == 2
    assert "'kling_default'" in caplog.text and "RuntimeError" in caplog.text
    assert SECRET_KEY not in caplog.text


def test_a_failed_first_lookup_reaches_every_waiter_and_is_not_kept() -> None:
    async def scenario() -> tuple[list[BaseException | KlingConnectionSettings], str, int]:
        cache: ConnectionCache[KlingConnectionSettings] = ConnectionCache(clock=Ticks())
        lookup = Lookups(LookupError("conn not defined"), settings(base_url="https://fixed"))
        waits = [asyncio.ensure_future(cache.get("kling_default", lookup)) for _ in range(3)]
        await asyncio.sleep(0)
        lookup.release.set()
        results = await asyncio.gather(*waits, return_exceptions=True)
        again = await cache.get("kling_default", lookup)
        return results, again.base_url, lookup.calls

    results, again, calls = asyncio.run(scenario())
    assert all(isinstance(result, LookupError) for result in results)
    assert (again, calls) == ("https://fixed", 2)


def test_a_cancelled_waiter_leaves_the_lookup_to_the_others() -> None:
    async def scenario() -> str:
        cache: ConnectionCache[KlingConnectionSettings] = ConnectionCache(clock=Ticks())
        lookup = Lookups(settings(base_url="https://shared"))
        killed = asyncio.ensure_future(cache.get("kling_default", lookup))
        other = asyncio.ensure_future(cache.get("kling_default", lookup))
        await asyncio.sleep(0)
        killed.cancel()
        await asyncio.sleep(0)
        lookup.release.set()
        return (await other).base_url

    assert asyncio.run(scenario()) == "https://shared"


def test_the_key_is_in_no_repr_of_the_cache() -> None:
    async def scenario() -> str:
        cache: ConnectionCache[KlingConnectionSettings] = ConnectionCache(clock=Ticks())
        lookup = Lookups(settings())
        lookup.release.set()
        await cache.get("kling_default", lookup)
        return repr(cache) + repr(cache._entries)

    text = asyncio.run(scenario())
    assert "kling_default" in text
    assert SECRET_KEY not in text


def test_hooks_of_one_connection_look_it_up_once_per_process(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    async def lookup(conn_id: str) -> Any:
        calls.append(conn_id)
        await asyncio.sleep(0)
        from airflow.sdk import Connection

        return Connection(conn_id=conn_id, conn_type="kling", host="https://api.example",
                          password=SECRET_KEY)

    monkeypatch.setattr(KlingHook, "aget_connection", staticmethod(lookup))

    async def scenario() -> set[str]:
        hooks = [KlingHook("kling_default") for _ in range(200)] + [KlingHook("kling_other")]
        found = await asyncio.gather(*(hook.asettings() for hook in hooks))
        return {s.conn_id for s in found}

    assert asyncio.run(scenario()) == {"kling_default", "kling_other"}
    assert sorted(calls) == ["kling_default", "kling_other"]
    assert SECRET_KEY not in repr(_client.CONNECTIONS)


def test_starts_beyond_the_burst_are_spread_at_the_rate() -> None:
    ticks = Ticks()
    pacer = StartPacer(rate=1000.0, burst=100, clock=ticks)
    delays = [pacer.delay() for _ in range(5000)]
    assert delays[:101] == [0.0] * 101
    assert delays[101] == pytest.approx(0.001)
    assert delays[-1] == pytest.approx(4.899)
    # No window of time gets more than the burst plus the rate's share of the starts.
    starts = sorted(ticks.t + d for d in delays)
    for i in range(0, 5000, 250):
        in_next_second = sum(1 for s in starts if starts[i] <= s < starts[i] + 1.0)
        assert in_next_second <= 101 + 1000


def test_by_default_fifty_start_at_once_then_five_hundred_a_second() -> None:
    """docs/waiting.rst: waits arriving together start 50 at once, then 500 a second."""
    ticks = Ticks()
    pacer = StartPacer(clock=ticks)  # the process pacer's settings
    delays = [pacer.delay() for _ in range(2000)]
    assert delays[:51] == [0.0] * 51  # the burst of 50, and the first of the rate's share
    assert delays[51] == pytest.approx(1 / 500)
    assert delays[50 + 500] == pytest.approx(1.0)  # 500 more within the next second
    assert delays[-1] == pytest.approx((2000 - 1 - 50) / 500)


def test_a_lone_start_is_never_delayed() -> None:
    ticks = Ticks()
    pacer = StartPacer(rate=1000.0, burst=100, clock=ticks)
    for _ in range(1000):
        pacer.delay()
    ticks.t += 1.0  # the burst has drained by now
    assert pacer.delay() == 0.0
    ticks.t += 60
    assert [pacer.delay() for _ in range(100)] == [0.0] * 100


def test_the_trigger_starts_through_the_process_pacer(monkeypatch: pytest.MonkeyPatch) -> None:
    ticks = Ticks()
    monkeypatch.setattr(_starting, "PACER", StartPacer(rate=1.0, burst=0, clock=ticks))
    _starting.PACER.delay()  # the bucket is full: the next start waits a second

    async def scenario() -> bool:
        from kling_provider.triggers.kling import KlingGenerationTrigger

        trigger = KlingGenerationTrigger(kling_conn_id="kling_default", generation_id="g",
                                         poll_interval=10, deadline=ticks.t + 60)
        run = asyncio.ensure_future(trigger.run().__anext__())
        for _ in range(5):
            await asyncio.sleep(0)
        waiting = not run.done()
        run.cancel()
        return waiting

    assert asyncio.run(scenario())


def test_waits_starting_together_import_the_hook_once(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "kling_shared_probe.py").write_text("READY = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "kling_shared_probe", raising=False)
    threads: list[str] = []
    to_thread = asyncio.to_thread

    async def counted(function: Any, *args: Any) -> Any:
        threads.append(args[0])
        return await to_thread(function, *args)

    monkeypatch.setattr(asyncio, "to_thread", counted)

    async def together() -> list[Any]:
        return list(await asyncio.gather(*(import_off_loop("kling_shared_probe")
                                           for _ in range(50))))

    modules = asyncio.run(together())
    assert len({id(module) for module in modules}) == 1
    assert all(module.READY for module in modules)
    assert threads == ["kling_shared_probe"]  # one import in flight, awaited by all 50
