"""The pure rules of "exactly one paid generation" and the simulator's usage logs and tracing.

Ids, the decision table, the rate budget and the logs paging are checked as pure functions; the
logs lookup against both an httpx ``MockTransport`` (paging and filters exactly) and the simulator
(rows written when a video finishes, failed ones at zero cost, the published 400/429 rules).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from kling_provider._api import protocol as _protocol
from kling_provider._task import submission as _submission
from kling_provider._task.submission import Action, RateBudget, SubmissionRecord, decide
from kling_provider.exceptions import KlingAuthenticationError, KlingValidationError
from kling_provider.hooks.kling import KlingHook
from kling_provider.testing.simulator import Faults, KlingSimulator
from tests.conftest import SECRET_KEY, FakeClock, Script, ok, run_async

VALID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
MODEL = "klingai/v2-master-text-to-video"


# -- client request ids ---------------------------------------------------------------------------

def test_client_request_id_is_readable_when_the_ids_allow_it() -> None:
    prefix = _submission.task_prefix("media", "scheduled_2026", "generate", 3)
    assert prefix == "kling:media:scheduled_2026:generate:3"
    assert _submission.client_request_id(prefix, 2) == "kling:media:scheduled_2026:generate:3.t2"
    assert _submission.client_request_id(prefix, 2, 1).endswith(".t2r1")


@pytest.mark.parametrize(("dag_id", "run_id", "task_id"), [
    ("dag", "manual__2026-11-21T00:00:00+00:00", "generate"),         # '+' is not allowed
    ("dag", "run with spaces/and/slashes", "group.task"),
    ("d" * 250, "r" * 250, "t" * 250),                                  # far over 128
    ("dag", "émoji 🎬 run", "generate"),
])
def test_client_request_id_is_valid_whatever_the_ids(dag_id: str, run_id: str,
                                                    task_id: str) -> None:
    prefix = _submission.task_prefix(dag_id, run_id, task_id, 12345)
    for try_number in (1, 99, 9999):
        assert VALID.fullmatch(_submission.client_request_id(prefix, try_number, 99))


def test_ids_that_differ_only_in_invalid_characters_stay_distinct() -> None:
    one = _submission.task_prefix("dag", "run+1", "t", -1)
    two = _submission.task_prefix("dag", "run 1", "t", -1)
    assert one != two and one.startswith("kling:dag:run_1:t:-1-") and two.startswith("kling:dag:run_1")
    assert _submission.task_prefix("dag", "run", "t", 1) != _submission.task_prefix(
        "dag", "run", "t", 2)
    long_a = _submission.task_prefix("d", "x" * 200 + "a", "t", -1)
    long_b = _submission.task_prefix("d", "x" * 200 + "b", "t", -1)
    assert long_a != long_b and len(long_a) <= 96


def test_a_new_intent_never_reuses_the_stored_id() -> None:
    prefix = "kling:d:r:t:-1"
    first = _submission.next_client_request_id(prefix, 1, None)
    stored = SubmissionRecord(first, MODEL, "legacy", 0.0)
    second = _submission.next_client_request_id(prefix, 1, stored)
    third = _submission.next_client_request_id(
        prefix, 1, SubmissionRecord(second, MODEL, "legacy", 0.0))
    nonce = r"\.[0-9a-f]{12}"
    assert re.fullmatch(re.escape(f"{prefix}.t1") + nonce, first)
    assert re.fullmatch(re.escape(f"{prefix}.t1r1") + nonce, second)
    assert re.fullmatch(re.escape(f"{prefix}.t1r2") + nonce, third)
    assert re.fullmatch(re.escape(f"{prefix}.t2") + nonce,
                        _submission.next_client_request_id(prefix, 2, stored))
    assert _submission.next_client_request_id(prefix, 2, stored, nonce="") == f"{prefix}.t2"


def test_earlier_try_matches_only_this_task_and_earlier_tries() -> None:
    prefix = "kling:d:r:t:-1"
    assert _submission.earlier_try(prefix, f"{prefix}.t1", 2)
    assert _submission.earlier_try(prefix, f"{prefix}.t1r3", 2)
    assert _submission.earlier_try(prefix, f"{prefix}.t1r3.0a1b2c3d4e5f", 2)
    assert not _submission.earlier_try(prefix, f"{prefix}.t2.0a1b2c3d4e5f", 2)
    assert not _submission.earlier_try(prefix, f"{prefix}.t2", 2)      # this try
    assert not _submission.earlier_try(prefix, "kling:d:r:t:-10.t1", 2)  # another map index
    assert not _submission.earlier_try(prefix, None, 2)


def test_bad_policy_is_refused_naming_what_is_allowed() -> None:
    with pytest.raises(KlingValidationError, match=r"'on_uncertain_submission'='retry'.*'fail'"):
        _submission.check_on_uncertain_submission("retry")


# -- the decision table -----------------------------------------------------------------------------

INTENT = SubmissionRecord("kling:d:r:t:-1.t1", MODEL, "legacy", intent_at=1000.0)
PAID = INTENT.with_generation("g1", 1001.0)
DELIVERED = SubmissionRecord(**{**PAID.__dict__, "delivered": True})
WAIT = 1800.0
EXPIRED = 1000.0 + WAIT + _submission.LOGS_LAG.total_seconds() + 1


@pytest.mark.parametrize(("record", "clear_number", "now", "action"), [
    (None, 0, 1000.0, Action.SUBMIT),
    (INTENT.refused_now(), 0, 1001.0, Action.SUBMIT),  # the API refused it: nothing to find
    (INTENT, 0, 1100.0, Action.RECOVER),            # an earlier try died, or its answer was lost
    (INTENT, 0, EXPIRED, Action.RECOVER),           # a retry never gives up silently
    (INTENT, 1, 1100.0, Action.RECOVER),            # cleared while it may still show
    (INTENT, 1, EXPIRED, Action.SUBMIT),            # cleared by a user after the lookup gave up
    (PAID, 0, 1100.0, Action.REATTACH),
    (PAID, 1, 1100.0, Action.REATTACH),             # a failed task cleared: no second payment
    (DELIVERED, 0, 1100.0, Action.REATTACH),        # success not recorded: reuse
    (DELIVERED, 1, 1100.0, Action.SUBMIT),          # a finished task cleared: a new video
])
def test_decision_table(record: SubmissionRecord | None, clear_number: int, now: float,
                        action: Action) -> None:
    assert decide(record, clear_number=clear_number, now=now, wait_seconds=WAIT) is action


def test_record_round_trips_and_keeps_a_generation_id_whatever_else_is_missing() -> None:
    assert SubmissionRecord.from_json(DELIVERED.to_json()) == DELIVERED
    bare = SubmissionRecord.from_json({"generation_id": "g", "endpoint_family": "legacy",
                                       "model": MODEL, "submitted_at": 5.0})
    assert bare is not None and bare.generation_id == "g" and bare.submitted_at == 5.0
    assert bare.intent_at == 0.0  # no intent time stored: none invented from the submission
    assert SubmissionRecord.from_json({"model": MODEL}) is None
    assert SubmissionRecord.from_json("garbage") is None


# -- the rate budget --------------------------------------------------------------------------------

def test_rate_budget_spreads_a_burst_over_the_window() -> None:
    budget = RateBudget(limit=200, period=60.0)
    waits = [budget.reserve(100.0) for _ in range(201)]
    assert waits[:200] == [0.0] * 200
    assert waits[200] == pytest.approx(0.3)     # one slot refills every 60/200 s
    assert budget.reserve(100.0 + 60.0) == 0.0  # a minute later the bucket has refilled
    assert budget.reserve(50.0) >= 0.0           # a clock going backwards never adds slots
    shared = _submission.SHARED_LOGS_BUDGET      # every recovery of a process: 180 of the 200
    assert (shared.limit, shared.period) == (180, 60.0)


# -- the lookup, exactly ---------------------------------------------------------------------------

def _row(cri: str | None, generation_id: str, status: str = "succeeded") -> dict[str, object]:
    return {"created": "2027-01-15T08:00:00.000Z", "status": status, "origin": "api",
            "model": MODEL, "cost": {"usd": 0.1, "credits": 1}, "tokens": {},
            "request_id": "r", "inference_id": generation_id, "client_request_id": cri}


def test_lookup_pages_filters_and_stops_at_the_match(mock_hook: Callable[..., KlingHook],
                                                     clock: FakeClock) -> None:
    pages = Script(
        ok({"data": [_row("other.t1", "g0"), _row(None, "gx")],
            "pagination": {"limit": 2, "offset": 0, "total": 4, "has_more": True}}),
        ok({"data": [_row("mine.t1", "g1"), _row("mine.t1", "g-older")],
            "pagination": {"limit": 2, "offset": 2, "total": 4, "has_more": False}}),
    )
    hook = mock_hook(pages)
    hook._logs_budget = RateBudget()
    row = hook.find_generation("mine.t1", model=MODEL, since=clock.now() - 60)
    assert row is not None and row.generation_id == "g1"
    queries = [parse_qs(urlsplit(str(r.url)).query) for r in pages.requests]
    assert [q["offset"] for q in queries] == [["0"], ["2"]]
    assert all(q["model"] == [MODEL] and q["limit"] == ["100"] for q in queries)
    assert all("period" not in q for q in queries)
    start, end = queries[0]["start"][0], queries[0]["end"][0]
    assert start < end and start.endswith("Z")
    assert all(r.headers["authorization"] == f"Bearer {SECRET_KEY}" for r in pages.requests)


def test_lookup_waits_until_the_row_shows_then_gives_up_at_the_deadline(
        mock_hook: Callable[..., KlingHook], clock: FakeClock) -> None:
    empty = ok({"data": [], "pagination": {"limit": 100, "offset": 0, "total": 0,
                                            "has_more": False}})
    hook = mock_hook(Script(empty, httpx.Response(503), empty, *[empty] * 20))
    hook._logs_budget = RateBudget()
    hook._retry_policy = _protocol.RetryPolicy(max_attempts=1)
    start = clock.now()
    assert hook.find_generation("mine.t1", model=MODEL, since=start, deadline=start + 100,
                                poll_interval=30) is None
    assert clock.now() == pytest.approx(start + 100)  # looked on through the 503, then stopped


def test_lookup_raises_what_waiting_cannot_fix(mock_hook: Callable[..., KlingHook],
                                               clock: FakeClock) -> None:
    hook = mock_hook(Script(httpx.Response(401, json={"message": "bad key"})))
    with pytest.raises(KlingAuthenticationError):
        hook.find_generation("mine.t1", model=MODEL, since=clock.now(),
                             deadline=clock.now() + 600)


# -- the simulator: tracing headers and usage logs ----------------------------------------------------

def _post(sim: KlingSimulator, cri: str | None, **faults: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {SECRET_KEY}"}
    if cri is not None:
        headers["X-Client-Request-Id"] = cri
    body: dict[str, object] = {"model": MODEL, "prompt": "p"}
    if faults:
        body["simulator_faults"] = faults
    return httpx.post(f"{sim.base_url}/v2/generate/video/kling/generation", json=body,
                      headers=headers)


def _logs(sim: KlingSimulator, **params: object) -> httpx.Response:
    return httpx.get(f"{sim.base_url}/v2/logs", params=params,  # type: ignore[arg-type]
                     headers={"Authorization": f"Bearer {SECRET_KEY}"})


def test_simulator_echoes_the_client_id_and_names_the_inference(simulator: KlingSimulator) -> None:
    answer = _post(simulator, "order-8f21c4")
    assert answer.headers["x-client-request-id"] == "order-8f21c4"
    assert answer.headers["x-inference-id"] == answer.json()["id"]
    dropped = _post(simulator, "not valid!")  # outside the alphabet: silently dropped
    assert "x-client-request-id" not in dropped.headers and dropped.status_code == 200
    poll = httpx.get(f"{simulator.base_url}/v2/generate/video/kling/generation",
                     params={"generation_id": answer.json()["id"]},
                     headers={"Authorization": f"Bearer {SECRET_KEY}"})
    assert poll.headers["x-inference-id"] == answer.json()["id"]


def test_simulator_logs_a_video_once_it_finished(simulator: KlingSimulator,
                                                 clock: FakeClock) -> None:
    good = _post(simulator, "good.t1").json()["id"]
    bad = _post(simulator, "bad.t1", error={"name": "Moderation", "message": "no"}).json()["id"]
    _post(simulator, "not valid!")
    assert _logs(simulator, period="1h").json()["data"] == []  # still generating: no rows yet
    clock.t += 3600
    rows = _logs(simulator, period="2h").json()["data"]
    by_id = {r["inference_id"]: r for r in rows}
    assert by_id[good]["client_request_id"] == "good.t1" and by_id[good]["cost"]["credits"] > 0
    assert by_id[bad]["status"] == "failed" and by_id[bad]["cost"] == {"usd": 0, "credits": 0}
    assert sorted(r["client_request_id"] or "" for r in rows) == ["", "bad.t1", "good.t1"]
    assert [r["inference_id"] for r in _logs(simulator, period="2h", status="failed")
            .json()["data"]] == [bad]
    assert _logs(simulator, period="2h", model=f"{MODEL},other").json()["data"] == []


def test_simulator_logs_page_and_refuse_bad_queries(simulator: KlingSimulator,
                                                    clock: FakeClock) -> None:
    for i in range(3):
        _post(simulator, f"p.t{i}")
    clock.t += 3600
    first = _logs(simulator, period="2h", limit=2).json()
    second = _logs(simulator, period="2h", limit=2, offset=2).json()
    assert first["pagination"] == {"limit": 2, "offset": 0, "total": 3, "has_more": True}
    assert len(second["data"]) == 1 and second["pagination"]["has_more"] is False
    assert _logs(simulator).status_code == 400                                  # no window
    assert _logs(simulator, period="1h", start="2026-01-01T00:00:00Z",
                 end="2026-01-02T00:00:00Z").status_code == 400                 # both
    assert _logs(simulator, start="2026-01-01T00:00:00Z",
                 end="2026-06-01T00:00:00Z").status_code == 400                 # over 92 days
    assert _logs(simulator, period="1h", limit=101).status_code == 400
    assert _logs(simulator, period="1h", status="succeeded,failed").status_code == 400


def test_simulator_logs_rate_limit(simulator: KlingSimulator) -> None:
    with httpx.Client(base_url=simulator.base_url,
                      headers={"Authorization": f"Bearer {SECRET_KEY}"}) as client:
        statuses = [client.get("/v2/logs", params={"period": "1h"}).status_code
                    for _ in range(201)]
    assert statuses[:200] == [200] * 200 and statuses[200] == 429


def test_simulator_create_faults(simulator: KlingSimulator) -> None:
    assert _post(simulator, "r.t1", refuse_before_create=1).status_code == 429
    assert simulator.generation_ids() == []  # refused before creating: safe to send again
    assert _post(simulator, "r.t1", refuse_before_create=1).status_code == 200
    assert _post(simulator, "b.t1", create_status=502).status_code == 502
    with pytest.raises(httpx.RemoteProtocolError):
        _post(simulator, "d.t1", create_drop=True)
    assert sorted(k or "" for k in simulator.generations_by_client_request_id()) == [
        "b.t1", "d.t1", "r.t1"]  # created, whatever the answer


def test_lookup_against_the_simulator_sync_and_async(sim_hook: KlingHook,
                                                     simulator: KlingSimulator,
                                                     clock: FakeClock) -> None:
    since = clock.now()
    generation_id = sim_hook.create_generation(MODEL, prompt="p", client_request_id="x.t1")
    assert simulator.ledger.entries(method="POST")[0].headers["x-client-request-id"] == "x.t1"
    found = sim_hook.find_generation("x.t1", model=MODEL, since=since,
                                     deadline=clock.now() + 3600, poll_interval=20)
    assert found is not None and found.generation_id == generation_id
    assert clock.now() > since + 300  # it showed only once the video had finished
    again = run_async(lambda: sim_hook.afind_generation("x.t1", model=MODEL, since=since))
    assert again is not None and again.generation_id == generation_id
    assert simulator.faults == Faults()
