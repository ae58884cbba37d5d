"""What the key spent, as the budget and the spend report read it: ``GET /v2/usage`` and
``GET /v2/usage/detail?group_by=day,model`` through the hook, against the simulator on loopback.

The budget adds this figure to the estimate before paying, so a wrong window, a lost group or a
negative amount read as spend would let a task pay past its budget (or stop one that should
run). Answers the simulator never gives (groups that are not objects, a group without counts,
an amount that is not one) are scripted into the step generators at the end.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from kling_provider._api import service as _service
from kling_provider._api.protocol import ApiRequest, RetryPolicy
from kling_provider.exceptions import (
    KlingAuthenticationError,
    KlingNoCreditsError,
    KlingServerError,
)
from kling_provider.hooks.kling import KlingHook
from kling_provider.testing.records import Faults
from kling_provider.testing.simulator import KlingSimulator
from tests.conftest import SECRET_KEY, FakeClock

MODEL = "klingai/v2.1-master-text-to-video"
OTHER = "klingai/v2-master-text-to-video"
DAY = 86400.0


def queries(simulator: KlingSimulator, path: str) -> list[dict[str, list[str]]]:
    return [parse_qs(e.query) for e in simulator.ledger.entries(path=path)]


def day_of(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).date().isoformat()


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat().replace("+00:00", "Z")


# -- GET /v2/usage: the budget's figure ------------------------------------------------------------

def test_the_key_spend_is_what_was_billed_in_the_asked_window(
        sim_hook: KlingHook, simulator: KlingSimulator) -> None:
    now = simulator.service_time()
    simulator.usage.add_spend("1.25", key=SECRET_KEY, model=MODEL, at=now - 2 * DAY)
    simulator.usage.add_spend("0.10", key=SECRET_KEY, model=MODEL, at=now - 3600)
    simulator.usage.add_spend("7", key="another-key-entirely", model=MODEL, at=now - 60)
    assert sim_hook.get_key_spend("24h") == Decimal("0.1")
    assert sim_hook.get_key_spend("7d") == Decimal("1.35")  # exact, as the answer wrote it
    assert queries(simulator, "/v2/usage") == [{"period": ["24h"]}, {"period": ["7d"]}]


def test_nothing_spent_is_zero_not_an_unreadable_answer(sim_hook: KlingHook) -> None:
    assert sim_hook.get_key_spend("30d") == Decimal(0)


def test_a_server_error_is_retried_like_any_read(sim_hook: KlingHook, simulator: KlingSimulator,
                                                 clock: FakeClock) -> None:
    simulator.usage.add_spend("0.5", key=SECRET_KEY, model=MODEL,
                              at=simulator.service_time() - 60)
    simulator.faults = Faults(statuses=[503], retry_after=2)
    assert sim_hook.get_key_spend("24h") == Decimal("0.5")
    assert [e.status for e in simulator.ledger.entries(path="/v2/usage")] == [503, 200]
    assert clock.sleeps == [2]


def test_a_refused_read_names_the_connection_and_the_window_never_the_key(
        sim_hook: KlingHook, simulator: KlingSimulator) -> None:
    simulator.faults = Faults(statuses=[403])
    with pytest.raises(KlingNoCreditsError) as refused:
        sim_hook.get_key_spend("7d")
    message = str(refused.value)
    assert message.startswith("The account behind connection 'kling_default' may not do this "
                              "(403) while reading what the key spent in the last 7d: ")
    assert SECRET_KEY not in message


# -- GET /v2/usage/detail: the spend report's rows --------------------------------------------------

def test_the_detail_is_the_windows_total_and_each_day_and_models_bill(
        sim_hook: KlingHook, simulator: KlingSimulator) -> None:
    now = simulator.service_time()
    simulator.usage.add_spend("0.5", key=SECRET_KEY, model=OTHER, at=now - DAY - 60)
    simulator.usage.add_spend("1.40", key=SECRET_KEY, model=MODEL, at=now - 120)
    simulator.usage.add_spend("0.25", key=SECRET_KEY, model=MODEL, at=now - 60)
    simulator.usage.add_spend("9", key=SECRET_KEY, model=MODEL, at=now - 5 * DAY)  # before start
    start, end = iso(now - 2 * DAY), iso(now)
    total, groups = sim_hook.get_usage_detail(start, end)
    assert total == Decimal("2.15")
    assert groups == [
        _service.UsageGroup(day=day_of(now - DAY - 60), model=OTHER, usd=Decimal("0.5"),
                            charged=1),
        _service.UsageGroup(day=day_of(now - 60), model=MODEL, usd=Decimal("1.65"), charged=2)]
    assert queries(simulator, "/v2/usage/detail") == [
        {"start": [start], "end": [end], "group_by": ["day,model"]}]


def test_a_refused_detail_read_names_what_was_read(sim_hook: KlingHook,
                                                   simulator: KlingSimulator) -> None:
    simulator.faults = Faults(statuses=[403])
    with pytest.raises(KlingNoCreditsError, match=r"^The account behind connection "
                       r"'kling_default' may not do this \(403\) while reading what the key "
                       r"spent per day and model: "):
        sim_hook.get_usage_detail("2027-01-01T00:00:00Z", "2027-01-02T00:00:00Z")


# -- answers the simulator does not give: the step generators scripted -----------------------------

def run(steps: Any, body: Any) -> Any:
    request = next(steps)
    assert isinstance(request, ApiRequest) and request.method == "GET"
    try:
        steps.send(httpx.Response(200, json=body))
    except StopIteration as done:
        return done.value
    raise AssertionError("the read sent a second request")


def detail(body: Any) -> tuple[Decimal, list[_service.UsageGroup]]:
    found: tuple[Decimal, list[_service.UsageGroup]] = run(_service.usage_detail_steps(
        "2027-01-01T00:00:00Z", "2027-01-02T00:00:00Z", RetryPolicy(), conn_id="c"), body)
    return found


def spend(body: Any) -> Decimal:
    found: Decimal = run(_service.usage_steps("24h", RetryPolicy(), conn_id="c"), body)
    return found


@pytest.mark.parametrize(("amount", "read"), [(0.75, "0.75"), (0, "0"), (0.1, "0.1"), (12, "12")])
def test_an_amount_is_read_exactly_as_written(amount: Any, read: str) -> None:
    assert spend({"spend": amount}) == Decimal(read)


@pytest.mark.parametrize("body", [{}, {"spend": None}, {"spend": "0.75"}, {"spend": True},
                                  {"spend": -0.01}, {"spend": [1]}, {"total": 3}])
def test_an_answer_without_a_readable_spend_is_a_server_error_naming_it(body: Any) -> None:
    with pytest.raises(KlingServerError) as raised:
        spend(body)
    assert str(raised.value) == (f"GET /v2/usage answered without a readable 'spend' "
                                 f"(keys: {sorted(body)}).")


def test_groups_that_are_not_objects_are_skipped_and_missing_counts_are_zero() -> None:
    total, groups = detail({"spend": 3, "groups": [
        "2027-01-01", None,
        {"day": "2027-01-01", "model": "a", "spend": 1, "requests": {"charged": 2}},
        {"spend": 0},  # no day, no model, no counts
        {"day": "2027-01-02", "model": "b", "spend": 2, "requests": {"charged": "3"}},
        {"day": "2027-01-02", "model": "c", "spend": 0, "requests": ["charged"]},
        {"day": "2027-01-02", "model": "d", "spend": 0, "requests": {"total": 4}}]})
    assert total == Decimal(3)
    assert groups == [_service.UsageGroup("2027-01-01", "a", Decimal(1), 2),
                      _service.UsageGroup("", "", Decimal(0), 0),
                      _service.UsageGroup("2027-01-02", "b", Decimal(2), 0),
                      _service.UsageGroup("2027-01-02", "c", Decimal(0), 0),
                      _service.UsageGroup("2027-01-02", "d", Decimal(0), 0)]


@pytest.mark.parametrize(("body", "message"), [
    ({"spend": 1}, "GET /v2/usage/detail answered without 'groups' (keys: ['spend'])."),
    ({"spend": 1, "groups": {"day": "2027-01-01"}},
     "GET /v2/usage/detail answered without 'groups' (keys: ['groups', 'spend'])."),
    ({"groups": []}, "GET /v2/usage/detail answered without a readable 'spend' "
                     "(keys: ['groups'])."),
    ({"spend": 1, "groups": [{"day": "2027-01-01", "model": "a", "spend": -1}]},
     "GET /v2/usage/detail answered without a readable 'spend' (keys: ['day', 'model', "
     "'spend'])."),
])
def test_an_unreadable_detail_is_a_server_error_naming_what_is_missing(body: Any,
                                                                       message: str) -> None:
    with pytest.raises(KlingServerError) as raised:
        detail(body)
    assert str(raised.value) == message


KEY = "sk-echoed-0123456789abcdef"


@pytest.mark.parametrize("read", ["spend", "detail"])
def test_a_key_the_service_echoes_reaches_neither_the_error_nor_the_rows(read: str) -> None:
    steps = (_service.usage_steps("24h", RetryPolicy(), conn_id="c", secrets=(KEY,))
             if read == "spend" else
             _service.usage_detail_steps("2027-01-01T00:00:00Z", "2027-01-02T00:00:00Z",
                                         RetryPolicy(), conn_id="c", secrets=(KEY,)))
    next(steps)
    with pytest.raises(KlingAuthenticationError) as refused:
        steps.send(httpx.Response(401, json={"message": f"bad header Bearer {KEY}"}))
    assert KEY not in str(refused.value) and "bad header Bearer ***" in str(refused.value)
    rows = _service.usage_detail_steps("2027-01-01T00:00:00Z", "2027-01-02T00:00:00Z",
                                       RetryPolicy(), conn_id="c", secrets=(KEY,))
    _, groups = run(rows, {"spend": 1, "groups": [{"day": "2027-01-01", "model": f"m {KEY}",
                                                   "spend": 1}]})
    assert [g.model for g in groups] == ["m ***"]  # a report row goes to XCom
