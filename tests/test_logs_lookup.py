"""The usage-logs lookup and recovery, step by step, as mutation testing probes them.

Driven here the way the hook's sync and async drivers drive them (the house pattern: one step
generator, answers sent in, sleeps yielded out), with the answers the API would give: the pages
read by rows read, the last and the empty page, the sleeps (never 0 s, capped at the deadline),
a transient failure looked past and a refusal raised. The same lookup over real HTTP, against the
simulator, is in ``test_submission.py`` and ``test_never_paying_twice.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from typing import Any

import httpx
import pytest

from kling_provider._api.protocol import ApiRequest, RetryPolicy
from kling_provider._task import submission as _submission
from kling_provider._task.submission import LogRow, RateBudget
from kling_provider.exceptions import KlingAuthenticationError

MODEL = "klingai/v2-master-text-to-video"
POLICY = RetryPolicy(max_attempts=1)
Steps = Generator[Any, Any, Any]


def _item(**fields: Any) -> dict[str, Any]:
    return {"inference_id": "g1", "client_request_id": "c.t1", "status": "succeeded",
            "model": MODEL, "created": "2027-01-15T08:00:00.000Z", **fields}


# -- the lookup, step by step ---------------------------------------------------------------------

class Api:
    """Answers a step generator's requests from a list and keeps the time its sleeps pass."""

    def __init__(self, *answers: dict[str, Any] | httpx.Response | Exception,
                 now: float = 1_800_000_000.0) -> None:
        self.answers = list(answers)
        self.sent: list[ApiRequest] = []
        self.sleeps: list[float] = []
        self.t = now

    def now(self) -> float:
        return self.t

    def run(self, steps: Steps) -> Any:
        """Drive ``steps`` to their end; return their value."""
        try:
            step = next(steps)
            while True:
                step = steps.send(self.answer(step))
        except StopIteration as done:
            return done.value

    def answer(self, step: ApiRequest | float) -> Any:
        if not isinstance(step, ApiRequest):
            self.sleeps.append(step)
            self.t += step
            return None
        self.sent.append(step)
        answer = self.answers.pop(0)
        return httpx.Response(200, json=answer) if isinstance(answer, dict) else answer

    def offsets(self) -> list[str]:
        return [(r.params or {})["offset"] for r in self.sent]


def page(*rows: Any, more: bool) -> dict[str, Any]:
    return {"data": list(rows), "pagination": {"has_more": more}}


def mine(row: LogRow) -> bool:
    return row.client_request_id == "mine.t1"


def lookup(api: Api, budget: RateBudget | None = None) -> Steps:
    return _submission.lookup_steps(model=MODEL, since=api.t - 60, match=mine, now=api.now,
                                    policy=POLICY, conn_id="kling_default",
                                    budget=budget or RateBudget())


def test_pages_follow_each_other_by_rows_read_until_the_match() -> None:
    api = Api(page(_item(client_request_id="a"), _item(inference_id=None), more=True),
              page(_item(client_request_id="b"), _item(client_request_id="c"), "junk", more=True),
              page(_item(client_request_id="mine.t1", inference_id="g9"), more=True))
    row = api.run(lookup(api))
    assert row is not None and row.generation_id == "g9"
    assert api.offsets() == ["0", "2", "5"]
    assert api.sleeps == []  # an unthrottled lookup never sleeps, not even 0 s


def test_the_last_page_ends_the_lookup() -> None:
    api = Api(page(_item(client_request_id="a"), more=True), page(more=False))
    assert api.run(lookup(api)) is None
    assert api.offsets() == ["0", "1"]


def test_an_empty_page_that_claims_more_ends_the_lookup_with_a_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    api = Api(page(_item(client_request_id="a"), more=True), page(more=True))
    with caplog.at_level(logging.WARNING, logger="kling_provider"):
        assert api.run(lookup(api)) is None
    assert api.offsets() == ["0", "1"]
    assert [r.getMessage() for r in caplog.records] == [
        "The usage logs answered an empty page at offset 1 that claims more rows; this lookup "
        "ends here."]


def test_a_throttled_lookup_sleeps_what_the_budget_says_before_each_page() -> None:
    budget = RateBudget(limit=1, period=20.0)
    api = Api(page(_item(client_request_id="a"), more=True),
              page(_item(client_request_id="mine.t1"), more=False))
    assert api.run(lookup(api, budget)) is not None
    assert api.sleeps == [pytest.approx(20.0)]


def test_recovery_looks_every_interval_and_once_more_at_the_deadline(
        caplog: pytest.LogCaptureFixture) -> None:
    start = 1_800_000_000.0
    api = Api(page(more=False), httpx.Response(503), page(more=False), page(more=False),
              page(more=False), now=start)
    with caplog.at_level(logging.WARNING, logger="kling_provider"):
        found = api.run(_submission.recover_steps(
            model=MODEL, since=start, match=mine, deadline=start + 100, interval=30,
            now=api.now, policy=POLICY, conn_id="kling_default", budget=RateBudget()))
    assert found is None
    assert api.sleeps == [30, 30, 30, 10] and api.t == start + 100
    assert len(api.sent) == 5 and api.answers == []
    [warning] = [r.getMessage() for r in caplog.records
                 if "failed transiently" in r.getMessage()]
    assert warning == ("Usage-logs lookup 2 failed transiently, looking on: The API failed "
                       f"(HTTP 503) while fetching generation 'usage logs of {MODEL}': "
                       "Service Unavailable")


def test_recovery_returns_the_row_once_it_shows() -> None:
    api = Api(page(more=False), page(_item(client_request_id="mine.t1", inference_id="g5"),
                                     more=False))
    found = api.run(_submission.recover_steps(
        model=MODEL, since=api.t, match=mine, deadline=api.t + 600, interval=60, now=api.now,
        policy=POLICY, conn_id="kling_default", budget=RateBudget()))
    assert found is not None and found.generation_id == "g5" and api.sleeps == [60]


def test_recovery_raises_what_waiting_cannot_fix_naming_connection_and_logs_not_key() -> None:
    key = "sk-live-0123456789abcdef"
    api = Api(httpx.Response(401, json={"message": f"bad key {key}"}))
    with pytest.raises(KlingAuthenticationError) as refused:
        api.run(_submission.recover_steps(
            model=MODEL, since=api.t, match=mine, deadline=api.t + 600, interval=60,
            now=api.now, policy=POLICY, conn_id="kling_video", budget=RateBudget(),
            secrets=(key,)))
    message = str(refused.value)
    assert "connection 'kling_video'" in message and f"usage logs of {MODEL}" in message
    assert key not in message and "bad key" in message
    assert len(api.sent) == 1


def test_a_lookup_deadline_is_the_wait_plus_the_logs_lag() -> None:
    assert _submission.lookup_deadline(1000.0, 600.0) == 1000.0 + 600.0 + 300.0


def test_recovery_looks_once_more_at_the_deadline_however_close_it_is() -> None:
    start = 1_800_000_000.0
    api = Api(page(more=False), page(more=False), page(more=False),
              page(_item(client_request_id="mine.t1", inference_id="g-late"), more=False),
              now=start)
    found = api.run(_submission.recover_steps(
        model=MODEL, since=start, match=mine, deadline=start + 60.5, interval=30, now=api.now,
        policy=POLICY, conn_id="kling_default", budget=RateBudget()))
    assert found is not None and found.generation_id == "g-late"
    assert api.sleeps == [30, 30, 0.5]


def test_the_budget_refills_with_the_time_the_lookup_slept() -> None:
    # One page per 20 s: each sleep refills the slot the next page takes, so the sleeps stay 20 s.
    api = Api(page(_item(client_request_id="a"), more=True),
              page(_item(client_request_id="b"), more=True),
              page(_item(client_request_id="mine.t1"), more=False))
    assert api.run(lookup(api, RateBudget(limit=1, period=20.0))) is not None
    assert api.sleeps == [pytest.approx(20.0), pytest.approx(20.0)]


def test_a_wait_under_a_second_is_still_slept() -> None:
    api = Api(page(_item(client_request_id="a"), more=True),
              page(_item(client_request_id="mine.t1"), more=False))
    assert api.run(lookup(api, RateBudget(limit=1, period=0.5))) is not None
    assert api.sleeps == [pytest.approx(0.5)]
