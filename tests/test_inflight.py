"""The in-flight cards' rules: progress against the model's expected time, and their HTML."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from kling_provider.gallery.inflight import InFlight, as_json, expected, progress, render
from kling_provider.gallery.records import TaskRef

SUBMITTED = datetime(2026, 11, 30, 0, 0, tzinfo=timezone.utc)
RACCOON = "4a02da79-f363-42db-9775-1f9b63c772e5:kling-video/v2/master/text-to-video"


def item(generation_id: str = RACCOON, duration: int | None = None) -> InFlight:
    model, early, typical, late = expected(generation_id, duration)
    return InFlight(generation_id=generation_id, source=TaskRef("kling_raccoon", "run", "generate"),
                    state="deferred", submitted_at=SUBMITTED, model=model, duration=duration,
                    early=early, typical=typical, late=late)


def at(seconds: float) -> datetime:
    return SUBMITTED + timedelta(seconds=seconds)


def test_expected_time_is_the_models_documented_window() -> None:
    assert expected(RACCOON, None) == ("klingai/v2-master-text-to-video", 300, 330, 360)
    assert expected(RACCOON, 10)[1:] == (660, 750, 840)  # the page's figure for 10 s videos


def test_progress_runs_against_the_typical_time_then_waits_short_of_done() -> None:
    generation = item()
    assert progress(generation, at(0)).fraction == 0
    half = progress(generation, at(165))
    assert (half.fraction, half.remaining, half.late) == (0.45, 165, False)
    assert progress(generation, at(330)).fraction == 0.9
    overdue = progress(generation, at(400))
    assert overdue.late and overdue.remaining == 0 and overdue.fraction < 0.99
    assert progress(generation, at(-5)).elapsed == 0  # a clock behind the database's


@given(st.floats(0, 100_000), st.floats(0, 100_000))
def test_the_bar_never_moves_back_nor_reaches_done(first: float, second: float) -> None:
    generation = item()
    early, later = sorted((first, second))
    assert 0 <= progress(generation, at(early)).fraction <= progress(generation, at(later)).fraction
    assert progress(generation, at(later)).fraction <= 0.99


def test_json_and_html_carry_the_same_figures_escaped() -> None:
    generation = item(generation_id='x"<b>:kling-video/v2/master/text-to-video')
    answer = as_json(generation, at(33))
    assert answer["progress"] == 0.09 and answer["eta_seconds"] == 297
    assert answer["expected_seconds"] == {"early": 300, "typical": 330, "late": 360}
    html = render([generation], 7, at(33))
    assert 'data-latest="7"' in html
    assert '<progress max="1" value="0.0900">' in html
    assert "<b>" not in html and "x&quot;&lt;b&gt;" in html
    assert "about 4 min 57 s left" in html
    assert render([], 0, at(0)) == '<section id="in-flight" data-ids="" data-latest="0"></section>'
