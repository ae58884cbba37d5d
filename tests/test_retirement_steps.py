"""The deprecation feed's read (``retirement_steps``): when it asks, what it keeps, what it says.

Against the simulator through the hook: a feed that cannot be read a day later falls back to the
copy read earlier (and says so, once per read, in the task log), and is asked again next time.
Scripted into the step generator: answers the simulator never gives (a 304 with nothing cached,
a dropped connection, a body that is not a feed) and the overlay of the shipped snapshot.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from kling_provider._api import service as _service
from kling_provider._api.protocol import ApiRequest
from kling_provider._models.feeds import Feed
from kling_provider._models.retirement import Retirement
from kling_provider.hooks.kling import KlingHook
from kling_provider.testing.simulator import KlingSimulator
from tests.conftest import FakeClock

FEED = "/v1/models/deprecations"
V26_PRO = "klingai/video-v2-6-pro-text-to-video"
DAY = 86400.0
BASE = "https://api.example.test"
NOW = 1_800_000_000.0
OLD = Retirement("old/model", ("old",), "withdrawn", "2026-01-01", "2026-02-01", "new/model")
LIVE = Retirement("live/model", (), "deprecated", "2026-05-01", "2026-08-01", "new/model")


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "kling_provider" and r.levelno == logging.WARNING]


# -- through the hook, against the simulator ------------------------------------------------------

def test_a_failed_read_a_day_later_keeps_the_copy_read_earlier_and_asks_again_next_time(
        sim_hook: KlingHook, simulator: KlingSimulator, clock: FakeClock,
        caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    simulator.retirements.retire(V26_PRO, "deprecated", shutdown_at="2027-03-01")
    tag = httpx.get(simulator.base_url + FEED).headers["ETag"]  # the ledger's first read
    with caplog.at_level(logging.INFO, logger="kling_provider"):
        assert sim_hook.check_model(V26_PRO).status == "deprecated"  # type: ignore[union-attr]
    # The task log names where the entry came from: the feed, read now.
    assert "shutdown (deprecation feed of " + simulator.base_url + ")." in capsys.readouterr().out
    assert warnings(caplog) == []
    clock.sleep(DAY)
    simulator.retirements.failures = [503]
    with caplog.at_level(logging.INFO, logger="kling_provider"):
        assert sim_hook.check_model(V26_PRO).status == "deprecated"  # type: ignore[union-attr]
    fallback = (f"the deprecation feed of {simulator.base_url} could not be read (HTTP 503), "
                "so the copy read earlier was used")
    assert warnings(caplog) == [f"Model retirement: {fallback}."]
    assert f"shutdown ({fallback})." in capsys.readouterr().out
    # A failed read renews nothing: the next check asks again, with the tag of the copy kept.
    assert sim_hook.check_model(V26_PRO) is not None
    assert [(e.status, e.headers.get("if-none-match"))
            for e in simulator.ledger.entries(path=FEED)][1:] == [(200, None), (503, tag),
                                                                  (304, tag)]


# -- the step generator, scripted ------------------------------------------------------------------

def start(cached: Feed | None = None, *, refresh: bool = False,
          shipped: tuple[Retirement, ...] = (OLD,), model: str = "old") -> Any:
    return _service.retirement_steps(model, BASE, cached, shipped, now=NOW, refresh=refresh)


def answer(steps: Any, outcome: httpx.Response | httpx.RequestError) -> Any:
    try:
        steps.send(outcome)
    except StopIteration as done:
        return done.value
    raise AssertionError("the feed read sent a second request")


def asked(steps: Any) -> httpx.Headers | None:
    """The feed request's headers (``None``: none), names compared as HTTP does: any case."""
    request = next(steps)
    assert isinstance(request, ApiRequest)
    assert (request.method, request.path, request.authenticated) == ("GET", FEED, False)
    return None if request.headers is None else httpx.Headers(request.headers)


def feed_body(*entries: Retirement) -> dict[str, Any]:
    return {"object": "list", "data": [{**e._asdict(), "aliases": list(e.aliases)}
                                       for e in entries]}


def test_a_fresh_copy_is_used_without_a_request_unless_a_refresh_is_asked() -> None:
    cached = Feed(BASE, 'W/"1"', NOW - DAY + 1, (LIVE,))
    steps = start(cached, model="live/model")
    with pytest.raises(StopIteration) as done:
        next(steps)
    assert done.value.value == (LIVE, f"deprecation feed of {BASE}", None)
    refreshed = start(cached, refresh=True, model="live/model")
    assert asked(refreshed) == {"if-none-match": 'W/"1"'}


@pytest.mark.parametrize("fetched_at", [NOW - DAY, NOW + 1])  # a day old; from the future
def test_a_stale_copy_is_revalidated_and_a_304_renews_it(fetched_at: float) -> None:
    cached = Feed(BASE, 'W/"1"', fetched_at, (LIVE,))
    steps = start(cached, model="live/model")
    assert asked(steps) == {"if-none-match": 'W/"1"'}
    renewed = Feed(BASE, 'W/"1"', NOW, (LIVE,))
    assert answer(steps, httpx.Response(304)) == (LIVE, f"deprecation feed of {BASE}", renewed)


def test_a_copy_without_a_tag_is_asked_for_whole() -> None:
    steps = start(Feed(BASE, None, NOW - 2 * DAY, (LIVE,)))
    assert asked(steps) is None


def test_a_new_feed_is_kept_with_its_tag_and_overlays_the_shipped_snapshot() -> None:
    newer_old = OLD._replace(status="superseded", shutdown_at=None)
    steps = start(None)
    assert asked(steps) is None
    entry, source, keep = answer(steps, httpx.Response(
        200, json=feed_body(LIVE, newer_old), headers={"ETag": 'W/"2"'}))
    assert (entry, source) == (newer_old, f"deprecation feed of {BASE}")  # found by its alias
    assert keep == Feed(BASE, 'W/"2"', NOW, (LIVE, newer_old))
    # A model the feed does not list is still found in the snapshot shipped.
    shipped_only = start(None, shipped=(OLD, LIVE), model="old")
    asked(shipped_only)
    entry, _, _ = answer(shipped_only, httpx.Response(200, json=feed_body(LIVE)))
    assert entry == OLD


@pytest.mark.parametrize(("outcome", "problem"), [
    (httpx.Response(304), "HTTP 304"),  # nothing cached to renew
    (httpx.Response(503, json={"message": "Service unavailable"}), "HTTP 503"),
    # A gateway's error in the feed's shape is not the feed: never kept for a day.
    (httpx.Response(502, json=feed_body(LIVE)), "HTTP 502"),
    (httpx.Response(200, text="<html>maintenance</html>"), "HTTP 200"),
    (httpx.Response(200, json={"object": "list"}), "HTTP 200"),
    (httpx.ConnectError("refused"), "ConnectError"),
])
def test_an_unreadable_feed_falls_back_to_the_snapshot_shipped_and_says_why(
        outcome: Any, problem: str, caplog: pytest.LogCaptureFixture) -> None:
    steps = start(None)
    asked(steps)
    with caplog.at_level(logging.WARNING, logger="kling_provider"):
        entry, source, keep = answer(steps, outcome)
    assert (entry, keep) == (OLD, None)
    assert source == (f"the deprecation feed of {BASE} could not be read ({problem}), so the "
                      "snapshot shipped was used")
    assert warnings(caplog) == [f"Model retirement: {source}."]


def test_an_unreadable_feed_with_a_stale_copy_uses_the_copy() -> None:
    steps = start(Feed(BASE, 'W/"1"', NOW - 2 * DAY, (LIVE,)), shipped=(OLD,),
                  model="live/model")
    asked(steps)
    entry, source, keep = answer(steps, httpx.ReadTimeout("slow"))
    assert (entry, keep) == (LIVE, None)
    assert source == (f"the deprecation feed of {BASE} could not be read (ReadTimeout), so the "
                      "copy read earlier was used")
