"""Issue 15's first table, the rows about a world the simulator used to be kinder than: a create
the API refuses outright, usage-log pages full of rows recovery cannot use, and two deployments
sharing one key. Each through the operator and the simulator (with its world knobs), plus the
rules as pure functions.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from kling_provider._api.protocol import RetryPolicy
from kling_provider._task import submission as _submission
from kling_provider._task.submission import STATE_KEY, SubmissionRecord, lookup_steps, parse_rows
from kling_provider.exceptions import KlingError
from kling_provider.testing.simulator import KlingSimulator
from tests.conftest import FakeClock, StateStoreStub, context_for
from tests.test_never_paying_twice import drive, generate, paid

# -- a definite refusal closes the intent -----------------------------------------------------------

REFUSALS = [400, 401, 403, 404]


@pytest.mark.parametrize("status", REFUSALS)
def test_a_refused_create_lets_the_next_try_submit_at_once(airflow_sim: KlingSimulator,
                                                           clock: FakeClock, status: int) -> None:
    """Before: nothing was created, yet the intent stayed open, and after a top-up (or a fixed
    key) the retry looked it up for ``timeout`` + 5 min and failed as "uncertain"."""
    airflow_sim.faults.refusals = [status]
    operator = generate(timeout=600)
    store = StateStoreStub()
    with pytest.raises(KlingError) as error:
        drive(operator, context_for(store, try_number=1))
    assert f"({status})" in str(error.value)
    refused_id = store.data[STATE_KEY]["client_request_id"]
    assert store.data[STATE_KEY]["refused"] is True
    started = clock.now()
    result = drive(operator, context_for(store, try_number=2))
    assert result["status"] == "completed"
    assert airflow_sim.ledger.count(path="/v2/logs") == 0  # no lookup of what cannot exist
    assert clock.now() - started < 600  # no wait for the lookup window
    [(cri, ids)] = paid(airflow_sim).items()
    assert ids == [result["generation_id"]] and cri != refused_id
    assert airflow_sim.ledger.count(method="POST", origin="api") == 2


def test_429_once_retries_are_spent_is_a_refusal_too(airflow_sim: KlingSimulator,
                                                      clock: FakeClock) -> None:
    airflow_sim.faults.statuses = [429] * 5
    airflow_sim.faults.retry_after = 1
    operator = generate(timeout=600)
    store = StateStoreStub()
    with pytest.raises(KlingError, match=r"\(429\)"):
        drive(operator, context_for(store, try_number=1))
    assert store.data[STATE_KEY]["refused"] is True
    result = drive(operator, context_for(store, try_number=2))
    assert result["status"] == "completed"
    assert airflow_sim.ledger.count(path="/v2/logs") == 0


def test_a_create_that_never_left_is_a_refusal_too(airflow_sim: KlingSimulator,
                                                   kling_env: Callable[..., None]) -> None:
    """docs/paying_once.rst: a create that never left (the connection could not be made)
    created nothing, so its intent is closed and the next try submits at once."""
    with socket.socket() as probe:  # a loopback port nothing listens on once this closes
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    kling_env(dead, live_timings=False)
    store = StateStoreStub()
    with pytest.raises(KlingError, match="refused"):
        drive(generate(timeout=600), context_for(store, try_number=1))
    assert store.data[STATE_KEY]["refused"] is True
    kling_env(airflow_sim.base_url)  # the API is back
    result = drive(generate(timeout=600), context_for(store, try_number=2))
    assert result["status"] == "completed"
    assert airflow_sim.ledger.count(path="/v2/logs") == 0  # no lookup of what cannot exist
    assert airflow_sim.ledger.count(method="POST", origin="api") == 1


def test_an_uncertain_create_keeps_its_intent_open(airflow_sim: KlingSimulator,
                                                   clock: FakeClock) -> None:
    """The other side of the line: a 502 after creating may have paid, so the intent stays."""
    operator = generate(timeout=600, extra_params={"simulator_faults": {"create_status": 502}})
    store = StateStoreStub()
    result = drive(operator, context_for(store))
    assert result["status"] == "completed"
    assert not store.data[STATE_KEY].get("refused")
    assert airflow_sim.ledger.count(path="/v2/logs") >= 1


def test_refused_record_rules() -> None:
    intent = SubmissionRecord("kling:d:r:t:-1.t1.abc", "m", "legacy", 100.0)
    refused = intent.refused_now()
    assert refused.refused and refused.generation_id is None
    assert SubmissionRecord.from_json(refused.to_json()) == refused
    assert _submission.decide(refused, clear_number=0, now=101.0,
                              wait_seconds=600) is _submission.Action.SUBMIT
    assert _submission.decide(intent, clear_number=0, now=101.0,
                              wait_seconds=600) is _submission.Action.RECOVER


# -- recovery through pages of rows it cannot use --------------------------------------------------

@pytest.mark.simulator(mixed_logs=140)
def test_recovery_reads_past_pages_of_unusable_rows(airflow_sim: KlingSimulator,
                                                    clock: FakeClock) -> None:
    operator = generate(extra_params={"simulator_faults": {"create_drop": True}})
    store = StateStoreStub()
    result = drive(operator, context_for(store))
    assert result["status"] == "completed"
    assert list(paid(airflow_sim).values()) == [[result["generation_id"]]]
    assert airflow_sim.ledger.count(method="POST", origin="api") == 1


def page(rows: list[Any], has_more: bool) -> dict[str, Any]:
    return {"data": rows, "pagination": {"has_more": has_more}}


def good(cri: str, inference: str = "gen") -> dict[str, Any]:
    return {"inference_id": inference, "client_request_id": cri, "status": "succeeded",
            "model": "m", "created": "2026-11-30T00:00:00.000Z"}


@pytest.mark.parametrize("bad", [
    {}, {"inference_id": None}, {"inference_id": ""}, {"inference_id": {"x": 1}},
    {"inference_id": True}, {"inference_id": "g", "client_request_id": ["x"]},
    {"inference_id": "g", "status": {"a": 1}, "created": 5, "model": None}, "row", None, 7,
])
def test_parse_rows_counts_every_row_read_and_keeps_only_usable_ones(bad: Any) -> None:
    rows, has_more, read = parse_rows(page([bad, good("a"), bad], True))
    assert read == 3 and has_more is True
    assert [r.client_request_id for r in rows if r.client_request_id == "a"] == ["a"]
    assert all(isinstance(r.generation_id, str) and r.generation_id for r in rows)
    assert all(isinstance(r.status, str) and isinstance(r.model, str) for r in rows)


@pytest.mark.parametrize("body", [{}, {"data": "abc"}, {"data": None, "pagination": "x"},
                                  {"data": {"a": 1}, "pagination": {"has_more": "yes"}}])
def test_parse_rows_survives_pages_of_any_shape(body: dict[str, Any]) -> None:
    rows, _, read = parse_rows(body)
    assert rows == [] and read == 0


def run_lookup(pages: list[dict[str, Any]], wanted: str) -> tuple[Any, list[int]]:
    """Drive :func:`lookup_steps` over scripted pages; return its row and the offsets asked."""
    offsets: list[int] = []
    steps = lookup_steps(model="m", since=0.0, match=lambda r: r.client_request_id == wanted,
                         now=lambda: 1_800_000_000.0,
                         policy=RetryPolicy(max_attempts=1),
                         conn_id="c", budget=_submission.RateBudget(10**6, 1.0))
    reply: Any = None
    while True:
        try:
            step = steps.send(reply)
        except StopIteration as done:
            return done.value, offsets
        if isinstance(step, float):
            reply = None
            continue
        offsets.append(int((step.params or {})["offset"]))
        reply = _response(pages[len(offsets) - 1])


def _response(body: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, json=body)


def test_lookup_pages_by_rows_read_and_ends_only_on_has_more_false() -> None:
    unusable = [{"inference_id": None, "client_request_id": "x"}] * 100
    pages = [page(unusable, True), page([*unusable[:40], good("mine", "g-mine")], False)]
    row, offsets = run_lookup(pages, "mine")
    assert offsets == [0, 100]
    assert row is not None and row.generation_id == "g-mine"
    mixed = [good("other", f"g{i}") if i % 2 else {"inference_id": ""} for i in range(100)]
    row, offsets = run_lookup([page(mixed, True), page(mixed, True), page([], False)], "mine")
    assert row is None and offsets == [0, 100, 200]


def test_lookup_stops_on_an_empty_page_that_claims_more() -> None:
    row, offsets = run_lookup([page([], True)], "mine")
    assert row is None and offsets == [0]


# -- two deployments sharing one key ------------------------------------------------------------

def test_two_deployments_with_the_same_ids_never_adopt_each_others_generation(
        airflow_sim: KlingSimulator, clock: FakeClock) -> None:
    """Same DAG, run and task ids in two Airflow deployments on one key. Before: both sent
    ``kling:dag:<run>:generate:-1.t1``, and B's recovery adopted A's finished generation."""
    first = drive(generate(deferrable=False), context_for(StateStoreStub()))
    other = generate(deferrable=False, extra_params={"simulator_faults": {"create_drop": True}})
    store = StateStoreStub()
    second = drive(other, context_for(store))
    assert second["generation_id"] != first["generation_id"]
    ids = paid(airflow_sim)
    assert len(ids) == 2 and all(len(v) == 1 for v in ids.values())
    assert ids[store.data[STATE_KEY]["client_request_id"]] == [second["generation_id"]]


def test_a_cut_task_part_keeps_the_task_id_and_map_index() -> None:
    prefix = _submission.task_prefix("kling_retry_rows", "manual__2026-11-30T01:13:40.123456+00:00",
                                     "answer_lost_then_retry", 3)
    assert ":answer_lost_then_retry:3-" in prefix and prefix.startswith("kling:kling_retry_rows:")


def test_client_request_ids_carry_a_random_part_and_stay_valid_for_the_header() -> None:
    prefix = _submission.task_prefix("d" * 300, "r" * 300, "t", 12345)
    ids = {_submission.next_client_request_id(prefix, 99999, None) for _ in range(50)}
    assert len(ids) == 50
    for cri in ids:
        assert re.fullmatch(r"[A-Za-z0-9._:-]{1,128}", cri)
        assert _submission.earlier_try(prefix, cri, 100000)
        assert not _submission.earlier_try(prefix, cri, 99999)
    stored = SubmissionRecord(next(iter(ids)), "m", "legacy", 0.0)
    again = _submission.next_client_request_id(prefix, 99999, stored)
    assert again != stored.client_request_id and re.search(r"\.t99999r1\.", again)
