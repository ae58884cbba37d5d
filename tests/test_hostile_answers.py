"""Issue 15's first table, the rows about what the API answers: a number that is not finite in
an answer after paying is ignored with a warning, never a crash between payment and delivery.

The operator talks to the simulator over real HTTP; the completed answer is rewritten on its way
back (JSON numbers such as ``1e400`` that Python reads as infinity, ``"NaN"`` strings, cost
headers), the way a proxy or a new API release could change it.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import httpx
import pytest

from kling_provider import metrics
from kling_provider._money.pricing import estimate_price
from kling_provider._money.spend import format_duration, spend_summary, with_cost_headers
from kling_provider.operators.kling import KlingGenerateVideoOperator
from kling_provider.testing.simulator import KlingSimulator
from kling_provider.types import Generation
from tests.conftest import FakeClock, StateStoreStub, context_for
from tests.test_airflow_layer import RACCOON

#: Answers a completed generation's fetch with these usage numbers, as raw JSON text.
HOSTILE_USAGE = ['{"credits_used": 1e400, "usd_spent": 1e400}',
                 '{"credits_used": "NaN", "usd_spent": "NaN"}',
                 '{"tokens_used": -1e400, "usd_spent": "-Infinity"}',
                 '{"credits_used": NaN, "usd_spent": Infinity}']


def rewrite_completed(monkeypatch: pytest.MonkeyPatch, usage: str, header: str) -> None:
    """Every completed fetch answer from the simulator reaches the client with ``usage`` as
    its ``meta.usage`` and ``header`` as its cost headers."""
    original = httpx.HTTPTransport.handle_request

    def handle(self: httpx.HTTPTransport, request: httpx.Request) -> httpx.Response:
        response = original(self, request)
        if request.method != "GET" or "generation_id=" not in str(request.url):
            return response
        body = json.loads(response.read())
        if body.get("status") != "completed":
            return response
        body["meta"] = {"usage": "USAGE"}
        text = json.dumps(body).replace('"USAGE"', usage)
        headers = {"content-type": "application/json", "x-aimlapi-usd-spent": header,
                   "x-aimlapi-credits-used": header}
        return httpx.Response(200, content=text.encode(), headers=headers)

    monkeypatch.setattr(httpx.HTTPTransport, "handle_request", handle)


@pytest.mark.parametrize("usage", HOSTILE_USAGE)
def test_non_finite_spend_in_the_answer_is_ignored_after_paying(
        airflow_sim: KlingSimulator, clock: FakeClock, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture, usage: str) -> None:
    rewrite_completed(monkeypatch, usage, "NaN")
    sent: list[tuple[str, Any]] = []

    class Stats:  # a real backend would receive what the task sends
        @staticmethod
        def incr(stat: str, value: Any, tags: Any = None) -> None:
            sent.append((stat, value))

        @staticmethod
        def timing(stat: str, value: Any, tags: Any = None) -> None:
            sent.append((stat, value))

    monkeypatch.setattr(metrics, "_stats", lambda: Stats)
    operator = KlingGenerateVideoOperator(task_id="generate", poll_interval=20,
                                          deferrable=False, **RACCOON)
    with caplog.at_level(logging.WARNING):
        result = operator.execute(context_for(StateStoreStub()))
    assert result["status"] == "completed" and result["video_url"]
    assert result["credits_used"] is None and result["usd_spent"] is None
    json.dumps(result, allow_nan=False)  # XCom-safe everywhere
    assert airflow_sim.ledger.count(method="POST") == 1
    assert "not a finite number" in caplog.text
    assert (metrics.GENERATION_COMPLETED, 1) in sent
    assert all(math.isfinite(v) for _, v in sent if isinstance(v, float))
    assert not {metrics.CREDITS_USED, metrics.USD_SPENT} & {stat for stat, _ in sent}


# -- the rules, pure -------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan"), "NaN", "1e400",
                                   "Infinity", 10**400])
def test_generation_reads_non_finite_numbers_as_absent(value: Any) -> None:
    generation = Generation.from_api({"id": "g", "status": "completed",
                                      "video": {"url": "u", "duration": value, "file_size": value},
                                      "meta": {"usage": {"credits_used": value,
                                                         "usd_spent": value}}})
    assert generation.credits_used is None and generation.usd_spent is None
    assert generation.duration is None and generation.file_size is None


@pytest.mark.parametrize("value", [float("inf"), float("nan"), 10**400])
def test_metrics_drop_non_finite_numbers(monkeypatch: pytest.MonkeyPatch, value: Any) -> None:
    sent: list[tuple[str, Any]] = []

    class Stats:
        @staticmethod
        def incr(stat: str, count: Any, tags: Any = None) -> None:
            sent.append((stat, count))

        timing = incr

    monkeypatch.setattr(metrics, "_stats", lambda: Stats)
    metrics.generation_completed("m", seconds=value, credits_used=value, usd_spent=value)
    assert sent == [(metrics.GENERATION_COMPLETED, 1)]
    metrics.generation_completed("m", seconds=1.5, credits_used=2.6, usd_spent=0.5)
    assert (metrics.CREDITS_USED, 3) in sent and (metrics.USD_SPENT, 0.5) in sent


@pytest.mark.parametrize("header", ["NaN", "inf", "-Infinity", "1e400", "-1"])
def test_cost_headers_that_are_not_finite_are_ignored(header: str) -> None:
    assert with_cost_headers({"id": "g"}, {"x-aimlapi-usd-spent": header,
                                           "x-aimlapi-credits-used": header}) == {"id": "g"}


def test_spend_sentences_never_fail_on_odd_numbers() -> None:
    assert format_duration(float("inf")) == "an unknown time"
    assert format_duration(float("nan")) == "an unknown time"
    text = spend_summary("g", credits_used=float("inf"), usd_spent=float("nan"),
                         generation_seconds=float("inf"), estimated_usd=float("-inf"))
    assert "unknown credits" in text and "unknown USD" in text and "an unknown time" in text


@pytest.mark.parametrize("rate", [{"price": "NaN", "unit": "second"},
                                  {"price": 1e308, "per": 1e-308, "unit": "second"},
                                  {"price": "Infinity", "unit": "video"},
                                  {"price": 0.1, "per": "NaN", "unit": "video"}])
def test_a_price_that_is_not_finite_is_an_unknown_price(rate: dict[str, Any]) -> None:
    estimate = estimate_price(RACCOON["model"], {"kind": "fixed", "units": [rate]},
                              {"duration": 5}, source="test")
    assert estimate.usd is None
