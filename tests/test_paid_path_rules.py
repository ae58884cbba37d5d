"""The paid path's pure rules at their edges: the spend guard, the price estimate.

Written against the mutation run (``make mutation``): each test pins a boundary or a message a
user reads, so a deliberate bug in ``_guard`` or ``_pricing`` (``<=`` turned ``<``, a rate's unit
set misspelled, a message cut) fails a test here rather than only a real bill.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from kling_provider._money import guard as _guard
from kling_provider._money import pricing as _pricing
from kling_provider._money.pricing import PriceEstimate, estimate_price, find_pricing, request_as_sent
from kling_provider._task import submission as _submission
from kling_provider._task.submission import SubmissionRecord
from kling_provider.exceptions import (
    KlingAuthenticationError,
    KlingCostLimitError,
    KlingInsufficientBalanceError,
    KlingServerError,
    KlingTimeoutError,
)
from kling_provider.hooks.kling import KlingHook
from tests.conftest import SECRET_KEY, FakeClock, Script, api_error, ok

V2_MASTER = "klingai/v2-master-text-to-video"


def estimate(usd: float | None, duration: float | None = 5.0) -> PriceEstimate:
    return PriceEstimate(V2_MASTER, usd, duration, "$0.28 per 1 second x 5 s", "live price list")


# -- max_cost_usd ---------------------------------------------------------------------------------

def test_an_estimate_equal_to_the_limit_is_allowed() -> None:
    _guard.check_max_cost(estimate(1.40), 1.40)  # the limit is inclusive
    _guard.check_max_cost(estimate(1.40), None)  # no limit
    _guard.check_max_cost(estimate(None), 0.01)  # an unknown price never blocks


def test_an_estimate_above_the_limit_names_price_basis_source_and_fix() -> None:
    with pytest.raises(KlingCostLimitError) as refused:
        _guard.check_max_cost(estimate(1.41), 1.4)
    assert str(refused.value) == (
        f"Not submitting: the estimated price of this {V2_MASTER} generation of 5 s is $1.41 "
        "($0.28 per 1 second x 5 s; live price list), above the limit max_cost_usd=1.4. Raise "
        "max_cost_usd or choose a shorter or cheaper generation. Nothing was sent to the API.")


def test_a_limit_message_without_a_duration_says_none() -> None:
    with pytest.raises(KlingCostLimitError) as refused:
        _guard.check_max_cost(estimate(2.0, duration=None), 1)
    assert f"this {V2_MASTER} generation is $2.00 (" in str(refused.value)


# -- check_balance --------------------------------------------------------------------------------

def test_a_balance_equal_to_the_estimate_pays() -> None:
    _guard.check_balance(1.40, estimate(1.40), conn_id="kling_default")
    _guard.check_balance(0.5, estimate(None), conn_id="kling_default")  # unknown price: > 0 will do


@pytest.mark.parametrize(("balance", "usd"), [(1.39, 1.40), (0.0, None), (-2.0, None), (0.0, 0.0)])
def test_a_balance_that_cannot_pay_fails_fast(balance: float, usd: float | None) -> None:
    with pytest.raises(KlingInsufficientBalanceError):
        _guard.check_balance(balance, estimate(usd), conn_id="kling_default")


def test_the_balance_message_names_connection_amounts_and_what_to_do() -> None:
    with pytest.raises(KlingInsufficientBalanceError) as known:
        _guard.check_balance(1.0, estimate(1.4), conn_id="kling_prod")
    assert str(known.value) == (
        "Not submitting: the balance of the account behind connection 'kling_prod' is $1.00, not "
        f"enough for the estimated price $1.40 of this {V2_MASTER} generation. Top up at "
        "https://aimlapi.com/app/billing/ and clear this task. Nothing was sent to the API.")
    with pytest.raises(KlingInsufficientBalanceError) as unknown:
        _guard.check_balance(0.0, estimate(None), conn_id="kling_prod")
    assert "is $0.00, not enough for any generation (price unknown) of this" in str(unknown.value)


# -- GET /v2/billing --------------------------------------------------------------------------------

@pytest.fixture
def balance_hook(kling_env: Callable[..., None], clock: FakeClock) -> Callable[[Script], KlingHook]:
    def make(script: Script) -> KlingHook:
        kling_env("https://api.example.test", live_timings=False)
        return KlingHook(clock=clock, transport=httpx.MockTransport(script))

    return make


def test_the_balance_is_read_from_billing(balance_hook: Callable[[Script], KlingHook]) -> None:
    script = Script(api_error(503, "busy"), ok({"current_balance": "12.5"}))
    assert balance_hook(script).get_balance() == 12.5  # a 5xx on a GET is retried
    assert [(r.method, r.url.path) for r in script.requests] == [("GET", "/v2/billing")] * 2


@pytest.mark.parametrize("body", [{"balance": 3}, {"current_balance": None},
                                  {"current_balance": "lots"}])
def test_an_unreadable_balance_is_a_server_error(balance_hook: Callable[[Script], KlingHook],
                                                 body: dict[str, Any]) -> None:
    with pytest.raises(KlingServerError) as unreadable:
        balance_hook(Script(ok(body))).get_balance()
    assert str(unreadable.value) == (
        "GET /v2/billing answered without a readable 'current_balance' "
        f"(keys: {sorted(body)}).")


def test_a_refused_balance_read_says_what_was_read_without_the_key(
        balance_hook: Callable[[Script], KlingHook]) -> None:
    script = Script(api_error(401, f"invalid key {SECRET_KEY}"))
    with pytest.raises(KlingAuthenticationError) as refused:
        balance_hook(script).get_balance()
    assert "connection 'kling_default' (401) while reading the account balance: invalid key " in (
        str(refused.value))
    assert SECRET_KEY not in str(refused.value)


# -- the price estimate ------------------------------------------------------------------------------

PER_SECOND = {"kind": "fixed", "units": [{"unit": "second", "price": 0.28, "per": 1}]}


@pytest.mark.parametrize(("rate", "usd", "basis"), [
    ({"unit": "second", "price": 0.28, "per": 1}, 2.8, "$0.28 per 1 second x 10 s"),
    ({"unit": "Seconds", "price": 0.56, "per": 2}, 2.8, "$0.56 per 2 seconds x 10 s"),
    ({"unit": "sec", "price": 0.28}, 2.8, "$0.28 per 1 sec x 10 s"),
    ({"unit": "s", "price": 0.28, "per": 1}, 2.8, "$0.28 per 1 s x 10 s"),
    ({"unit": "minute", "price": 12, "per": 1}, 2.0, "$12.00 per 1 minute x 10 s"),
    ({"unit": "minutes", "price": 12}, 2.0, "$12.00 per 1 minutes x 10 s"),
    ({"unit": "min", "price": 12}, 2.0, "$12.00 per 1 min x 10 s"),
    ({"name": "video", "price": 1.5}, 1.5, "$1.50 per 1 video"),
    ({"unit": "videos", "price": 1.5}, 1.5, "$1.50 per 1 videos"),
    ({"unit": "generation", "price": 1.5}, 1.5, "$1.50 per 1 generation"),
    ({"unit": "generations", "price": 1.5}, 1.5, "$1.50 per 1 generations"),
    ({"unit": "request", "price": 1.5}, 1.5, "$1.50 per 1 request"),
    ({"unit": "requests", "price": 1.5}, 1.5, "$1.50 per 1 requests"),
    ({"unit": "item", "price": 1.5}, 1.5, "$1.50 per 1 item"),
    ({"unit": "call", "price": 3, "per": 2}, 1.5, "$3.00 per 2 call"),
    ({"unit": " SECOND ", "price": "0.28", "per": "1"}, 2.8, "$0.28 per 1 second x 10 s"),
])
def test_every_countable_unit_is_priced(rate: dict[str, Any], usd: float, basis: str) -> None:
    found = estimate_price(V2_MASTER, {"kind": "fixed", "units": [rate]}, {"duration": 10},
                           source="live price list")
    assert found.usd == pytest.approx(usd)
    assert (found.basis, found.duration, found.source) == (basis, 10.0, "live price list")


@pytest.mark.parametrize("rate", [
    {"unit": "token", "price": 1}, {"unit": "second", "price": 1, "per": -1}, {"unit": "second"},
    {"unit": "second", "price": None},
    {"unit": "second", "price": "free"}, {"price": 1},
])
def test_a_rate_that_cannot_be_counted_leaves_the_price_unknown(rate: dict[str, Any]) -> None:
    found = estimate_price(V2_MASTER, {"kind": "fixed", "units": [rate]}, {"duration": 5},
                           source="s")
    assert found.usd is None
    assert found.basis == f"a rate's unit is not per second or per video ({[rate]!r})"


def test_rates_add_up_and_a_missing_duration_is_assumed() -> None:
    pricing = {"kind": "fixed", "units": [{"unit": "second", "price": 0.1},
                                          {"unit": "video", "price": 0.25}]}
    found = estimate_price(V2_MASTER, pricing, {}, source="s")
    assert (found.usd, found.duration) == (0.75, 5.0)
    assert found.basis == "$0.10 per 1 second x 5 s + $0.25 per 1 video, duration 5 s assumed"
    unreadable = estimate_price(V2_MASTER, pricing, {"duration": "long"}, source="s")
    assert (unreadable.usd, unreadable.duration) == (0.75, 5.0)
    assert not unreadable.basis.endswith("assumed")  # a duration was sent, just not a number
    none = estimate_price(V2_MASTER, {"kind": "fixed", "units": []}, {"duration": 5}, source="s")
    assert none.usd is None and none.basis == "a rate's unit is not per second or per video ([])"


def test_an_estimate_is_rounded_to_micro_dollars() -> None:
    pricing = {"kind": "fixed", "units": [{"unit": "second", "price": 1, "per": 3}]}
    assert estimate_price(V2_MASTER, pricing, {"duration": 5}, source="s").usd == 1.666667


def test_unknown_prices_say_why() -> None:
    def basis(pricing: Any) -> str:
        found = estimate_price(V2_MASTER, pricing, {"duration": 5}, source="s")
        assert found.usd is None and found.duration == 5.0 and found.source == "s"
        return found.basis

    assert basis(None) == "the model is not in the price list"
    assert basis({"kind": "Variable"}) == (
        "the price list says this model's price depends on its output ('variable')")
    assert basis({"kind": "tiered"}) == "unknown pricing kind 'tiered'"
    assert basis({}) == "unknown pricing kind None"
    assert basis({"kind": "variants", "dimensions": ["duration", "mode"], "variants": [
        {"when": {"duration": 10}, "unit": "video", "price": 1}]}) == (
        "no priced variant matches the request (duration=5, mode=none)")
    assert basis({"kind": "variants", "variants": []}) == (
        "no priced variant matches the request (no dimensions)")


def test_the_most_specific_then_dearest_variant_prices_the_request() -> None:
    pricing = {"kind": "variants", "dimensions": ["duration", "generate_audio"], "variants": [
        "not a variant",
        {"when": {}, "unit": "video", "price": 9},
        {"when": {"duration": "5"}, "unit": "video", "price": 1},
        {"when": {"duration": 5, "generate_audio": True}, "unit": "video", "price": 2},
        {"when": {"duration": 5.0, "generate_audio": "true"}, "unit": "video", "price": 3},
        {"when": {"duration": 5, "generate_audio": False}, "unit": "video", "price": 4},
    ]}
    found = estimate_price(V2_MASTER, pricing, {"duration": 5, "generate_audio": True}, source="s")
    assert (found.usd, found.basis) == (3.0, "$3.00 per 1 video, duration=5, generate_audio=true")
    # a variant naming a field the request does not send does not match it
    found = estimate_price(V2_MASTER, pricing, {"duration": 5}, source="s")
    assert found.usd == 1.0 and found.basis == "$1.00 per 1 video, duration=5"
    # a variant with no `when` matches anything and adds no qualifier
    found = estimate_price(V2_MASTER, pricing, {"duration": 10}, source="s")
    assert found.usd == 9.0 and found.basis == "$9.00 per 1 video"


def test_variants_without_a_price_rank_as_free() -> None:
    pricing = {"kind": "variants", "variants": [
        {"when": {"mode": "pro"}, "unit": "video", "price": None},
        {"when": {"mode": "PRO "}, "unit": "video", "price": 2}]}
    assert estimate_price(V2_MASTER, pricing, {"mode": "pro"}, source="s").usd == 2.0


def test_describe_reads_as_the_task_log_line() -> None:
    assert estimate(1.4).describe() == (
        f"Estimated price of this {V2_MASTER} generation: $1.40 "
        "($0.28 per 1 second x 5 s; live price list).")
    assert PriceEstimate(V2_MASTER, None, 5.0, "why", "where").describe() == (
        f"Price of this {V2_MASTER} generation unknown (why; where): submitting without a "
        "price check.")


def test_find_pricing_matches_ids_and_aliases_case_blind() -> None:
    listing = {"data": ["junk", {"id": "other", "pricing": {"kind": "fixed"}},
                        {"id": "klingai/X", "aliases": [7, "kling-x"], "pricing": PER_SECOND},
                        {"id": "no-pricing", "pricing": "n/a"}]}
    assert find_pricing(listing, " KlingAI/x ") is PER_SECOND
    assert find_pricing(listing, "Kling-X") is PER_SECOND
    assert find_pricing(listing, "no-pricing") is None
    assert find_pricing(listing, "missing") is None
    assert find_pricing({}, "klingai/x") is None
    assert find_pricing({"data": None}, "klingai/x") is None


def test_request_as_sent_fills_and_types_the_schema_defaults() -> None:
    # its unified schema writes `"default": "5"` for an integer duration
    model = "klingai/v2.5-turbo/pro/text-to-video"
    sent = request_as_sent(model, {"prompt": "p", "negative_prompt": None})
    assert sent["prompt"] == "p" and "negative_prompt" not in sent  # None is not sent
    assert sent["duration"] == 5 and isinstance(sent["duration"], int)
    assert request_as_sent("not/a-model", {"prompt": "p", "x": None}) == {"prompt": "p"}
    assert request_as_sent(model, {"duration": 10})["duration"] == 10  # the task's value wins


@pytest.mark.parametrize(("value", "kind", "typed"), [
    ("5", "integer", 5), (5.0, "integer", 5), (True, "integer", True), ("x", "integer", "x"),
    ("0.5", "number", 0.5), (False, "number", False), (None, "number", None),
    ("True ", "boolean", True), ("no", "boolean", False), (1, "boolean", 1),
    ("5", "string", "5"), ("5", None, "5"),
])
def test_schema_defaults_are_typed_as_declared(value: Any, kind: Any, typed: Any) -> None:
    result = _pricing._typed(value, kind)
    assert result == typed and type(result) is type(typed)


def test_the_price_list_cache_keeps_answers_with_an_etag_per_host_and_model() -> None:
    cache = _pricing.PriceListCache()
    listing: dict[str, Any] = {"data": []}
    cache.store("https://a", "m", None, listing)  # no ETag: nothing to revalidate with
    assert cache.cached("https://a", "m") is None
    assert cache.conditional_headers("https://a", "m") == {}
    cache.store("https://a", "m", '"v1"', listing)
    assert cache.cached("https://a", "m") is listing
    assert cache.conditional_headers("https://a", "m") == {"If-None-Match": '"v1"'}
    assert cache.cached("https://b", "m") is None and cache.cached("https://a", "n") is None
    cache.clear()
    assert cache.cached("https://a", "m") is None


# -- the wait's first sleep and the recovery's lookup window ---------------------------------------

GID = "10c09c56-2e00-4a64-89ec-358ff71f8144:kling-video/v2.1/master/text-to-video"


def test_the_first_sleep_never_passes_the_deadline(mock_hook: Callable[..., KlingHook],
                                                   clock: FakeClock) -> None:
    # A deadline closer than the adaptive schedule's early poll (10 s): sleep to the deadline,
    # look once, and stop, instead of sleeping 10 s and looking 7 s late.
    script = Script(ok({"id": GID, "status": "generating"}))
    with pytest.raises(KlingTimeoutError, match="did not finish before the deadline"):
        mock_hook(script).wait_for_generation(GID, poll_interval=10, timeout=3,
                                              poll_schedule="adaptive")
    assert clock.sleeps == [3]
    assert len(script.requests) == 1


def test_a_cleared_task_keeps_looking_in_the_logs_through_their_lag() -> None:
    # A generation may take the task's whole timeout, and its usage-logs row appears up to
    # LOGS_LAG later: until then a cleared task must look for it, not pay again.
    record = SubmissionRecord(client_request_id="kling:d:r:t:-1.t1", model=V2_MASTER,
                              endpoint_family="legacy", intent_at=1000.0, clear_number=0)
    timeout = 600.0
    lag = _submission.LOGS_LAG.total_seconds()
    assert lag >= 60  # the analytics pipeline's lag is minutes, not seconds

    def action(now: float) -> _submission.Action:
        return _submission.decide(record, clear_number=1, now=now, wait_seconds=timeout)

    assert action(1000.0 + timeout + lag - 1) is _submission.Action.RECOVER
    assert action(1000.0 + timeout + lag) is _submission.Action.SUBMIT
    assert _submission.lookup_deadline(1000.0, timeout) == 1000.0 + timeout + lag


def test_rates_that_overflow_or_are_not_rates_leave_the_price_unknown() -> None:
    huge = [{"unit": "second", "price": 1e308}, {"unit": "second", "price": 1e308}]
    found = estimate_price(V2_MASTER, {"kind": "fixed", "units": huge}, {"duration": 10},
                           source="s")
    assert found.usd is None
    assert found.basis == f"the price list's rates do not add up to a finite price ({huge!r})"
    junk = estimate_price(V2_MASTER, {"kind": "fixed", "units": ["junk"]}, {"duration": 5},
                          source="s")
    assert junk.usd is None and junk.basis.startswith("a rate's unit is not per second")


def test_a_false_dimension_reads_false_and_an_unpriced_variant_ranks_below_a_cheap_one() -> None:
    pricing = {"kind": "variants", "variants": [
        {"when": {"generate_audio": False}, "unit": "video", "price": None},
        {"when": {"generate_audio": "false"}, "unit": "video", "price": 0.5}]}
    found = estimate_price(V2_MASTER, pricing, {"generate_audio": False}, source="s")
    assert (found.usd, found.basis) == (
        0.5, "$0.50 per 1 video, generate_audio=false, duration 5 s assumed")
