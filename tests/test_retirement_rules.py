"""Model retirement's pure rules: reading feed items, matching by id and alias, what each status
decides before paying, the 404 note, freshness, and the catalogue/feed consistency check."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kling_provider._models import feeds as _feeds
from kling_provider._models import retirement as _retirement
from kling_provider._models.retirement import (
    STATUSES,
    Retirement,
    entries_from,
    entry_from,
    find,
    fresh,
    inconsistencies,
    merged,
    not_found_note,
    verdict,
)
from kling_provider.catalogue import list_models
from kling_provider.exceptions import KlingModelWithdrawnError
from kling_provider.testing._retirements import Retirements
from tools import build_catalogue

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-./", min_size=1, max_size=30)
dates = st.none() | st.dates().map(lambda d: d.isoformat())
entries = st.builds(
    Retirement, id=names, aliases=st.lists(names, max_size=3).map(tuple),
    status=st.sampled_from(STATUSES), deprecated_at=dates, shutdown_at=dates,
    replaced_by=st.none() | names, reason=st.sampled_from(["provider_delisted", None]))


@given(entries)
def test_an_entry_survives_the_feeds_json_shape(entry: Retirement) -> None:
    # What the caches and the shipped snapshot store is read back as the same entry.
    assert entry_from(_retirement.as_item(entry)) == entry


@given(st.lists(entries, max_size=6), names)
def test_a_model_is_found_by_its_id_or_any_alias(feed: list[Retirement], model: str) -> None:
    found = find(feed, model)
    listing = [e for e in feed if model in e.names]
    if not listing:
        assert found is None
    else:
        assert found in listing
        exact = [e for e in feed if e.id == model]
        # An id beats an alias; otherwise the first entry naming it.
        assert found == (exact[0] if exact else listing[0])
    assert find(feed, f"  {model}\t") == found  # a rendered template's blanks


@given(entries)
def test_each_alias_and_the_id_find_the_entry(entry: Retirement) -> None:
    for name in entry.names:
        assert find([entry], name) == entry
    assert find([entry], "") is None


@given(entries, names)
def test_the_decision_follows_the_status(entry: Retirement, model: str) -> None:
    if entry.status == "withdrawn":
        with pytest.raises(KlingModelWithdrawnError) as refused:
            verdict(model, entry, "the feed")
        message = str(refused.value)
        assert model in message and "Nothing was sent" in message
        assert (entry.shutdown_at or entry.deprecated_at or "an unpublished date") in message
        assert repr(entry.replaced_by) in message if entry.replaced_by else \
            "no replacement" in message
        assert refused.value.created_nothing
        return
    level, line = verdict(model, entry, "the feed")
    assert model in line and "the feed" in line
    if entry.status == "deprecated":
        assert level == logging.WARNING and "deprecated" in line
        assert (entry.shutdown_at or "no shutdown date") in line
    else:
        assert level == logging.INFO and f"runs it as {entry.replaced_by!r}" in line


def test_the_withdrawn_error_names_model_date_and_replacement() -> None:
    entry = Retirement("klingai/v2-master-text-to-video", ("kling-v2",), "withdrawn",
                       "2026-08-01", "2026-08-10", "klingai/v2.1-master-text-to-video")
    with pytest.raises(KlingModelWithdrawnError, match=(
            r"model kling-v2 \(klingai/v2-master-text-to-video\) was withdrawn by the AI/ML API "
            r"on 2026-08-10 .* replaced by 'klingai/v2.1-master-text-to-video'")):
        verdict("kling-v2", entry, "the feed")


@given(entries)
def test_a_404_names_the_entry(entry: Retirement) -> None:
    note = not_found_note(entry)
    assert repr(entry.id) in note and entry.status in note
    assert not_found_note(None) == ""


@given(st.lists(entries, max_size=5), st.none() | st.lists(entries, max_size=5))
def test_a_read_feed_overrides_the_shipped_snapshot(shipped: list[Retirement],
                                                    live: list[Retirement] | None) -> None:
    together = merged(shipped, live)
    if live is None:
        assert together == tuple(shipped)
        return
    assert together[:len(live)] == tuple(live)
    assert {e.id for e in together} == {e.id for e in [*shipped, *live]}


@given(st.floats(0, 4e9), st.floats(-1e6, 1e6))
def test_a_feed_is_fresh_for_a_day_and_never_from_the_future(fetched: float, age: float) -> None:
    assert fresh(fetched, fetched + age) == (0 <= age < 86400)


@pytest.mark.parametrize("item", [
    None, "x", {}, {"id": "m"}, {"id": "m", "status": "retired"}, {"id": " ", "status": "withdrawn"},
    {"id": 3, "status": "withdrawn"},
])
def test_items_that_are_not_entries_are_skipped(item: Any) -> None:
    assert entry_from(item) is None
    assert entries_from({"data": [item]}) == ()


def test_a_feed_item_is_read_leniently() -> None:
    item = {"id": "m", "aliases": ["a", 7, " ", "b"], "status": "DEPRECATED",
            "deprecated_at": "2026-01-01", "shutdown_at": None, "replaced_by": "n",
            "reason": "unknown", "extra": 1}
    assert entry_from(item) == Retirement("m", ("a", "b"), "deprecated", "2026-01-01", None, "n",
                                          "unknown")
    assert entries_from({"object": "list"}) is None and entries_from([]) is None


def test_inconsistencies_between_catalogue_and_feed() -> None:
    catalogue = ["a", "b", "c"]
    assert inconsistencies([Retirement("a", (), "withdrawn", replaced_by="b")], catalogue) == []
    problems = inconsistencies([
        Retirement("a", ("c",), "withdrawn", replaced_by="z"),
        Retirement("x", ("a",), "deprecated"),
    ], catalogue)
    assert problems == ["'a' is withdrawn, replaced by 'z', which the catalogue does not know",
                        "'a' has the alias 'c', another catalogue model",
                        "'a' is listed by both 'a' and 'x'",
                        "'x' has the alias 'a', another catalogue model"]


def test_the_shipped_snapshot_agrees_with_the_shipped_catalogue() -> None:
    assert inconsistencies(_feeds.shipped(), list_models()) == []


@given(st.lists(st.tuples(st.sampled_from(["m1", "m2", "m3", "m4"]), st.sampled_from(STATUSES),
                          dates), max_size=8))
def test_the_simulators_feed_is_ordered_newest_first_then_by_id(
        retired: list[tuple[str, str, str | None]]) -> None:
    feed = Retirements(lambda: 1_800_000_000.0)
    for model, status, day in retired:
        feed.retire(model, status, deprecated_at=day,
                    shutdown_at=day if status != "superseded" else None)
    data = json.loads(feed.answer("", None)[1])["data"]
    keys = [(e["shutdown_at"] or e["deprecated_at"], e["id"]) for e in data]
    assert keys == sorted(keys, key=lambda k: (_neg(k[0]), k[1]))
    assert len(data) == len({m for m, _, _ in retired})
    assert entries_from({"data": data}) is not None  # the provider reads what it serves


def _neg(day: str) -> tuple[int, ...]:
    return tuple(-int(p) for p in day.split("-"))


def test_build_catalogue_ships_the_kling_entries_and_refuses_a_contradiction(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    shutil.copytree(Path(_feeds.__file__).parent.parent / "data", data)
    feed: dict[str, Any] = {"object": "list", "generated_at": "2026-08-24T13:59:21.643Z", "data": [
        {"id": "openai/gpt-5.3-chat", "aliases": [], "status": "withdrawn",
         "deprecated_at": "2026-08-10", "shutdown_at": "2026-08-10", "replaced_by": None,
         "reason": "provider_delisted"},
        {"id": "klingai/v2-master-text-to-video", "aliases": ["kling-video/v2/master"],
         "status": "deprecated", "deprecated_at": "2026-08-01", "shutdown_at": "2026-12-01",
         "replaced_by": "klingai/v2.1-master-text-to-video", "reason": "consolidated"}]}
    saved = tmp_path / "feed.json"
    saved.write_text(json.dumps(feed))
    build_catalogue.main(["--check", "--deprecations", str(saved), "--data", str(data)])
    shipped = json.loads((data / "deprecations.json").read_text())
    assert [e["id"] for e in shipped["data"]] == ["klingai/v2-master-text-to-video"]
    assert "agree (1 entries)" in capsys.readouterr().out
    # A replacement the catalogue does not know: the build fails and says which.
    feed["data"][1]["replaced_by"] = "klingai/v9-text-to-video"
    saved.write_text(json.dumps(feed))
    with pytest.raises(SystemExit) as failed:
        build_catalogue.main(["--check", "--deprecations", str(saved), "--data", str(data)])
    assert failed.value.code == 1
    assert "'klingai/v9-text-to-video', which the catalogue does not know" in \
        capsys.readouterr().err
