"""The simulator's hostile world: neighbours, usage-log lag, mixed log pages, refusals, skew.

Each knob is tested for what it promises (over real HTTP on loopback, with the fake clock), and
for its teeth: a recovery that takes any row, or a window that ignores skew, is caught.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest

from kling_provider.exceptions import KlingError
from kling_provider.hooks.kling import KlingHook
from kling_provider.testing._world import OTHER_MODEL
from kling_provider.testing.simulator import HOSTILE, Faults, KlingSimulator
from tests.conftest import SECRET_KEY, FakeClock, StateStoreStub, context_for

MODEL = "klingai/v2.1-master-text-to-video"
OWN = "kling:dag:manual__1:generate:1.t1"
#: Simulated seconds from create to ``completed`` at the fixture's defaults (20 queued + 300).
FINISHED = 320
AUTH = {"Authorization": f"Bearer {SECRET_KEY}"}
#: Every knob at once, as a marker (a typed name: mypy cannot see through ``**HOSTILE``).
hostile: pytest.MarkDecorator = pytest.mark.simulator(**HOSTILE)


def create(hook: KlingHook, client_request_id: str | None = OWN, **params: Any) -> str:
    return hook.create_generation(MODEL, prompt="p", client_request_id=client_request_id,
                                  **params)


def logs(sim: KlingSimulator, clock: FakeClock, **params: Any) -> dict[str, Any]:
    """One ``GET /v2/logs`` page over the last hour of the worker's clock (no skew margin)."""
    query: dict[str, Any] = {"start": _iso(clock.now() - 3600), "end": _iso(clock.now() + 60),
                             "model": MODEL, **params}
    answer = httpx.get(f"{sim.base_url}/v2/logs", params=query, headers=AUTH)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat()


def _epoch(created: str) -> float:
    return datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()


# -- neighbours ---------------------------------------------------------------------------------

@pytest.mark.simulator(neighbours=6)
def test_neighbours_start_the_same_model_in_the_same_minute(sim_hook: KlingHook,
                                                            simulator: KlingSimulator,
                                                            clock: FakeClock) -> None:
    own = create(sim_hook)
    assert simulator.generation_ids() == [own]  # a test's own count leaves neighbours out
    everyone = simulator.generations_by_client_request_id(include_neighbours=True)
    neighbours = [g for ids in everyone.values() for g in ids if g != own]
    assert len(neighbours) == 6 == len(simulator.generation_ids(include_neighbours=True)) - 1
    assert OWN in everyone and everyone[OWN] == [own]
    assert None in everyone  # a caller sending no client request id
    assert "kling:dag:manual__1:generate:12.t1" in everyone  # index 12 starts with index 1
    clock.sleep(FINISHED)
    rows = logs(simulator, clock)["data"]
    assert {r["model"] for r in rows} == {MODEL} and len(rows) == 7
    created = [_epoch(r["created"]) for r in rows]
    assert max(created) - min(created) < 60
    assert rows[0]["inference_id"] != own  # newest first: a neighbour's row comes first
    assert {r["status"] for r in rows} == {"succeeded", "failed"}
    assert [r["status"] for r in rows].count("failed") == 1  # every fifth neighbour fails


@pytest.mark.simulator(neighbours=6)
def test_a_recovery_that_takes_any_row_adopts_a_neighbour(sim_hook: KlingHook,
                                                          simulator: KlingSimulator,
                                                          clock: FakeClock) -> None:
    own = create(sim_hook)
    clock.sleep(FINISHED)
    since = clock.now() - FINISHED
    found = sim_hook.find_generation(OWN, model=MODEL, since=since)
    assert found is not None and found.generation_id == own
    anything = sim_hook.find_generation(model=MODEL, since=since, match=lambda row: True)
    assert anything is not None and anything.generation_id != own


# -- usage-log lag ------------------------------------------------------------------------------

@pytest.mark.simulator(logs_lag=240)
def test_logs_row_appears_lag_after_the_video(sim_hook: KlingHook, simulator: KlingSimulator,
                                              clock: FakeClock) -> None:
    own = create(sim_hook)
    since = clock.now()
    clock.sleep(FINISHED)
    assert sim_hook.get_generation(own).status == "completed"
    assert sim_hook.find_generation(OWN, model=MODEL, since=since) is None
    clock.sleep(239)
    assert sim_hook.find_generation(OWN, model=MODEL, since=since) is None
    clock.sleep(1)
    found = sim_hook.find_generation(OWN, model=MODEL, since=since)
    assert found is not None and found.generation_id == own


def test_lag_is_a_knob_that_can_change_mid_test(sim_hook: KlingHook, simulator: KlingSimulator,
                                                clock: FakeClock) -> None:
    create(sim_hook)
    clock.sleep(FINISHED)
    assert len(logs(simulator, clock)["data"]) == 1  # no lag by default
    simulator.logs_lag = 60
    assert logs(simulator, clock)["data"] == []


# -- mixed pages --------------------------------------------------------------------------------

@pytest.mark.simulator(mixed_logs=150)
def test_mixed_rows_fill_whole_pages_and_offsets_count_rows_read(sim_hook: KlingHook,
                                                                  simulator: KlingSimulator,
                                                                  clock: FakeClock) -> None:
    own = create(sim_hook)
    clock.sleep(FINISHED)
    first = logs(simulator, clock, limit=100)
    second = logs(simulator, clock, limit=100, offset=100)
    usable = [r for r in first["data"] if r.get("inference_id") and r["model"] == MODEL]
    assert usable == []  # a whole page without one row a recovery can use ...
    assert first["pagination"] == {"limit": 100, "offset": 0, "total": 114, "has_more": True}
    assert second["pagination"] == {"limit": 100, "offset": 100, "total": 114,
                                    "has_more": False}
    assert second["data"][-1].get("inference_id") == own  # ... and the row on the next
    both = first["data"] + second["data"]
    assert len({r["request_id"] for r in both}) == 114  # pages neither overlap nor skip
    assert all(r.get("inference_id") in (None, "") for r in both if r["model"] == MODEL
               and r.get("inference_id") != own)
    kinds = {("inference_id" in r, r.get("inference_id") is None, r["status"]) for r in both}
    assert {(False, True, "failed"), (True, True, "succeeded"), (True, False, "failed"),
            (True, False, "succeeded")} <= kinds
    # A query without a model filter also lists the other callers' requests to other models.
    everything = logs(simulator, clock, model=[], limit=100, offset=100)
    assert everything["pagination"]["total"] == 150 + 1
    assert OTHER_MODEL in {r["model"] for r in logs(simulator, clock, model=[])["data"]}


# -- definite refusals --------------------------------------------------------------------------

@pytest.mark.parametrize(("status", "words"), [
    (400, "Body validation error"), (401, "valid API key"), (403, "run out of credits"),
    (404, "Not Found")])
def test_refusals_create_nothing_and_answer_the_error_contract(simulator: KlingSimulator,
                                                               clock: FakeClock, status: int,
                                                               words: str) -> None:
    simulator.faults = Faults(refusals=[status])
    url = simulator.base_url + "/v2/generate/video/kling/generation"
    refused = httpx.post(url, json={"model": MODEL, "prompt": "p"}, headers=AUTH)
    assert refused.status_code == status
    body = refused.json()
    assert set(body) == {"message", "path", "requestId", "statusCode", "timestamp"}
    assert words in body["message"] and body["statusCode"] == status
    assert body["path"] == "/v2/generate/video/kling/generation"
    assert simulator.generation_ids() == []
    assert httpx.post(url, json={"model": MODEL, "prompt": "p"}, headers=AUTH).status_code == 200
    assert len(simulator.generation_ids()) == 1  # the script is spent: the next one is created


def test_refusals_are_scripted_over_http_and_only_answer_creates(simulator: KlingSimulator,
                                                                 clock: FakeClock) -> None:
    set_faults = httpx.post(simulator.base_url + "/_simulator/faults",
                            json={"refusals": [403, 401]})
    assert set_faults.json()["refusals"] == [403, 401]
    url = simulator.base_url + "/v2/generate/video/kling/generation"
    poll = httpx.get(url, params={"generation_id": "nope"}, headers=AUTH)
    assert poll.status_code == 404  # polls and logs are not refused
    assert logs(simulator, clock)["data"] == []
    statuses = [httpx.post(url, json={"model": MODEL, "prompt": "p"}, headers=AUTH).status_code
                for _ in range(3)]
    assert statuses == [403, 401, 200]
    assert len(simulator.generation_ids()) == 1


@pytest.mark.simulator(mixed_logs=1)
def test_a_refused_create_leaves_a_failed_row_without_inference(sim_hook: KlingHook,
                                                                 simulator: KlingSimulator,
                                                                 clock: FakeClock) -> None:
    simulator.faults.refusals = [403]
    with pytest.raises(KlingError, match="run out of credits") as refused:
        create(sim_hook)
    assert not refused.value.transient
    assert simulator.generation_ids() == []
    rows = logs(simulator, clock)["data"]
    assert [(r["client_request_id"], r["inference_id"], r["status"]) for r in rows] == [
        (OWN, None, "failed")]


# -- clock skew ---------------------------------------------------------------------------------

@pytest.mark.parametrize("skew", [-240.0, 240.0])
def test_skew_shifts_the_services_timestamps(simulator: KlingSimulator, sim_hook: KlingHook,
                                             clock: FakeClock, skew: float) -> None:
    simulator.skew = skew
    refused = httpx.get(simulator.base_url + "/v2/generate/video/kling/generation",
                        params={"generation_id": "nope"}, headers=AUTH)
    assert _epoch(refused.json()["timestamp"]) == pytest.approx(clock.now() + skew, abs=0.01)
    own = create(sim_hook)
    since = clock.now()
    clock.sleep(FINISHED)
    narrow = {"start": _iso(since - 60), "end": _iso(since + 60)}
    assert logs(simulator, clock, **narrow)["data"] == []  # a window blind to skew misses it
    [row] = logs(simulator, clock, start=_iso(since - 300), end=_iso(clock.now() + 300))["data"]
    assert _epoch(row["created"]) == pytest.approx(since + skew, abs=0.01)
    found = sim_hook.find_generation(OWN, model=MODEL, since=since)
    assert found is not None and found.generation_id == own


# -- all at once --------------------------------------------------------------------------------

@hostile
def test_hostile_marker_reaches_the_fixtures(simulator: KlingSimulator,
                                             airflow_sim: KlingSimulator,
                                             sim_hook: KlingHook, clock: FakeClock) -> None:
    assert airflow_sim is simulator
    assert (simulator.neighbours, simulator.logs_lag, simulator.mixed_logs, simulator.skew) == (
        6, 240.0, 140, 240.0)
    own = create(sim_hook)
    assert len(simulator.generation_ids(include_neighbours=True)) == 7
    assert len(simulator.extra_log_rows) == 140
    clock.sleep(FINISHED + 240)
    first = logs(simulator, clock, limit=100)
    assert first["pagination"]["has_more"]
    assert own not in {r.get("inference_id") for r in first["data"]}  # the task's row: page 2


def test_knobs_are_off_by_default(simulator: KlingSimulator, sim_hook: KlingHook,
                                  clock: FakeClock, kling_env: Callable[..., None]) -> None:
    create(sim_hook)
    clock.sleep(FINISHED)
    assert len(simulator.generation_ids(include_neighbours=True)) == 1
    assert len(logs(simulator, clock)["data"]) == 1


@pytest.mark.simulator(neighbours=6, logs_lag=240, skew=-240)
def test_an_uncertain_create_recovers_its_own_generation_among_neighbours(
        airflow_sim: KlingSimulator, clock: FakeClock) -> None:
    """The operator's recovery, end to end, in a world where a sloppy matcher would be wrong."""
    from tests.test_never_paying_twice import drive, generate

    operator = generate(extra_params={"simulator_faults": {"create_drop": True}})
    result = drive(operator, context_for(StateStoreStub()))
    assert result["status"] == "completed"
    [(client_id, ids)] = airflow_sim.generations_by_client_request_id().items()
    assert ids == [result["generation_id"]] and client_id
    assert len(airflow_sim.generation_ids(include_neighbours=True)) == 7


# -- the documentation's examples (docs/simulator.rst) ------------------------------------------

from docs.snippets.simulator_knobs import test_my_task_among_neighbours  # noqa: E402

test_my_task_among_neighbours = pytest.mark.integration(test_my_task_among_neighbours)


@pytest.mark.integration
def test_every_endpoint_example_runs() -> None:
    import docs.snippets.simulator_http as tour

    with KlingSimulator(time_scale=60000) as sim, httpx.Client(
            base_url=sim.base_url, headers={"Authorization": f"Bearer {sim.api_key}"}) as api:
        video_url = tour.create_and_poll(api)
        assert video_url.startswith(sim.cdn_url)
        [generation_id] = sim.generation_ids()
        assert tour.video_from_cdn(video_url) == sim.video_of(generation_id)
        [row] = tour.usage_logs(api)
        assert (row["inference_id"], row["client_request_id"]) == (
            generation_id, "my-dag:run-1:generate")
        assert tour.prices_and_balance(api) == (1.40, 100.0 - 1.40)
        spend, groups = tour.key_usage(api, sim.usage, sim.api_key)
        assert spend == 3.9  # the video above ($1.40) and the outside spend ($2.50)
        assert sorted((g["model"], g["spend"]) for g in groups) == [
            (tour.MODEL, 1.40), ("klingai/v2.1-master-text-to-video", 2.50)]
        assert set(tour.live_timings(api)) == {"p50", "p75", "p90", "p99"}
        ledger = tour.faults_and_ledger(api)
        assert ledger["by_path"]["POST " + tour.CREATE] == 2  # type: ignore[index]
        assert sim.generation_ids() == [generation_id]
        assert sim.faults.refusals == []


def test_a_body_can_carry_its_own_refusals(simulator: KlingSimulator,
                                           sim_hook: KlingHook) -> None:
    faults = {"refusals": [403, 401]}
    for cri in ("try-1", "try-2"):  # a new client request id does not escape them
        with pytest.raises(KlingError):
            create(sim_hook, cri, extra_params={"simulator_faults": faults})
    assert simulator.generation_ids() == []
    own = create(sim_hook, "try-3", extra_params={"simulator_faults": faults})
    assert simulator.generation_ids() == [own]
    statuses = [e.status for e in simulator.ledger.entries(method="POST")]
    assert statuses == [403, 401, 200]
