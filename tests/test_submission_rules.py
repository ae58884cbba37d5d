"""The pure rules of ``_submission`` as mutation testing probes them, exactly.

Ids at their length limits, every field of the stored record, the usage-logs window and paging
over hostile pages and the shared rate budget. The lookup's paging, sleeps and messages are in
``test_logs_lookup.py``; the hook over real HTTP against the simulator in ``test_submission.py``.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import pytest

from kling_provider._task import submission as _submission
from kling_provider._task.submission import Action, LogRow, RateBudget, SubmissionRecord, decide
from kling_provider.exceptions import KlingValidationError

MODEL = "klingai/v2-master-text-to-video"
WAIT = 1800.0


# -- client request ids -------------------------------------------------------------------------

def test_a_task_outside_a_mapping_is_map_index_minus_one() -> None:
    assert _submission.task_prefix("d", "r", "t", None) == "kling:d:r:t:-1"
    assert _submission.task_prefix("d", "r", "t", 0) == "kling:d:r:t:0"


def test_a_prefix_of_the_longest_readable_length_is_kept_as_it_is() -> None:
    head = "kling:d:"
    tail = ":t:-1"
    exact = "x" * (_submission._PREFIX_MAX - len(head) - len(tail))
    assert _submission.task_prefix("d", exact, "t", -1) == f"{head}{exact}{tail}"
    longer = _submission.task_prefix("d", exact + "y", "t", -1)
    assert longer != f"{head}{exact}y{tail}" and len(longer) == _submission._PREFIX_MAX


def test_a_long_prefix_is_cut_in_the_middle_keeping_both_ends_and_a_hash() -> None:
    run_id = "scheduled__" + "0123456789" * 20
    raw = f"kling:media:{run_id}:generate:7"
    prefix = _submission.task_prefix("media", run_id, "generate", 7)
    digest = hashlib.sha256(raw.encode()).hexdigest()[:16]
    assert len(prefix) == _submission._PREFIX_MAX
    assert prefix == f"{raw[:26]}.{raw[len(raw) - 52:]}-{digest}"
    assert prefix.startswith("kling:media:scheduled__") and prefix.endswith(f":generate:7-{digest}")


def test_a_prefix_with_characters_outside_the_alphabet_gets_the_whole_hash() -> None:
    raw = "kling:d:run+1:t:-1"
    digest = hashlib.sha256(raw.encode()).hexdigest()[:16]
    assert _submission.task_prefix("d", "run+1", "t", -1) == f"kling:d:run_1:t:-1-{digest}"


def test_a_hand_made_prefix_the_header_would_drop_is_refused() -> None:
    with pytest.raises(KlingValidationError, match=r"Invalid client request id 'bad id\.t1'"):
        _submission.client_request_id("bad id", 1)
    with pytest.raises(KlingValidationError, match="Invalid client request id"):
        _submission.client_request_id("x" * 126, 1)
    assert _submission.client_request_id("x" * 125, 1) == "x" * 125 + ".t1"
    assert _submission.client_request_id("p", 3, 0, "ab12") == "p.t3.ab12"


def test_an_earlier_try_needs_this_task_and_the_id_format() -> None:
    prefix = "kling:d:r:t:-1"
    assert not _submission.earlier_try(prefix, "", 2)
    assert not _submission.earlier_try(prefix, f"{prefix}.t1.UPPER", 2)
    assert not _submission.earlier_try(prefix, f"{prefix}.t1x", 2)
    assert not _submission.earlier_try(prefix, f"{prefix}.T1", 2)
    assert _submission.earlier_try(prefix, f"{prefix}.t9", 10)


# -- the record ---------------------------------------------------------------------------------

def test_every_field_of_a_record_survives_the_store() -> None:
    # Built here, not at import: the records above are made before any test runs.
    delivered = SubmissionRecord("kling:d:r:t:-1.t2r1.0a1b2c3d4e5f", MODEL, "kling-v2", 1000.5,
                                 "g-7", 1003.25, clear_number=3, delivered=True)
    assert SubmissionRecord.from_json(json.loads(json.dumps(delivered.to_json()))) == delivered
    refused = SubmissionRecord("kling:d:r:t:-1.t1", MODEL, "legacy", 7.0, clear_number=2).refused_now()
    assert SubmissionRecord.from_json(refused.to_json()) == refused
    assert refused.to_json() == {
        "client_request_id": "kling:d:r:t:-1.t1", "model": MODEL, "endpoint_family": "legacy",
        "intent_at": 7.0, "generation_id": None, "submitted_at": None, "clear_number": 2,
        "delivered": False, "refused": True}


def test_a_refused_intent_is_the_same_intent_closed() -> None:
    intent = SubmissionRecord("kling:d:r:t:-1.t1.0a1b2c3d4e5f", MODEL, "kling-v2", 1000.0,
                              clear_number=4)
    refused = intent.refused_now()
    assert refused == SubmissionRecord("kling:d:r:t:-1.t1.0a1b2c3d4e5f", MODEL, "kling-v2",
                                       1000.0, None, None, 4, delivered=False, refused=True)
    assert decide(refused, clear_number=4, now=1001.0, wait_seconds=WAIT) is Action.SUBMIT
    # A stored record that names a generation was paid for, whatever its refused flag says.
    paid = SubmissionRecord.from_json({**refused.to_json(), "generation_id": "g1"})
    assert paid is not None and not paid.refused
    assert decide(paid, clear_number=4, now=1001.0, wait_seconds=WAIT) is Action.REATTACH


def test_a_generation_id_is_recorded_on_the_same_intent() -> None:
    intent = SubmissionRecord("kling:d:r:t:-1.t1", MODEL, "kling-v2", 1000.0, clear_number=5)
    assert intent.with_generation("g1", 1002.5) == SubmissionRecord(
        "kling:d:r:t:-1.t1", MODEL, "kling-v2", 1000.0, "g1", 1002.5, 5, delivered=False,
        refused=False)


def test_a_stored_record_is_read_field_by_field() -> None:
    stored = {"client_request_id": "c", "model": MODEL, "endpoint_family": "legacy",
              "intent_at": 0, "generation_id": None, "submitted_at": 9.0, "clear_number": None,
              "delivered": 0, "refused": 1}
    record = SubmissionRecord.from_json(stored)
    # A zero intent time is kept as zero, not replaced by the submission time.
    assert record == SubmissionRecord("c", MODEL, "legacy", 0.0, None, 9.0, 0, delivered=False,
                                      refused=True)
    assert isinstance(record.intent_at, float) and isinstance(record.submitted_at, float)
    only_generation = SubmissionRecord.from_json({"generation_id": 12})
    assert only_generation == SubmissionRecord(None, "", None, 0.0, "12", None, 0)
    assert isinstance(only_generation.intent_at, float)
    assert SubmissionRecord.from_json({"client_request_id": "", "generation_id": ""}) is None
    assert SubmissionRecord.from_json({"client_request_id": "c"}) == SubmissionRecord(
        "c", "", None, 0.0)


def test_an_intent_without_a_client_request_id_is_submitted() -> None:
    # Only the pre-intent format stored no id; without one there is nothing to look up.
    record = SubmissionRecord(None, MODEL, "legacy", 1000.0)
    assert decide(record, clear_number=0, now=1001.0, wait_seconds=WAIT) is Action.SUBMIT


# -- the usage logs: window, request, rows --------------------------------------------------------

def test_times_are_written_in_utc_to_the_millisecond(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")  # the host's zone must not leak in
    time.tzset()
    try:
        assert _submission._iso(0.0) == "1970-01-01T00:00:00.000Z"
        assert _submission._iso(1_800_000_000.25) == "2027-01-15T08:00:00.250Z"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_the_window_runs_from_skew_before_the_intent_to_skew_after_now() -> None:
    start, end = _submission.logs_window(since=1_800_000_000.0, now=1_800_003_600.0)
    assert (start, end) == ("2027-01-15T07:55:00.000Z", "2027-01-15T09:05:00.000Z")


def test_an_old_intent_is_searched_in_the_last_92_days() -> None:
    now = 1_800_000_000.0
    start, end = _submission.logs_window(since=now - 200 * 86400, now=now)
    # 92 days before the window's end, plus a minute of margin for the API's own clock.
    assert start == _submission._iso(now + 300 - 92 * 86400 + 60)
    assert end == _submission._iso(now + 300)
    start, _ = _submission.logs_window(since=now - 91 * 86400, now=now)
    assert start == _submission._iso(now - 91 * 86400 - 300)


def test_the_logs_request_names_what_it_reads() -> None:
    request = _submission.build_logs_request(model=MODEL, since=1_800_000_000.0,
                                             now=1_800_000_060.0, offset=300)
    assert (request.method, request.path, request.operation) == ("GET", "/v2/logs", "fetch")
    assert request.params == {"start": "2027-01-15T07:55:00.000Z",
                              "end": "2027-01-15T08:06:00.000Z", "model": MODEL,
                              "limit": "100", "offset": "300"}
    assert request.subject == f"usage logs of {MODEL}"
    assert request.json is None


def _item(**fields: Any) -> dict[str, Any]:
    return {"inference_id": "g1", "client_request_id": "c.t1", "status": "succeeded",
            "model": MODEL, "created": "2027-01-15T08:00:00.000Z", **fields}


def test_a_page_keeps_usable_rows_and_counts_every_row_read() -> None:
    body = {"data": [
        _item(),
        "not a row", None, 7,
        _item(inference_id=None), _item(inference_id=True), _item(inference_id=False),
        _item(inference_id=1.5), _item(inference_id={"id": "g"}), _item(inference_id="   "),
        _item(inference_id=""),
        _item(inference_id=42, client_request_id=""),
        _item(inference_id=" g3 ", client_request_id=5, status=None, model=["m"], created=1),
    ], "pagination": {"has_more": True}}
    rows, has_more, read = _submission.parse_rows(body)
    assert rows == [
        LogRow("c.t1", "g1", "succeeded", MODEL, "2027-01-15T08:00:00.000Z"),
        LogRow(None, "42", "succeeded", MODEL, "2027-01-15T08:00:00.000Z"),
        LogRow(None, "g3", "", "", ""),
    ]
    assert has_more is True and read == 13


@pytest.mark.parametrize("body", [
    {"data": [_item()], "pagination": {"has_more": "true"}},
    {"data": [_item()], "pagination": {"has_more": 1}},
    {"data": [_item()], "pagination": {"more": True}},
    {"data": [_item()], "pagination": [True]},
    {"data": [_item()], "has_more": True},
])
def test_only_a_literal_true_has_more_reads_on(body: dict[str, Any]) -> None:
    rows, has_more, read = _submission.parse_rows(body)
    assert (len(rows), has_more, read) == (1, False, 1)


@pytest.mark.parametrize("data", [None, {"0": _item()}, "rows", 3])
def test_a_page_without_a_list_of_rows_reads_as_empty(data: Any) -> None:
    assert _submission.parse_rows({"data": data, "pagination": {"has_more": True}}) == (
        [], True, 0)


# -- the rate budget ----------------------------------------------------------------------------

def test_an_idle_budget_refills_to_its_limit_and_no_further() -> None:
    budget = RateBudget(limit=3, period=30.0)
    assert [budget.reserve(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert budget.reserve(0.0) == pytest.approx(10.0)   # one slot per 10 s
    # A day later: three slots, not a day's worth.
    assert [budget.reserve(86400.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert budget.reserve(86400.0) == pytest.approx(10.0)
    assert budget.reserve(86400.0) == pytest.approx(20.0)  # the queue grows by one slot each
    assert budget.reserve(86400.0 + 25.0) == pytest.approx(5.0)  # 2.5 slots back since


def test_the_shared_budget_is_the_default_budget() -> None:
    budget = RateBudget()
    assert (budget.limit, budget.period) == _submission.LOGS_RATE_LIMIT == (180, 60.0)
    assert [budget.reserve(5.0) for _ in range(180)] == [0.0] * 180
    assert budget.reserve(5.0) == pytest.approx(60.0 / 180)


def test_a_slot_refilled_in_part_is_still_a_slot_taken_now() -> None:
    budget = RateBudget(limit=3, period=30.0)
    assert [budget.reserve(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    # 15 s later 1.5 slots are back: one is taken at once (0 s, never a negative wait) ...
    assert budget.reserve(15.0) == 0.0
    # ... and the half slot left makes the next one wait 5 s.
    assert budget.reserve(15.0) == pytest.approx(5.0)


def test_a_cleaned_prefix_of_exactly_the_room_left_is_not_cut() -> None:
    room = _submission._PREFIX_MAX - 17  # the hash and its dash
    run_id = "run+" + "x" * (room - len("kling:d::t:-1") - 4)
    raw = f"kling:d:{run_id}:t:-1"
    assert len(raw) == room
    digest = hashlib.sha256(raw.encode()).hexdigest()[:16]
    assert _submission.task_prefix("d", run_id, "t", -1) == f"{raw.replace('+', '_')}-{digest}"
