"""Money: price estimates, the guard before paying, spend in XCom / Asset extras / logs / metrics.

Estimates are pure (``_pricing``) and checked against hand-computed figures for every pricing
shape the model list publishes; the guard, the balance check, the ETag cache and the cost
headers are checked against the simulator (a real HTTP server), whose ledger proves that no
request reached the create endpoint when the guard refused.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Mapping
from typing import Any

import httpx
import pytest
from airflow.providers.common.compat.sdk import AirflowFailException, TaskDeferred

from kling_provider import metrics
from kling_provider._money import pricing as _pricing
from kling_provider._money.pricing import (
    estimate_price,
    find_pricing,
    request_as_sent,
)
from kling_provider._money.spend import (
    format_duration,
    format_usd,
    run_total,
    spend_summary,
    with_cost_headers,
)
from kling_provider._storage.lineage import dataset_id
from kling_provider.catalogue import endpoint_path
from kling_provider.exceptions import (
    KlingCostLimitError,
    KlingInsufficientBalanceError,
    KlingNoCreditsError,
    KlingTimeoutError,
    KlingValidationError,
)
from kling_provider.hooks.kling import KlingHook
from kling_provider.operators.kling import (
    KLING_VIDEOS_ASSET,
    PROMPT_LABEL_TEMPLATE,
    KlingDownloadVideoOperator,
    KlingGenerateVideoOperator,
    KlingTextToVideoOperator,
    asset_extra,
)
from kling_provider.testing._billing import simulator_price_list
from kling_provider.testing.simulator import KlingSimulator
from tests.conftest import SECRET_KEY, FakeClock, StateStoreStub, context_for

V2_MASTER = "klingai/v2-master-text-to-video"
V3_STANDARD = "klingai/video-v3-standard-text-to-video"


def estimate(model: str, pricing: Mapping[str, Any] | None, **request: Any) -> _pricing.PriceEstimate:
    return estimate_price(model, pricing, request_as_sent(model, request), source="test")


# -- pure: estimates ------------------------------------------------------------------------------

def per_second(price: float, per: float = 1) -> dict[str, Any]:
    return {"kind": "fixed", "units": [{"name": "second", "price": price, "per": per}]}


def test_fixed_rate_reads_price_with_per_and_the_duration_sent() -> None:
    assert estimate("m", per_second(0.056), duration=10).usd == pytest.approx(0.56)
    assert estimate("m", per_second(0.056), duration="10").usd == pytest.approx(0.56)
    # `per` is not always 1: $14 per 100 seconds is $0.14 a second.
    cheap = estimate("m", per_second(14, per=100), duration=5)
    assert cheap.usd == pytest.approx(0.70)
    assert cheap.basis == "$14.00 per 100 second x 5 s"


@pytest.mark.parametrize(("price", "basis", "usd"), [
    (0.147, "$0.147 per 1 second x 10 s", "$1.47"),  # the rate as published, the total in cents
    (0.098, "$0.098 per 1 second x 10 s", "$0.98"),
    (0.14, "$0.14 per 1 second x 10 s", "$1.40"),
    (2, "$2.00 per 1 second x 10 s", "$20.00"),
    (1234.5, "$1,234.50 per 1 second x 10 s", "$12,345.00"),
    (0.00124, "$0.00124 per 1 second x 10 s", "$0.01"),
    (0.1234567, "$0.123457 per 1 second x 10 s", "$1.23"),
])
def test_the_basis_shows_the_rate_as_published(price: float, basis: str, usd: str) -> None:
    found = estimate("m", per_second(price), duration=10)
    assert found.basis == basis
    assert found.describe() == (f"Estimated price of this m generation: {usd} ({basis}; test).")


def test_variants_match_the_request_and_name_the_variant() -> None:
    pricing = {"kind": "variants", "dimensions": ["resolution"], "variants": [
        {"when": {"resolution": "720p"}, "price": 0.39, "unit": "second", "per": 1},
        {"when": {"resolution": "1080p"}, "price": 0.65, "unit": "second", "per": 1}]}
    # The published example: 5 s at 1080p costs 0.65 x 5 = $3.25.
    found = estimate("m", pricing, resolution="1080p", duration=5)
    assert (found.usd, found.basis) == (3.25, "$0.65 per 1 second x 5 s, resolution=1080p")
    missing = estimate("m", pricing, resolution="4k", duration=5)
    assert missing.usd is None
    assert missing.basis == "no priced variant matches the request (resolution=4k)"


def test_schema_defaults_decide_the_variant_when_the_task_leaves_fields_out() -> None:
    pricing = find_pricing(simulator_price_list(), V3_STANDARD)
    assert pricing is not None and pricing["kind"] == "variants"
    # v3 schemas default generate_audio to true and duration to "5" (a string): audio price, 5 s.
    assert request_as_sent(V3_STANDARD, {"prompt": "p"})["generate_audio"] is True
    default = estimate(V3_STANDARD, pricing, prompt="p")
    assert default.usd == pytest.approx(0.735) and default.duration == 5.0
    assert "generate_audio=true" in default.basis
    silent = estimate(V3_STANDARD, pricing, prompt="p", generate_audio=False, duration=10)
    assert silent.usd == pytest.approx(0.98)


def test_legacy_schema_without_default_uses_the_other_familys_default() -> None:
    # The legacy v2.1 image-to-video schema has no duration default; the unified one says 5.
    request = request_as_sent("klingai/v2.1-master-image-to-video", {"image_url": "u"})
    assert request["duration"] == 5


def test_unknown_prices_are_estimates_without_usd_and_say_why() -> None:
    assert estimate("m", None).basis == "the model is not in the price list"
    variable = estimate("m", {"kind": "variable"})
    assert variable.usd is None and "'variable'" in variable.basis
    tokens = estimate("m", {"kind": "fixed", "units": [{"name": "token", "price": 3, "per": 1e6}]})
    assert tokens.usd is None and "unit" in tokens.basis
    assert "submitting without a price check" in variable.describe()


def test_model_is_found_by_alias_too() -> None:
    listing = {"data": [{"id": "klingai/new-name", "aliases": ["Old-Name"],
                         "pricing": per_second(0.1)}]}
    assert find_pricing(listing, "old-name") == per_second(0.1)
    assert find_pricing(listing, "other") is None


def test_every_catalogue_model_has_a_simulator_price_or_a_stated_reason() -> None:
    from kling_provider.catalogue import list_models

    for model in list_models():
        found = estimate(model, find_pricing(simulator_price_list(), model), prompt="p")
        assert found.usd is not None or "variable" in found.basis, (model, found)


# -- pure: spend --------------------------------------------------------------------------------

def test_cost_headers_fill_what_the_body_leaves_out() -> None:
    headers = {"x-aimlapi-credits-used": "2800000", "x-aimlapi-usd-spent": "1.400000000"}
    legacy = with_cost_headers({"meta": {"usage": {"tokens_used": 7}}}, headers)
    assert legacy["meta"]["usage"] == {"tokens_used": 7, "usd_spent": 1.4}  # body's credits win
    unified = with_cost_headers({"meta": {"usage": {"credits_used": 5, "usd_spent": 0.5}}}, headers)
    assert unified["meta"]["usage"] == {"credits_used": 5, "usd_spent": 0.5}
    bare = with_cost_headers({"id": "g", "meta": None}, headers)
    assert bare["meta"]["usage"] == {"credits_used": 2800000.0, "usd_spent": 1.4}
    assert with_cost_headers({"id": "g"}, {"x-aimlapi-usd-spent": "n/a"}) == {"id": "g"}


def test_spend_summary_reads_well() -> None:
    assert format_usd(1.4) == "$1.40"
    assert format_usd(0.00124) == "$0.00124"
    assert spend_summary("g1", credits_used=2_800_000, usd_spent=1.4, generation_seconds=312,
                         estimated_usd=1.4) == (
        "Generation g1 finished in 5 min 12 s: 2,800,000 credits, $1.40 "
        "(estimated before submitting: $1.40).")
    assert spend_summary("g2", credits_used=None, usd_spent=None, generation_seconds=None) == (
        "Generation g2 finished in an unknown time: unknown credits, unknown USD.")


def test_asset_extra_leaves_unknown_values_out() -> None:
    extra = asset_extra({"generation_id": "g", "model": "m", "uri": "file:///v.mp4", "size": 3,
                         "credits_used": 10.0, "usd_spent": None, "downloaded": True})
    assert extra == {"generation_id": "g", "model": "m", "uri": "file:///v.mp4", "size": 3,
                     "credits_used": 10.0}


def test_lineage_dataset_names_drop_signatures() -> None:
    assert dataset_id("https://cdn.example/v/a.mp4?sig=secret") == ("https://cdn.example", "/v/a.mp4")
    assert dataset_id("/data/a.mp4") == ("file", "/data/a.mp4")
    assert dataset_id("file:///data/a.mp4") == ("file", "/data/a.mp4")
    assert dataset_id("s3://bucket/videos/a.mp4") == ("s3://bucket", "videos/a.mp4")


# -- the guard against the simulator -------------------------------------------------------------

def creates(sim: KlingSimulator) -> int:
    return sum(sim.ledger.count(method="POST", path=endpoint_path(f)) for f in ("legacy", "unified"))


def test_max_cost_fails_before_any_paid_request(airflow_sim: KlingSimulator,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    operator = KlingTextToVideoOperator(task_id="t", model=V2_MASTER, prompt="p", duration=10,
                                        max_cost_usd=2.0)
    with pytest.raises(KlingCostLimitError) as refused:
        operator.execute(context_for(StateStoreStub()))
    message = str(refused.value)
    assert "$2.80" in message and V2_MASTER in message and "10 s" in message
    assert "max_cost_usd=2" in message and "Nothing was sent" in message
    assert isinstance(refused.value, AirflowFailException)  # Airflow does not retry it
    assert creates(airflow_sim) == 0  # no request reached the create endpoint
    assert airflow_sim.ledger.count(method="GET", path="/v1/models") == 1
    logged = capsys.readouterr().out  # Airflow's structlog
    assert f"Estimated price of this {V2_MASTER} generation: $2.80 ($2.80 per 1 video, " \
           "duration=10; live price list)." in logged


def test_within_the_limit_submits_and_reports_spend(airflow_sim: KlingSimulator, clock: FakeClock,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    submitted = clock.now()
    operator = KlingTextToVideoOperator(task_id="t", model=V2_MASTER, prompt="p", duration=5,
                                        max_cost_usd=2.0, deferrable=False, poll_interval=10)
    result = operator.execute(context_for(StateStoreStub()))
    assert creates(airflow_sim) == 1
    assert (result["credits_used"], result["usd_spent"], result["estimated_usd"]) == (
        2_800_000, 1.40, 1.40)
    # Submission to the completed answer: 20 s queued + 300 s generating + the last poll's lag.
    seconds = result["generation_seconds"]
    assert seconds == clock.now() - submitted and 320 <= seconds < 340
    assert json.loads(json.dumps(result)) == result  # XCom-safe
    assert f"finished in {format_duration(seconds)}: 2,800,000 credits, $1.40 (estimated before " \
           "submitting: $1.40)." in capsys.readouterr().out


def test_run_total_counts_each_other_generation_once_in_exact_decimals() -> None:
    from decimal import Decimal

    others = [{"generation_id": "a", "usd_spent": 1.4}, {"generation_id": "b", "usd_spent": 1.4},
              {"generation_id": "a", "usd_spent": 1.4},  # the same generation, read twice
              {"generation_id": "me", "usd_spent": 9.0},  # this task's own (an earlier read)
              {"generation_id": "c", "usd_spent": True}, {"generation_id": "d"},  # unknown USD
              None, "not a result", {"usd_spent": 5}]  # not a generation
    assert run_total(others, "me", 1.4) == (Decimal("4.2"), 5)
    assert run_total([], "me", None) == (None, 1)
    assert spend_summary("g", credits_used=1, usd_spent=1.4, generation_seconds=1,
                         run_so_far=(Decimal("4.2"), 3)).endswith(
        "1 credits, $1.40. This DAG run so far: $4.20 for 3 generations.")
    assert spend_summary("g", credits_used=1, usd_spent=None, generation_seconds=1,
                         run_so_far=(None, 1)).endswith(
        "unknown USD. This DAG run so far: unknown USD for 1 generation.")


def test_the_spend_line_gives_the_runs_running_total(airflow_sim: KlingSimulator,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """The total counts the run's other generate results, a mapped task's every map index
    included (read in the same one request per task id), each generation once."""
    from types import SimpleNamespace

    from airflow.sdk import DAG

    operator = KlingTextToVideoOperator(task_id="generate", model=V2_MASTER, prompt="p",
                                        duration=5, deferrable=False, poll_interval=10)
    with DAG("spend_total", schedule=None):
        variants = KlingTextToVideoOperator.partial(task_id="variants", model=V2_MASTER).expand(
            prompt=["a", "b", "c"])
    context = context_for(StateStoreStub())
    pulled: list[dict[str, Any]] = []

    def xcom_pull(*, task_ids: list[str], key: str) -> list[Any]:
        pulled.append({"task_ids": task_ids, "key": key})
        # The Task SDK's answer: the unmapped task's value, then each map index's.
        return [{"generation_id": "earlier-1", "usd_spent": 1.4},
                json.dumps({"generation_id": "variant-0", "usd_spent": 1.4}),  # see flatten
                {"generation_id": "variant-1", "usd_spent": 2.8},
                {"generation_id": "variant-1", "usd_spent": 2.8}]  # read twice: counted once

    context["ti"].xcom_pull = xcom_pull
    context["dag"] = SimpleNamespace(tasks=[operator, SimpleNamespace(task_id="download"),
                                            variants])
    operator.execute(context)
    assert pulled == [{"task_ids": ["generate", "variants"], "key": "return_value"}]
    assert "2,800,000 credits, $1.40 (estimated before submitting: $1.40). This DAG run so far: " \
           "$7.00 for 4 generations." in capsys.readouterr().out
    context["ti"].xcom_pull = lambda **kwargs: 1 / 0  # unreadable: the line, without a total
    operator.execute(context_for(StateStoreStub()) | {"dag": context["dag"],
                                                      "ti": context["ti"]})
    logged = capsys.readouterr().out
    assert "2,800,000 credits, $1.40 (estimated before submitting: $1.40)." in logged
    assert "so far" not in logged


def test_a_pull_answer_gives_its_results_whatever_its_nesting() -> None:
    """A mapped task's results may come back as a list inside the list (Task SDK versions
    differ): each result counts, once."""
    from decimal import Decimal

    from kling_provider._task.run_results import flatten

    one = {"generation_id": "a", "usd_spent": 1.4}
    two = {"generation_id": "b", "usd_spent": 1.4}
    assert flatten(None) == []
    assert flatten(one) == [one]
    assert flatten([one, None, [two, [one]]]) == [one, two, one]
    assert flatten(("x", b"y", 3)) == ["x", b"y", 3]
    # Airflow 3.3.2 reads a result the triggerer pushed back as its JSON text.
    assert flatten([json.dumps(one), "not json", "[1]"]) == [one, "not json", "[1]"]
    assert run_total(flatten([one, [two, one]]), "me", 1.4) == (Decimal("4.2"), 3)


def test_model_missing_from_the_live_list_warns_and_never_blocks(
        airflow_sim: KlingSimulator, capsys: pytest.CaptureFixture[str]) -> None:
    airflow_sim.price_list["data"] = []
    operator = KlingTextToVideoOperator(task_id="t", model=V2_MASTER, prompt="p",
                                        max_cost_usd=0.01, wait_for_completion=False)
    operator.execute(context_for(StateStoreStub()))
    assert creates(airflow_sim) == 1  # no guessed price: unknown warns, never blocks
    assert f"Price of this {V2_MASTER} generation unknown" in capsys.readouterr().out


def test_unknown_price_in_live_list_does_not_block(airflow_sim: KlingSimulator,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    for entry in airflow_sim.price_list["data"]:
        if entry["id"] == V2_MASTER:
            entry["pricing"] = {"kind": "variable", "currency": "USD"}
    operator = KlingTextToVideoOperator(task_id="t", model=V2_MASTER, prompt="p",
                                        max_cost_usd=0.01, wait_for_completion=False)
    operator.execute(context_for(StateStoreStub()))
    assert creates(airflow_sim) == 1
    assert f"Price of this {V2_MASTER} generation unknown (the price list says this model's " \
           "price depends on its output ('variable'); live price list): submitting without a " \
           "price check." in capsys.readouterr().out


def test_live_prices_are_used_and_cached_with_their_etag(
        airflow_sim: KlingSimulator) -> None:
    for entry in airflow_sim.price_list["data"]:
        if entry["id"] == V2_MASTER:
            entry["pricing"]["variants"][0]["price"] = 0.5
    hook = KlingHook()
    first = hook.estimate_price(V2_MASTER, {"duration": 5})
    second = hook.estimate_price(V2_MASTER, {"duration": 5})
    assert (first.usd, first.source) == (0.5, "live price list")
    assert (second.usd, second.source) == (0.5, "live price list, unchanged (304)")
    gets = airflow_sim.ledger.entries(method="GET", path="/v1/models")
    assert [e.status for e in gets] == [200, 304]
    assert gets[1].headers["if-none-match"].startswith('W/"')
    assert "authorization" not in gets[0].headers  # the model list needs no key


def test_unreadable_price_list_leaves_the_price_unknown(
        kling_env: Any, clock: FakeClock) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    kling_env("https://api.example.test")
    hook = KlingHook(clock=clock, transport=httpx.MockTransport(refuse))
    found = hook.estimate_price(V2_MASTER, {"duration": 10})
    assert found.usd is None  # no price ships with the provider: nothing to guess from
    assert found.source == ("the live price list of https://api.example.test could not be used: "
                            "ConnectError")
    assert found.describe().endswith("submitting without a price check.")


def test_balance_check_fails_fast(airflow_sim: KlingSimulator) -> None:
    airflow_sim.balance_usd = 1.0
    operator = KlingTextToVideoOperator(task_id="t", model=V2_MASTER, prompt="p",
                                        check_balance=True)
    with pytest.raises(KlingInsufficientBalanceError) as refused:
        operator.execute(context_for(StateStoreStub()))
    assert isinstance(refused.value, KlingNoCreditsError)
    assert "$1.00, not enough for the estimated price $1.40" in str(refused.value)
    assert creates(airflow_sim) == 0
    assert airflow_sim.ledger.entries(method="GET", path="/v2/billing")[0].status == 200


def test_balance_is_charged_and_a_dry_account_gets_the_documented_403(
        airflow_sim: KlingSimulator, clock: FakeClock) -> None:
    airflow_sim.balance_usd = 1.5
    hook = KlingHook(clock=clock)
    assert hook.get_balance() == 1.5
    generation_id = hook.create_generation(V2_MASTER, prompt="p", duration=5)
    hook.wait_for_generation(generation_id, poll_interval=10)
    assert hook.get_balance() == pytest.approx(0.10)
    airflow_sim.balance_usd = 0
    with pytest.raises(KlingNoCreditsError, match="run out of credits"):
        hook.create_generation(V2_MASTER, prompt="p")


def test_max_cost_usd_is_validated_at_parse_time() -> None:
    with pytest.raises(KlingValidationError, match=r"'max_cost_usd'=-1.*above 0"):
        KlingTextToVideoOperator(task_id="t", prompt="p", max_cost_usd=-1)


def test_simulator_model_list_shapes(simulator: KlingSimulator) -> None:
    plain = httpx.get(f"{simulator.base_url}/v1/models").json()
    assert plain["object"] == "list" and "pricing" not in plain["data"][0]
    one = httpx.get(f"{simulator.base_url}/model/{V2_MASTER}", params={"include": "pricing"})
    assert one.json()["data"]["pricing"]["kind"] == "variants"
    assert httpx.get(f"{simulator.base_url}/model/nope").status_code == 404
    assert httpx.get(f"{simulator.base_url}/v2/billing").status_code == 401
    balance = httpx.get(f"{simulator.base_url}/v2/billing",
                        headers={"Authorization": f"Bearer {SECRET_KEY}"}).json()
    assert balance == {"current_balance": 100.0, "currency": "USD"}
    alias = httpx.get(f"{simulator.base_url}/models", params={"include": "pricing", "id": V2_MASTER})
    assert [m["pricing"]["kind"] for m in alias.json()["data"]] == ["variants"]
    assert "not quotes" in simulator_price_list()["note"]  # the simulator's prices are placeholders


# -- deferral, metrics, labels, outlets ----------------------------------------------------------

class RecordingStats:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any, dict[str, str]]] = []

    def incr(self, stat: str, count: Any = 1, *, tags: dict[str, str]) -> None:
        self.calls.append(("incr", stat, count, tags))

    def timing(self, stat: str, dt: Any, *, tags: dict[str, str]) -> None:
        self.calls.append(("timing", stat, dt.total_seconds(), tags))


def test_deferred_generation_carries_estimate_and_start_through_the_trigger(
        airflow_sim: KlingSimulator, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    stats = RecordingStats()
    monkeypatch.setattr(metrics, "_stats", lambda: stats)
    operator = KlingTextToVideoOperator(task_id="t", model=V2_MASTER, prompt="p", duration=5)
    context = context_for(StateStoreStub())
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(context)
    kwargs = deferred.value.kwargs or {}
    assert kwargs["estimated_usd"] == 1.40 and kwargs["submitted_at"] == clock.now()
    generation = KlingHook(clock=clock).wait_for_generation(
        airflow_sim.generation_ids()[0], poll_interval=10)
    event = {"status": "success", "generation_id": generation.generation_id,
             "generation": generation.to_dict(include_raw=False)}
    fresh = KlingTextToVideoOperator(task_id="t", model=V2_MASTER, prompt="p", duration=5)
    result = fresh.execute_complete(context, event, **kwargs)
    assert (result["estimated_usd"], result["usd_spent"]) == (1.40, 1.40)
    assert result["generation_seconds"] == clock.now() - kwargs["submitted_at"] >= 320
    tags = {"model": V2_MASTER}
    assert stats.calls == [
        ("incr", "kling.generation.submitted", 1, tags),
        ("incr", "kling.generation.completed", 1, tags),
        # A timedelta keeps microseconds: the wait may end at any fraction of a second.
        ("timing", "kling.generation.duration",
         pytest.approx(result["generation_seconds"], abs=1e-6), tags),
        ("incr", "kling.credits_used", 2_800_000, tags),
        ("incr", "kling.usd_spent", 1.40, tags)]
    # `airflow dags test` resumes with the event only: the state store has the rest.
    bare = KlingTextToVideoOperator(task_id="t", model=V2_MASTER, prompt="p", duration=5)
    again = bare.execute_complete(context, event)
    assert (again["estimated_usd"], again["generation_seconds"]) == (
        1.40, result["generation_seconds"])
    stats.calls = stats.calls[:5]
    failed = {"status": "failure", "generation_id": result["generation_id"], "message": "boom",
              "error_name": "Moderation", "error_message": "blocked"}
    with pytest.raises(Exception, match="blocked|boom"):
        fresh.execute_complete(context, failed, **kwargs)
    assert stats.calls[-1] == ("incr", "kling.generation.failed", 1,
                               {"model": V2_MASTER, "reason": "failed"})


def test_timeouts_count_as_failures_with_their_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    stats = RecordingStats()
    monkeypatch.setattr(metrics, "_stats", lambda: stats)
    with pytest.raises(KlingTimeoutError), metrics.counting_failures("m"):
        raise KlingTimeoutError("late")
    assert stats.calls == [("incr", "kling.generation.failed", 1,
                            {"model": "m", "reason": "timeout"})]


def test_metrics_never_fail_a_task(monkeypatch: pytest.MonkeyPatch,
                                   caplog: pytest.LogCaptureFixture) -> None:
    tried: list[str] = []

    class Broken:
        def incr(self, stat: str, *args: Any, **kwargs: Any) -> None:
            tried.append(stat)
            raise OSError("statsd down")

        timing = incr

    monkeypatch.setattr(metrics, "_stats", lambda: Broken())
    with caplog.at_level(logging.DEBUG, logger="kling_provider"):
        metrics.generation_submitted("m")
        metrics.generation_completed("m", seconds=60.0, credits_used=140.4, usd_spent=1.4)
    # Each metric was really sent and failed; none stopped the next one or the task.
    assert tried == [metrics.GENERATION_SUBMITTED, metrics.GENERATION_COMPLETED, metrics.DURATION,
                     metrics.CREDITS_USED, metrics.USD_SPENT]
    assert [r.getMessage() for r in caplog.records] == [f"Could not send metric {stat}"
                                                        for stat in tried]


def test_mapped_generate_tasks_are_labelled_by_prompt() -> None:
    from airflow.sdk import DAG

    with DAG("d", schedule=None):
        mapped = KlingTextToVideoOperator.partial(task_id="g").expand(prompt=["a", "b"])
        custom = KlingTextToVideoOperator.partial(
            task_id="c", map_index_template="{{ task.task_id }}").expand(prompt=["a"])
    assert mapped.map_index_template == PROMPT_LABEL_TEMPLATE
    assert custom.map_index_template == "{{ task.task_id }}"
    import jinja2

    template = jinja2.Environment().from_string(PROMPT_LABEL_TEMPLATE)
    long = "A cheerful white raccoon running through a sequoia forest at dawn,\nmist"
    label = template.render(task=KlingTextToVideoOperator(task_id="x", prompt=long))
    assert label == long.replace("\n", " ")[:59] + "…"
    image = KlingGenerateVideoOperator(task_id="y", model="klingai/v2.1-master-image-to-video",
                                       image_url="https://img.example/cat.png")
    assert template.render(task=image) == "https://img.example/cat.png"


def test_mapped_downloads_declare_the_asset_when_serialized() -> None:
    from airflow.sdk import DAG

    with DAG("d", schedule=None) as dag:
        mapped = KlingDownloadVideoOperator.partial(task_id="dl", destination="/tmp/x/").expand(
            video_url=["https://cdn.example/a.mp4"])
        none = KlingDownloadVideoOperator.partial(task_id="none", destination="/tmp/x/",
                                                  asset=None).expand(video_url=["u"])
    assert mapped.outlets == [KLING_VIDEOS_ASSET]
    assert none.outlets == []
    serialized_objects = importlib.import_module("airflow.serialization.serialized_objects")
    # DagSerialization from Airflow 3.2, SerializedDAG before.
    serializer: Any = getattr(serialized_objects, "DagSerialization", None) or \
        serialized_objects.SerializedDAG
    # The serialized DAG's dependencies are the Asset graph's edges: the DAG produces the Asset.
    dependencies = serializer.to_dict(dag)["dag"]["dag_dependencies"]
    assert [(d["source"], d["target"], d["label"]) for d in dependencies] == [
        ("d", "asset", "kling_videos")]
    unmapped = KlingDownloadVideoOperator(task_id="u", destination="/tmp/x/", video_url="u",
                                          outlets=[KLING_VIDEOS_ASSET])
    assert unmapped.outlets == [KLING_VIDEOS_ASSET]  # never twice


def test_openlineage_facets_when_the_provider_is_installed(airflow_sim: KlingSimulator,
                                                           tmp_path: Any) -> None:
    pytest.importorskip("airflow.providers.openlineage",
                        reason="apache-airflow-providers-openlineage is not installed "
                               "(it needs Python 3.11+)")
    operator = KlingGenerateVideoOperator(
        task_id="t", model="kling-video/v1.5/pro/image-to-video", image_url="https://img.example/a.png",
        tail_image_url="https://img.example/b.png?token=x", deferrable=False, poll_interval=10,
        download_to=f"{tmp_path}/")
    result = operator.execute(context_for(StateStoreStub()))
    lineage = operator.get_openlineage_facets_on_complete(None)
    assert [(d.namespace, d.name) for d in lineage.inputs] == [
        ("https://img.example", "/a.png"), ("https://img.example", "/b.png")]
    assert [(d.namespace, d.name) for d in lineage.outputs] == [dataset_id(result["uri"])]
    assert lineage.outputs[0].namespace == "file"
    assert SECRET_KEY not in repr(lineage)


def test_readme_spend_guard_snippet_builds_the_mapped_task() -> None:
    from pathlib import Path

    from airflow.sdk import DAG

    # Shown on the docs' spend page (docs/gallery.rst).
    code = (Path(__file__).resolve().parent.parent / "docs" / "snippets" / "spend_guard.py").read_text()
    with DAG("readme", schedule=None) as dag:
        exec(code, {"KlingTextToVideoOperator": KlingTextToVideoOperator,
                    "prompts": ["a raccoon", "a fox"]})
    mapped: Any = dag.task_dict["generate"]
    assert (mapped.partial_kwargs["max_cost_usd"], mapped.partial_kwargs["check_balance"]) == (
        2.0, True)
    assert mapped.map_index_template == PROMPT_LABEL_TEMPLATE


def test_the_running_total_reads_every_generate_task_mapped_or_not() -> None:
    """Mapped generate tasks (prompt variants through ``.expand``) are in the spend line's
    total; other tasks, mapped or not, are not."""
    from airflow.providers.standard.operators.python import PythonOperator
    from airflow.sdk import DAG

    from kling_provider._task.run_results import RunTasks
    from kling_provider.operators._generate import generate_task_ids

    with DAG("spend_mapped", schedule=None) as dag:
        KlingTextToVideoOperator(task_id="single", model=V2_MASTER, prompt="p")
        KlingTextToVideoOperator.partial(task_id="variants", model=V2_MASTER).expand(
            prompt=["a", "b", "c"])
        PythonOperator.partial(task_id="other", python_callable=print).expand(
            op_args=[[1], [2]])
        PythonOperator(task_id="plain", python_callable=print)
    assert generate_task_ids({"dag": dag}) == RunTasks(("single",), ("variants",))
    assert generate_task_ids({}) == RunTasks()
