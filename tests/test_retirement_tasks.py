"""Model retirement as a generate task meets it against the simulator on loopback: before paying
for a withdrawn, deprecated or superseded model, a create answered 404, a try that reattaches,
and the videos page's badge."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from kling_provider import metrics
from kling_provider._models import feeds as _feeds
from kling_provider._models.retirement import Retirement
from kling_provider.exceptions import (
    KlingModelNotFoundError,
    KlingModelWithdrawnError,
    KlingValidationError,
)
from kling_provider.hooks.kling import KlingHook
from kling_provider.operators.kling import KlingTextToVideoOperator
from kling_provider.testing.records import Faults
from kling_provider.testing.simulator import KlingSimulator
from tests.conftest import FakeClock, StateStoreStub, context_for
from tests.test_retirement_feed import V2_MASTER, V21_MASTER, V26_PRO, creates, feed_reads

# -- the generate task, before paying -------------------------------------------------------------

class RecordingStats:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any, dict[str, str]]] = []

    def incr(self, stat: str, count: Any = 1, *, tags: dict[str, str]) -> None:
        self.calls.append(("incr", stat, count, tags))


def test_a_withdrawn_model_fails_before_any_paid_request(airflow_sim: KlingSimulator) -> None:
    airflow_sim.retirements.retire(V2_MASTER, "withdrawn", shutdown_at="2027-01-10",
                                   replaced_by=V21_MASTER)
    operator = KlingTextToVideoOperator(task_id="t", model=V2_MASTER, prompt="p", duration=5)
    with pytest.raises(KlingModelWithdrawnError) as refused:
        operator.execute(context_for(StateStoreStub()))
    message = str(refused.value)
    assert V2_MASTER in message and "2027-01-10" in message and repr(V21_MASTER) in message
    assert isinstance(refused.value, AirflowFailException)  # no retry brings the model back
    assert creates(airflow_sim) == 0
    assert airflow_sim.ledger.count(method="GET", path="/v1/models") == 0  # not even priced


def test_a_deprecated_model_runs_warns_and_is_counted(airflow_sim: KlingSimulator,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    stats = RecordingStats()
    monkeypatch.setattr(metrics, "_stats", lambda: stats)
    airflow_sim.retirements.retire(V2_MASTER, "deprecated", shutdown_at="2027-02-28",
                                   replaced_by=V21_MASTER)
    operator = KlingTextToVideoOperator(task_id="t", model=V2_MASTER, prompt="p", duration=5,
                                        deferrable=False, poll_interval=10)
    operator.execute(context_for(StateStoreStub()))
    assert creates(airflow_sim) == 1
    logged = capsys.readouterr().out
    assert f"Model {V2_MASTER} is deprecated (since 2027-01-15) and shuts down on 2027-02-28; " \
           f"replaced by {V21_MASTER!r}." in logged
    assert ("incr", "kling.model.retiring", 1, {"model": V2_MASTER, "status": "deprecated"}) \
        in stats.calls


def test_a_superseded_alias_notes_what_it_resolves_to(airflow_sim: KlingSimulator,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    airflow_sim.retirements.retire("klingai/v2-master", "superseded", aliases=[V2_MASTER],
                                   replaced_by=V21_MASTER)
    KlingTextToVideoOperator(task_id="t", model=V2_MASTER, prompt="p", duration=5,
                             deferrable=False, poll_interval=10).execute(
        context_for(StateStoreStub()))
    assert creates(airflow_sim) == 1
    assert f"Model {V2_MASTER} (klingai/v2-master) is superseded: the API runs it as " \
           f"{V21_MASTER!r}" in capsys.readouterr().out


def test_a_404_from_a_create_names_the_feeds_entry(sim_hook: KlingHook,
                                                   simulator: KlingSimulator) -> None:
    simulator.faults = Faults(refusals=[404])  # a 404 of a model the feed does not list
    with pytest.raises(KlingModelNotFoundError) as plain:
        sim_hook.create_generation(V2_MASTER, prompt="p")
    assert "deprecation feed" not in str(plain.value) and plain.value.created_nothing
    # Withdrawn since the feed was read (and cached for the day): the 404 reads it again.
    simulator.retirements.retire(V21_MASTER, "withdrawn", shutdown_at="2027-01-14",
                                 replaced_by="klingai/video-v3-pro-text-to-video")
    with pytest.raises(KlingModelNotFoundError) as noted:
        sim_hook.create_generation(V21_MASTER, prompt="p")
    assert f"The model deprecation feed lists {V21_MASTER!r} as withdrawn (2027-01-14), " \
           "replaced by 'klingai/video-v3-pro-text-to-video'." in str(noted.value)
    assert noted.value.created_nothing
    assert creates(simulator) == 2
    assert [status for status, _ in feed_reads(simulator)] == [200, 200]


def test_the_videos_page_badges_a_retiring_model_from_the_cached_feed(
        sim_hook: KlingHook, simulator: KlingSimulator) -> None:
    from kling_provider.gallery import page
    from kling_provider.gallery.records import Filters, build_videos, summarise
    from tests.test_gallery_rules import at, event

    assert _feeds.badges([V2_MASTER, V21_MASTER]) == {}  # nothing shipped, nothing cached
    simulator.retirements.retire(V2_MASTER, "deprecated", shutdown_at="2027-02-28")
    simulator.retirements.retire("<b>x</b>", "superseded", aliases=[V21_MASTER])
    sim_hook.check_model(V2_MASTER)  # a task read the feed; the page reads only its cache
    reads = len(feed_reads(simulator))
    badges = _feeds.badges([V2_MASTER, V21_MASTER, V26_PRO])
    assert badges == {V2_MASTER: "deprecated, shuts down 2027-02-28", V21_MASTER: "superseded"}
    videos = build_videos([event(1, at(11), uri="file:///v/a.mp4", size=10, generation_id="g1",
                                 model=V2_MASTER, prompt="A raccoon")], [])
    html = page.render(videos, summarise(videos), Filters(), dag_ids=[], models=[],
                       posters=False, badges=badges)
    assert f'<dd>{V2_MASTER} <span class="retiring">deprecated, shuts down 2027-02-28' \
           "</span></dd>" in html
    assert len(feed_reads(simulator)) == reads  # the page asked the API nothing


def test_a_try_that_reattaches_does_not_check_the_model_again(
        airflow_sim: KlingSimulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from airflow.providers.common.compat.sdk import TaskDeferred

    airflow_sim.retirements.retire(V2_MASTER, "deprecated")
    store = StateStoreStub()
    with pytest.raises(TaskDeferred):  # try 1: checked, paid, deferred
        KlingTextToVideoOperator(task_id="t", model=V2_MASTER, prompt="p").execute(
            context_for(store))
    assert len(feed_reads(airflow_sim)) == 1 and creates(airflow_sim) == 1
    airflow_sim.retirements.retire(V2_MASTER, "withdrawn")  # and nothing cached any more:
    monkeypatch.setenv(_feeds.CACHE_DIR_VARIABLE, str(tmp_path))
    monkeypatch.setattr(_feeds, "FEEDS", _feeds.FeedCache())
    with pytest.raises(TaskDeferred):  # try 2 reattaches to the paid generation
        KlingTextToVideoOperator(task_id="t", model=V2_MASTER, prompt="p").execute(
            context_for(store, try_number=2))
    assert len(feed_reads(airflow_sim)) == 1 and creates(airflow_sim) == 1


def test_the_docs_check_model_example_runs(sim_hook: KlingHook, simulator: KlingSimulator,
                                           clock: FakeClock) -> None:
    from docs.snippets.check_model import models_to_move

    simulator.retirements.retire(V2_MASTER, "deprecated", replaced_by=V21_MASTER)
    simulator.retirements.retire(V26_PRO, "superseded", replaced_by=V21_MASTER)
    assert models_to_move(sim_hook, [V2_MASTER, V21_MASTER, V26_PRO]) == {
        V2_MASTER: V21_MASTER, V26_PRO: V21_MASTER}
    simulator.retirements.retire(V21_MASTER, "withdrawn")
    clock.sleep(86400)  # the next day's read sees it
    with pytest.raises(KlingModelWithdrawnError):
        models_to_move(sim_hook, [V21_MASTER])
    assert creates(simulator) == 0


def test_a_parse_names_a_model_that_went_away_from_the_cached_feed() -> None:
    gone = "klingai/v1-master-text-to-video"  # not in the catalogue (any more)
    with pytest.raises(KlingValidationError) as typo:  # nothing cached: a typo, as before
        KlingTextToVideoOperator(task_id="t", model=gone, prompt="p")
    assert "Did you mean" in str(typo.value) and "deprecation feed" not in str(typo.value)
    # A task elsewhere read the feed (no parse ever does): the same parse now says why.
    _feeds.FeedCache().store(_feeds.Feed("https://api.example.test", None, 0.0, (
        Retirement(gone, ("kling-v1-master",), "withdrawn", "2026-06-01", "2026-07-01",
                   V21_MASTER),
        Retirement("klingai/v1-pro", (), "deprecated", "2026-06-01", "2026-09-01", None))))
    for model in (gone, "kling-v1-master"):
        with pytest.raises(KlingModelWithdrawnError) as went:
            KlingTextToVideoOperator(task_id="t", model=model, prompt="p")
        assert f"Task 't': Not submitting: model {model}" in str(went.value)
        assert f"withdrawn by the AI/ML API on 2026-07-01 and its requests now fail (404); " \
               f"replaced by {V21_MASTER!r}" in str(went.value)
    with pytest.raises(KlingModelWithdrawnError, match="2026-07-01"):  # a mapped task's partial
        KlingTextToVideoOperator.partial(task_id="m", model=gone).expand(prompt=["a", "b"])
    # Deprecated, but no catalogue model to check it as: refused as unknown, with the entry.
    with pytest.raises(KlingValidationError) as unknown:
        KlingTextToVideoOperator(task_id="t", model="klingai/v1-pro", prompt="p")
    assert "The model deprecation feed lists 'klingai/v1-pro' as deprecated (2026-09-01), no " \
           "replacement named" in str(unknown.value)


def test_a_parse_refuses_a_catalogue_model_the_cached_feed_or_snapshot_withdrew(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A model the shipped catalogue still has but the service withdrew since: the parse fails
    naming the date and the replacement, from the last cached feed (any API base URL: a parse
    reads no connection) or the snapshot the package ships; never with a request."""
    KlingTextToVideoOperator(task_id="t", model=V2_MASTER, prompt="p", duration=5)  # nothing known
    _feeds.FeedCache().store(_feeds.Feed("https://api.example.test", None, 0.0, (
        Retirement(V2_MASTER, (), "withdrawn", "2026-06-01", "2026-07-01", V21_MASTER),)))
    with pytest.raises(KlingModelWithdrawnError) as went:
        KlingTextToVideoOperator(task_id="t", model=V2_MASTER, prompt="p", duration=5)
    message = str(went.value)
    assert f"Task 't': Not submitting: model {V2_MASTER} was withdrawn by the AI/ML API on " \
           f"2026-07-01" in message and f"replaced by {V21_MASTER!r}" in message
    assert "deprecation feeds cached on this machine, read when the DAG file was parsed" in message
    with pytest.raises(KlingModelWithdrawnError, match="2026-07-01"):
        KlingTextToVideoOperator.partial(task_id="m", model=V2_MASTER).expand(prompt=["a"])
    with pytest.raises(KlingModelWithdrawnError):  # allow_unknown_model does not bring it back
        KlingTextToVideoOperator(task_id="t", model=V2_MASTER, prompt="p", duration=5,
                                 allow_unknown_model=True)
    KlingTextToVideoOperator(task_id="t", model="{{ params.model }}", prompt="p")  # rendered later
    # The snapshot the package ships, with no feed cached.
    for path in Path(_feeds.cache_dir()).glob("deprecations-*.json"):
        path.unlink()
    monkeypatch.setattr(_feeds, "FEEDS", _feeds.FeedCache())
    KlingTextToVideoOperator(task_id="t", model=V2_MASTER, prompt="p", duration=5)
    monkeypatch.setattr(_feeds, "shipped", lambda: (
        Retirement(V2_MASTER, (), "withdrawn", "2026-06-01", "2026-08-10", None),))
    with pytest.raises(KlingModelWithdrawnError, match="2026-08-10 .*no replacement named"):
        KlingTextToVideoOperator(task_id="t", model=V2_MASTER, prompt="p", duration=5)


def test_an_alias_or_superseded_id_the_feed_names_is_accepted_and_checked_as_its_model(
        sim_hook: KlingHook, simulator: KlingSimulator) -> None:
    """A name the catalogue lacks but the cached feed lists as an alias of a catalogue model,
    or as a superseded id the API runs as one, is accepted at parse and by the hook's request
    validation, with that model's parameters; the body names it as the DAG does."""
    alias, old = "kling-v2-master", "klingai/v2-master-old"
    for model in (alias, old):  # nothing cached: unknown
        with pytest.raises(KlingValidationError, match="not one of the"):
            KlingTextToVideoOperator(task_id="t", model=model, prompt="p", duration=5)
    _feeds.FeedCache().store(_feeds.Feed(simulator.base_url, None, 0.0, (
        Retirement(V2_MASTER, (alias,), "deprecated", "2026-06-01", "2027-01-01", V21_MASTER),
        Retirement(old, (), "superseded", "2026-05-01", None, V21_MASTER))))
    for model, known in ((alias, V2_MASTER), (old, V21_MASTER)):
        KlingTextToVideoOperator(task_id="t", model=model, prompt="p", duration=5)
        KlingTextToVideoOperator.partial(task_id="m", model=model).expand(prompt=["a", "b"])
        with pytest.raises(KlingValidationError) as bad:  # the catalogue model's rules
            KlingTextToVideoOperator(task_id="t", model=model, prompt="p", duration=7)
        assert f"model {model!r} (as {known!r}, legacy endpoint)" in str(bad.value)
        prepared = sim_hook.prepare_request(model, {"prompt": "p", "duration": "5"})
        assert prepared.body["model"] == model and prepared.body["duration"] == 5
        assert prepared.known_model
    assert feed_reads(simulator) == []  # validation never asks the API
