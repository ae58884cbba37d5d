"""Model retirement over HTTP, against the simulator on loopback: the feed as published
(``ETag``/``304``, filters), the hook's daily cache per API base URL (in memory and on disk), and
what a generate task does before paying for a withdrawn, deprecated or superseded model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from kling_provider._models import feeds as _feeds
from kling_provider.catalogue import endpoint_path
from kling_provider.exceptions import KlingModelWithdrawnError
from kling_provider.hooks.kling import KlingHook
from kling_provider.testing.simulator import KlingSimulator
from tests.conftest import SECRET_KEY, FakeClock

FEED = "/v1/models/deprecations"
V2_MASTER = "klingai/v2-master-text-to-video"
V21_MASTER = "klingai/v2.1-master-text-to-video"
V26_PRO = "klingai/video-v2-6-pro-text-to-video"
DAY = 86400.0


def creates(sim: KlingSimulator) -> int:
    return sum(sim.ledger.count(method="POST", path=endpoint_path(f)) for f in ("legacy", "unified"))


def feed_reads(sim: KlingSimulator) -> list[tuple[int | None, str | None]]:
    """(status, If-None-Match) of each feed request the simulator saw."""
    return [(e.status, e.headers.get("if-none-match")) for e in sim.ledger.entries(path=FEED)]


# -- the simulator's feed, as published ------------------------------------------------------------

def test_the_feed_is_public_tagged_and_answers_304_to_its_tag(simulator: KlingSimulator,
                                                               clock: FakeClock) -> None:
    simulator.retirements.retire(V2_MASTER, "withdrawn", replaced_by=V21_MASTER,
                                 aliases=["kling-v2-master"])
    first = httpx.get(simulator.base_url + FEED)  # no key
    assert first.status_code == 200 and first.headers["Cache-Control"] == "public, max-age=300"
    etag = first.headers["ETag"]
    assert etag.startswith('W/"')
    body = first.json()
    assert body["object"] == "list" and body["generated_at"].startswith("2027-01-15T")
    assert body["data"] == [{"id": V2_MASTER, "aliases": ["kling-v2-master"], "status": "withdrawn",
                             "deprecated_at": "2027-01-15", "shutdown_at": "2027-01-15",
                             "replaced_by": V21_MASTER, "reason": "provider_delisted"}]
    clock.sleep(1.5)
    again = httpx.get(simulator.base_url + "/models/deprecations")  # the other published path
    # The tag covers ``data`` only: generated_at moved, the tag did not.
    assert again.json()["generated_at"] != body["generated_at"] and again.headers["ETag"] == etag
    unchanged = httpx.get(simulator.base_url + FEED, headers={"If-None-Match": etag})
    assert unchanged.status_code == 304 and unchanged.content == b""
    simulator.retirements.retire(V26_PRO, "deprecated", shutdown_at="2027-03-01")
    changed = httpx.get(simulator.base_url + FEED, headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    # Newest first by shutdown_at: the deprecated model shuts down after the withdrawn one.
    assert [e["id"] for e in changed.json()["data"]] == [V26_PRO, V2_MASTER]


def test_the_feed_filters_fail_open(simulator: KlingSimulator) -> None:
    simulator.retirements.retire("a", "withdrawn", deprecated_at="2026-01-01",
                                 shutdown_at="2026-02-01")
    simulator.retirements.retire("b", "superseded", deprecated_at="2026-06-26", replaced_by="c")
    simulator.retirements.retire("d", "deprecated", deprecated_at="2026-05-01",
                                 shutdown_at="2027-05-01")

    def ids(query: str) -> list[str]:
        answer = httpx.get(f"{simulator.base_url}{FEED}?{query}")
        assert answer.status_code == 200  # never a 400, whatever the query
        return [e["id"] for e in answer.json()["data"]]

    assert ids("") == ["d", "b", "a"]
    assert ids("status=WITHDRAWN") == ["a"]
    assert ids("status=withdrawn,superseded") == ids("status=withdrawn&status=superseded") == \
        ["b", "a"]
    assert ids("status=retired") == ids("status=") == ["d", "b", "a"]  # unknown: ignored
    assert ids("since=2026-06-01") == ["d", "b"]
    assert ids("since=yesterday") == ["d", "b", "a"]


def test_retiring_on_command_over_http(simulator: KlingSimulator) -> None:
    control = simulator.base_url + "/_simulator/retire"
    made = httpx.post(control, json={"model": V2_MASTER, "replaced_by": V21_MASTER})
    assert made.status_code == 200 and made.json()["status"] == "withdrawn"
    bad = httpx.post(control, json={"model": V2_MASTER, "status": "retired"})
    assert bad.status_code == 400 and "'retired' is not one of" in bad.json()["message"]
    assert httpx.post(control, json={"model": "m", "status": "superseded",
                                     "shutdown_at": "2027-01-01"}).status_code == 400
    assert httpx.post(control, json={"model": "m", "colour": "red"}).status_code == 400
    api = httpx.Client(base_url=simulator.base_url,
                       headers={"Authorization": f"Bearer {SECRET_KEY}"})
    refused = api.post(endpoint_path("legacy"), json={"model": V2_MASTER, "prompt": "a fox"})
    assert refused.status_code == 404 and refused.json()["message"] == \
        f"Model '{V2_MASTER}' not found"
    assert httpx.post(control, json={"model": V2_MASTER, "restore": True}).status_code == 200
    assert httpx.get(simulator.base_url + FEED).json()["data"] == []
    assert api.post(endpoint_path("legacy"), json={"model": V2_MASTER,
                                                   "prompt": "a fox"}).status_code == 200


# -- the hook: read daily per base URL, cached in memory and on disk -----------------------------

def test_the_feed_is_read_once_a_day_and_renewed_with_its_etag(
        sim_hook: KlingHook, simulator: KlingSimulator, clock: FakeClock) -> None:
    simulator.retirements.retire(V26_PRO, "deprecated", shutdown_at="2027-03-01")
    assert sim_hook.check_model(V26_PRO).status == "deprecated"  # type: ignore[union-attr]
    assert sim_hook.check_model(V21_MASTER) is None
    clock.sleep(DAY - 1)
    assert sim_hook.check_model(V26_PRO) is not None
    assert feed_reads(simulator) == [(200, None)]  # one read within the day
    clock.sleep(1)
    assert sim_hook.check_model(V26_PRO) is not None
    tag = httpx.get(simulator.base_url + FEED).headers["ETag"]
    assert feed_reads(simulator)[1] == (304, tag)  # a day later: asked again, unchanged


def test_a_304_renews_the_day_and_a_change_is_seen_at_the_next_read(
        sim_hook: KlingHook, simulator: KlingSimulator, clock: FakeClock) -> None:
    assert sim_hook.check_model(V21_MASTER) is None
    clock.sleep(DAY)
    assert sim_hook.check_model(V21_MASTER) is None  # asked again: 304
    simulator.retirements.retire(V21_MASTER, "withdrawn", replaced_by="klingai/video-v3-pro-text-to-video")
    clock.sleep(DAY / 2)
    assert sim_hook.check_model(V21_MASTER) is None  # within the renewed day: no request
    clock.sleep(DAY / 2)
    with pytest.raises(KlingModelWithdrawnError, match="video-v3-pro-text-to-video"):
        sim_hook.check_model(V21_MASTER)
    assert [status for status, _ in feed_reads(simulator)] == [200, 304, 200]


def test_each_api_base_url_has_its_own_feed(simulator: KlingSimulator, clock: FakeClock,
                                            kling_env: Callable[..., None]) -> None:
    with KlingSimulator(clock=clock.monotonic, wall_clock=clock.now,
                        api_keys={SECRET_KEY}) as other:
        other.retirements.retire(V2_MASTER, "withdrawn")
        kling_env(other.base_url)
        with pytest.raises(KlingModelWithdrawnError):
            KlingHook(clock=clock).check_model(V2_MASTER)
        kling_env(simulator.base_url)
        assert KlingHook(clock=clock).check_model(V2_MASTER) is None  # not from the other one
        assert len(feed_reads(simulator)) == len(feed_reads(other)) == 1
        # What a DAG parse or the videos page may use without a request:
        assert [e.id for e in _feeds.known_entries(other.base_url)] == [V2_MASTER]
        assert _feeds.known_entries(simulator.base_url) == ()


def test_another_process_reads_the_cached_feed_from_disk(sim_hook: KlingHook,
                                                         simulator: KlingSimulator,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    simulator.retirements.retire(V2_MASTER, "superseded", replaced_by=V21_MASTER)
    assert sim_hook.check_model(V2_MASTER) is not None
    monkeypatch.setattr(_feeds, "FEEDS", _feeds.FeedCache())  # a new process: empty memory
    assert [e.status for e in _feeds.known_entries(simulator.base_url)] == ["superseded"]
    assert [e.id for e in _feeds.known_entries()] == [V2_MASTER]  # every cached feed
    assert sim_hook.check_model(V2_MASTER) is not None
    assert len(feed_reads(simulator)) == 1  # the file was fresh: no second read


@pytest.mark.parametrize("set_up", ["variable", "xdg", "home"])
def test_the_feed_is_cached_where_the_docs_say(sim_hook: KlingHook, simulator: KlingSimulator,
                                               monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                               set_up: str) -> None:
    """docs/retirement.rst: ``$KLING_PROVIDER_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/airflow-provider-kling``, else ``~/.cache/airflow-provider-kling``."""
    chosen, xdg, home = tmp_path / "chosen", tmp_path / "xdg", tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg))
    monkeypatch.setenv(_feeds.CACHE_DIR_VARIABLE, str(chosen))
    expected = chosen
    if set_up != "variable":
        monkeypatch.delenv(_feeds.CACHE_DIR_VARIABLE)
        expected = xdg / "airflow-provider-kling"
    if set_up == "home":
        monkeypatch.delenv("XDG_CACHE_HOME")
        expected = home / ".cache" / "airflow-provider-kling"
    simulator.retirements.retire(V2_MASTER, "deprecated")
    assert sim_hook.check_model(V2_MASTER) is not None
    assert [f.parent for f in tmp_path.rglob("deprecations-*.json")] == [expected]


def test_an_unreadable_feed_never_blocks(sim_hook: KlingHook, simulator: KlingSimulator,
                                         caplog: pytest.LogCaptureFixture,
                                         capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    simulator.retirements.failures = [500]
    with caplog.at_level("WARNING", logger="kling_provider"):
        assert sim_hook.check_model(V2_MASTER) is None  # one attempt, then the shipped snapshot
    assert f"the deprecation feed of {simulator.base_url} could not be read (HTTP 500), so " \
           "the snapshot shipped was used" in caplog.text + capsys.readouterr().out
    assert feed_reads(simulator) == [(500, None)]
    assert not list(_feeds.cache_dir().glob("deprecations-*.json"))  # no failure is cached
    monkeypatch.setenv(_feeds.CACHE_DIR_VARIABLE, "/proc/no-such-dir/x")  # unwritable
    simulator.retirements.retire(V2_MASTER, "deprecated")
    assert sim_hook.check_model(V2_MASTER) is not None  # kept in memory all the same
    assert f"Model {V2_MASTER} is deprecated" in capsys.readouterr().out
    assert len(feed_reads(simulator)) == 2  # a failed read was not cached as fresh


def test_the_simulator_docs_example_runs() -> None:
    import docs.snippets.simulator_retire as tour

    with KlingSimulator() as sim, httpx.Client(
            base_url=sim.base_url, headers={"Authorization": f"Bearer {sim.api_key}"}) as api:
        assert tour.retire_in_process(sim)["status"] == "withdrawn"
        assert tour.retire_over_http(api)["shutdown_at"] == "2099-12-31"
        feed = tour.read_the_feed(api)
        assert [(e["id"], e["status"]) for e in feed] == [
            (tour.REPLACEMENT, "deprecated"), (tour.MODEL, "withdrawn")]
        assert tour.create_a_withdrawn_model(api) == 404
        assert sim.generation_ids() == []
