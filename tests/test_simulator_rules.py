"""The simulator keeps the published contract and its own prices, not the provider's rules.

Creates are checked against the published OpenAPI documents (an empty ``prompt`` the schema
allows is accepted: refusing it is the provider's job, before paying), undeclared methods get
the API's 405, and each generation is charged from the simulator's own price list by its own
arithmetic: the provider's estimate is not consulted, so "estimate equals charge" is a finding.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

import kling_provider._money.pricing
from kling_provider.testing._billing import UNPRICED_USD, price_of
from kling_provider.testing.simulator import KlingSimulator
from tests.conftest import SECRET_KEY

AUTH = {"Authorization": f"Bearer {SECRET_KEY}"}
LEGACY = "/v2/generate/video/kling/generation"
UNIFIED = "/v2/video/generations"


def post(sim: KlingSimulator, body: dict[str, Any], path: str = LEGACY) -> httpx.Response:
    return httpx.post(sim.base_url + path, json=body, headers=AUTH)


@pytest.mark.parametrize(("model", "path", "extra", "usd"), [
    ("klingai/v2-master-text-to-video", LEGACY, {}, 1.40),  # variants by duration, 5 s
    ("klingai/v2-master-text-to-video", LEGACY, {"duration": 10}, 2.80),
    ("kling-video/v1.6/pro/text-to-video", LEGACY, {"duration": 10}, 0.98),  # fixed per second
    # generate_audio left out: the published schema's default (true) is what runs and is paid
    ("klingai/video-v2-6-pro-text-to-video", UNIFIED, {}, 0.70),
    ("klingai/video-v2-6-pro-text-to-video", UNIFIED, {"generate_audio": False}, 0.35),
])
def test_charges_come_from_the_simulators_own_prices(simulator: KlingSimulator,
                                                     monkeypatch: pytest.MonkeyPatch, model: str,
                                                     path: str, extra: dict[str, Any],
                                                     usd: float) -> None:
    def not_here(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the simulator priced with the provider's estimate")

    monkeypatch.setattr(kling_provider._money.pricing, "estimate_price", not_here)
    created = post(simulator, {"model": model, "prompt": "p", **extra}, path)
    assert created.status_code == 200, created.text
    [generation] = simulator._generations.values()
    assert generation.usd == pytest.approx(usd)


def test_price_list_edits_change_the_charge_and_unknown_prices_charge_a_flat_sum() -> None:
    listing = {"data": [{"id": "m", "pricing": {"kind": "fixed", "units": [
        {"name": "second", "price": 0.3, "per": 2}, {"unit": "video", "price": 0.05}]}},
        {"id": "v", "aliases": ["v-alias"], "pricing": {"kind": "variable"}},
        {"id": "w", "pricing": {"kind": "fixed", "units": [{"name": "token", "price": 1}]}}]}
    assert price_of(listing, "m", {"duration": 10}) == pytest.approx(1.55)
    assert price_of(listing, "m", {}) == pytest.approx(0.80)  # no duration: 5 s
    assert price_of(listing, "v-alias", {}) == UNPRICED_USD
    assert price_of(listing, "w", {}) == UNPRICED_USD  # a unit it cannot count
    assert price_of(listing, "absent", {}) == UNPRICED_USD


def test_an_empty_prompt_the_schema_allows_is_accepted(simulator: KlingSimulator) -> None:
    created = post(simulator, {"model": "klingai/v2-master-text-to-video", "prompt": ""})
    assert created.status_code == 200, created.text
    missing = post(simulator, {"model": "klingai/v2-master-text-to-video"})
    assert missing.status_code == 400
    assert missing.json()["message"] == ("Body validation error\n'body': 'prompt' is a "
                                         "required property")
    wrong_type = post(simulator, {"model": "klingai/v2-master-text-to-video", "prompt": 5})
    assert wrong_type.json()["message"] == "Body validation error\n'prompt': 5 is not of type 'string'"
    other_family = post(simulator, {"model": "klingai/video-v3-pro-text-to-video"})
    assert other_family.status_code == 400 and "Invalid enum value for 'model'" in \
        other_family.json()["message"]
    assert post(simulator, {"model": "klingai/video-v3-pro-text-to-video"}, UNIFIED).status_code \
        == 200
    assert len(simulator.generation_ids()) == 2


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("PUT", LEGACY, "GET, POST"), ("DELETE", UNIFIED, "GET, POST"), ("PATCH", "/v2/logs", "GET"),
    ("OPTIONS", "/v2/billing", "GET"), ("TRACE", "/_simulator/faults", "POST"),
    # GET and POST too, where the path serves only the other (one route table decides both)
    ("GET", "/_simulator/faults", "POST"), ("POST", "/v2/billing", "GET")])
def test_undeclared_methods_get_405_with_allow(simulator: KlingSimulator, method: str,
                                               path: str, allow: str) -> None:
    with httpx.Client() as client:
        answer = client.request(method, simulator.base_url + path, content=b'{"a": 1}',
                                headers=AUTH)
        assert answer.status_code == 405 and answer.headers["Allow"] == allow
        assert answer.json()["statusCode"] == 405 and answer.json()["path"] == path
        assert set(answer.json()) == {"message", "path", "requestId", "statusCode", "timestamp"}
        # the same keep-alive connection still serves: the refused body was read, not left
        assert client.get(simulator.base_url + "/v1/models").status_code == 200
    assert simulator.generation_ids() == []
    unknown = httpx.request("PUT", simulator.base_url + "/nowhere")
    assert unknown.status_code == 404 and unknown.json()["statusCode"] == 404
    cdn = httpx.request("DELETE", simulator.cdn_url + "/files/abc/output.mp4")
    assert cdn.status_code == 405 and cdn.headers["Allow"] == "GET"


def test_bad_simulator_faults_are_a_400_naming_the_field(simulator: KlingSimulator) -> None:
    answer = post(simulator, {"model": "klingai/v2-master-text-to-video", "prompt": "p",
                              "simulator_faults": {"no_such_fault": 1}})
    assert answer.status_code == 400 and "no_such_fault" in answer.json()["message"]
    assert simulator.generation_ids() == []
