"""The account and service reads against the simulator: test_connection and the live price list.

``test_connection`` is what a user clicks before trusting a connection with paid work, so every
way it can end is pinned here with the sentence the user reads: the key accepted, a refused key,
no credits, a server error (one attempt, never retried) and a dropped connection. The price list
(``KlingHook.estimate_price``, which the spend guard and the task log use) is pinned by what it
asks for and by the reason it gives when it cannot price: the estimate never blocks, so the
reason is all a user learns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from kling_provider._api import service as _service
from kling_provider._api.protocol import ApiRequest
from kling_provider._money import pricing as _pricing
from kling_provider.catalogue import endpoint_path
from kling_provider.hooks.kling import KlingHook
from kling_provider.testing.records import Faults
from kling_provider.testing.simulator import KlingSimulator
from tests.conftest import SECRET_KEY, FakeClock

V2_MASTER = "klingai/v2-master-text-to-video"
V21_MASTER = "klingai/v2.1-master-text-to-video"
V3_STANDARD = "klingai/video-v3-standard-text-to-video"
MODELS = "/v1/models"


def probe(simulator: KlingSimulator, kling_env: Callable[..., None], clock: FakeClock,
          key: str = SECRET_KEY, **extra: Any) -> tuple[bool, str]:
    kling_env(simulator.base_url, key=key, **extra)
    hook = KlingHook(clock=clock)
    try:
        return hook.test_connection()
    finally:
        hook.close()


def api_requests(simulator: KlingSimulator) -> list[tuple[str, str, int | None]]:
    return [(e.method, e.path, e.status) for e in simulator.ledger.entries(origin="api")]


def set_price(simulator: KlingSimulator, model: str, price: float) -> None:
    for entry in simulator.price_list["data"]:
        if entry["id"] == model:
            entry["pricing"]["variants"][0]["price"] = price


# -- test_connection ------------------------------------------------------------------------------

@pytest.mark.parametrize("family", ["legacy", "unified"])
def test_an_accepted_key_is_reported_after_one_free_read(
        simulator: KlingSimulator, kling_env: Callable[..., None], clock: FakeClock,
        family: str) -> None:
    ok, message = probe(simulator, kling_env, clock, endpoint_family=family)
    assert ok is True
    assert message == (f"Connected to {simulator.base_url}: API key accepted "
                       f"({family} endpoint).")
    # One GET of the family's fetch endpoint for an id nobody created: nothing paid or made.
    assert api_requests(simulator) == [("GET", endpoint_path(family), 404)]
    [sent] = simulator.ledger.entries(origin="api")
    assert sent.query == "generation_id=airflow-connection-test"  # docs/connection.rst names it
    assert sent.headers["authorization"] == f"Bearer {SECRET_KEY}"
    assert simulator.generation_ids() == []


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_server_error_is_a_failed_test_not_retried(
        simulator: KlingSimulator, kling_env: Callable[..., None], clock: FakeClock,
        status: int) -> None:
    simulator.faults = Faults(statuses=[status], retry_after=1)
    ok, message = probe(simulator, kling_env, clock)
    assert ok is False
    assert message == f"The API at {simulator.base_url} answered HTTP {status}."
    assert api_requests(simulator) == [("GET", endpoint_path("legacy"), status)]
    assert clock.sleeps == []  # a connection test reports what it meets, at once


def test_a_dropped_connection_is_a_failed_test_that_names_it(
        simulator: KlingSimulator, kling_env: Callable[..., None], clock: FakeClock) -> None:
    simulator.faults = Faults(drop_connections=1)
    ok, message = probe(simulator, kling_env, clock)
    assert ok is False
    assert message.startswith(f"Could not reach {simulator.base_url} (RemoteProtocolError): ")
    assert api_requests(simulator) == [("GET", endpoint_path("legacy"), 0)]  # 0: dropped
    assert SECRET_KEY not in message


def test_a_refused_key_fails_the_test_naming_the_connection_not_the_key(
        simulator: KlingSimulator, kling_env: Callable[..., None], clock: FakeClock) -> None:
    wrong = "sk-wrong-key-7f3a9c"
    ok, message = probe(simulator, kling_env, clock, key=wrong)
    assert ok is False
    assert message.startswith("The API rejected the API key of connection 'kling_default' (401) "
                              "while checking the connection: This request requires a valid "
                              "API key.")
    assert message.endswith("Check the connection's API Key (password field).")
    assert wrong not in message
    assert api_requests(simulator) == [("GET", endpoint_path("legacy"), 401)]


def test_an_account_without_credits_fails_the_test(
        simulator: KlingSimulator, kling_env: Callable[..., None], clock: FakeClock) -> None:
    simulator.faults = Faults(statuses=[403])
    ok, message = probe(simulator, kling_env, clock)
    assert ok is False
    assert message.startswith("The account behind connection 'kling_default' may not do this "
                              "(403) while checking the connection: Forbidden")


# -- the live price list --------------------------------------------------------------------------

def test_the_price_list_asks_for_the_models_prices_only(sim_hook: KlingHook,
                                                        simulator: KlingSimulator) -> None:
    first = sim_hook.estimate_price(V2_MASTER, {"duration": 5})
    assert (first.usd, first.source) == (1.4, "live price list")  # include=pricing was asked
    # Another model's price changes: the answer for this one (asked by id) is the same, so the
    # list is not downloaded again.
    set_price(simulator, V21_MASTER, 9.0)
    second = sim_hook.estimate_price(V2_MASTER, {"duration": 5})
    assert (second.usd, second.source) == (1.4, "live price list, unchanged (304)")
    gets = simulator.ledger.entries(path=MODELS)
    assert [e.status for e in gets] == [200, 304]
    assert [parse_qs(e.query) for e in gets] == [{"include": ["pricing"], "id": [V2_MASTER]}] * 2


def test_a_changed_price_list_replaces_the_cached_one(sim_hook: KlingHook,
                                                      simulator: KlingSimulator) -> None:
    assert sim_hook.estimate_price(V2_MASTER, {"duration": 10}).usd == 2.8
    set_price(simulator, V2_MASTER, 0.5)
    changed = sim_hook.estimate_price(V2_MASTER, {"duration": 5})
    assert (changed.usd, changed.source) == (0.5, "live price list")
    again = sim_hook.estimate_price(V2_MASTER, {"duration": 5})
    assert (again.usd, again.source) == (0.5, "live price list, unchanged (304)")
    gets = simulator.ledger.entries(path=MODELS)
    assert [e.status for e in gets] == [200, 200, 304]
    # Each request revalidates with the ETag of the answer before it.
    assert "if-none-match" not in gets[0].headers
    assert gets[1].headers["if-none-match"] != gets[2].headers["if-none-match"]


def test_the_estimate_prices_the_request_the_api_will_run(sim_hook: KlingHook) -> None:
    # A task that leaves duration and generate_audio out is run (and billed) with the schema's
    # defaults, 5 s with audio: the estimate prices those, not an empty request.
    found = sim_hook.estimate_price(V3_STANDARD, {"prompt": "p"})
    assert found.usd == pytest.approx(0.147 * 5)
    assert found.duration == 5
    assert found.basis == "$0.147 per 1 second x 5 s, generate_audio=true"
    assert found.source == "live price list"


def test_a_model_missing_from_the_list_is_unpriced_and_not_cached(
        sim_hook: KlingHook, simulator: KlingSimulator) -> None:
    simulator.price_list["data"] = [e for e in simulator.price_list["data"]
                                    if e["id"] != V2_MASTER]
    for _ in range(2):
        found = sim_hook.estimate_price(V2_MASTER, {"duration": 5})
        assert found.usd is None
        assert found.source == (f"the live price list of {simulator.base_url} could not be "
                                f"used: no price for {V2_MASTER} in it")
        assert found.describe() == (
            f"Price of this {V2_MASTER} generation unknown (the model is not in the price "
            f"list; {found.source}): submitting without a price check.")
    gets = simulator.ledger.entries(path=MODELS)
    assert [e.status for e in gets] == [200, 200]
    assert all("if-none-match" not in e.headers for e in gets)  # nothing was kept


def test_a_host_that_is_not_the_api_gives_its_http_status(
        simulator: KlingSimulator, kling_env: Callable[..., None], clock: FakeClock) -> None:
    # The connection's host points at a server that answers, but not with the model list (the
    # simulator's CDN origin answers 404 to it).
    kling_env(simulator.cdn_url)
    found = KlingHook(clock=clock).estimate_price(V2_MASTER, {"duration": 5})
    assert found.usd is None
    assert found.source == (f"the live price list of {simulator.cdn_url} could not be used: "
                            "HTTP 404")


# -- answers the simulator does not give: the step generator scripted -----------------------------

def run_price_list(answer: httpx.Response | httpx.RequestError,
                   cache: _pricing.PriceListCache) -> tuple[Any, str]:
    steps = _service.price_list_steps(V2_MASTER, "https://api.example.test", cache)
    request = next(steps)
    assert isinstance(request, ApiRequest)
    assert (request.method, request.path) == ("GET", MODELS)
    assert request.params == {"include": "pricing", "id": V2_MASTER}
    assert request.authenticated is False
    try:
        steps.send(answer)
    except StopIteration as done:
        result: tuple[Any, str] = done.value
        return result
    raise AssertionError("the price list read sent a second request")


@pytest.mark.parametrize(("answer", "problem"), [
    (httpx.Response(304), "HTTP 304"),  # a 304 with nothing cached: nothing to reuse
    (httpx.Response(500, json={"message": "Internal server error"}), "HTTP 500"),
    (httpx.Response(200, text="<html>maintenance</html>"), "HTTP 200"),
    (httpx.Response(200, json=[1, 2]), "HTTP 200"),
    (httpx.ReadTimeout("slow"), "ReadTimeout"),
])
def test_an_unusable_answer_leaves_the_price_unknown_with_why(answer: Any, problem: str) -> None:
    cache = _pricing.PriceListCache()
    listing, reason = run_price_list(answer, cache)
    assert listing == {}
    assert reason == f"the live price list of https://api.example.test could not be used: {problem}"
    assert cache.cached("https://api.example.test", V2_MASTER) is None


def test_a_listing_without_an_etag_is_used_but_not_cached() -> None:
    cache = _pricing.PriceListCache()
    body = {"data": [{"id": V2_MASTER, "pricing": {"kind": "variable"}}]}
    listing, reason = run_price_list(httpx.Response(200, json=body), cache)
    assert (listing, reason) == (body, "live price list")
    assert cache.conditional_headers("https://api.example.test", V2_MASTER) == {}
