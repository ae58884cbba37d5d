"""The simulator's ``GET /v2/usage`` and ``/v2/usage/detail``, over real HTTP on loopback.

What the budget and the spend report read: only completed videos are billed (when they
complete), each on the key that created it; spend made outside the simulator is added on
command; another key's prefix is refused (403) unless the caller is a management key; the
query rules (window, 92 days, ``group_by``/``tz`` on the detail only) answer 400 as published.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from kling_provider.hooks.kling import KlingHook
from kling_provider.testing.simulator import Faults, KlingSimulator
from tests.conftest import SECRET_KEY, FakeClock

MODEL = "klingai/v2.1-master-text-to-video"

DAY = 86400.0


def usage(sim: KlingSimulator, path: str = "/v2/usage", key: str = SECRET_KEY,
          **params: Any) -> httpx.Response:
    return httpx.get(f"{sim.base_url}{path}", params=params,
                     headers={"Authorization": f"Bearer {key}"})


def finish(sim_hook: KlingHook, clock: FakeClock, **params: Any) -> str:
    """Create a generation and poll it to its end (completed: billed)."""
    generation_id = sim_hook.create_generation(MODEL, prompt="p", **params)
    clock.t += 3600
    sim_hook._run(sim_hook._calls_for(sim_hook.settings).fetch(generation_id, None))
    return generation_id


def test_a_video_is_billed_to_its_key_only_once_it_completes(
        simulator: KlingSimulator, sim_hook: KlingHook, clock: FakeClock) -> None:
    sim_hook.create_generation(MODEL, prompt="p", duration=5)
    body = usage(simulator, period="24h").json()
    assert (body["spend"], body["requests"]) == (0, 0)  # in flight: not billed yet
    finish(sim_hook, clock, duration=10)
    body = usage(simulator, period="24h").json()
    assert (body["spend"], body["requests"], body["currency"]) == (2.8, 1, "USD")
    assert body["api_key_prefix"] is None
    assert body["end"].endswith("Z") and body["start"] < body["end"]


def test_outside_spend_and_windows(simulator: KlingSimulator, clock: FakeClock) -> None:
    now = simulator.service_time()
    simulator.usage.add_spend("1.25", key=SECRET_KEY, model=MODEL, at=now - 2 * DAY)
    simulator.usage.add_spend(0.1, key=SECRET_KEY, model=MODEL, at=now - 3600)
    simulator.usage.add_spend(7, key="another-key-entirely", model=MODEL, at=now - 60)
    assert usage(simulator, period="24h").json()["spend"] == 0.1
    assert usage(simulator, period="7d").json()["spend"] == 1.35
    assert usage(simulator, period="3d").json()["requests"] == 2
    start, end = "2027-01-15T08:00:00+01:00", "2027-01-15T09:00:00"  # the second one is UTC
    body = usage(simulator, start=start, end=end).json()
    assert (body["start"], body["end"]) == ("2027-01-15T07:00:00.000Z", "2027-01-15T09:00:00.000Z")


def test_another_keys_prefix_is_refused_unless_a_management_key_asks(
        simulator: KlingSimulator) -> None:
    simulator.api_keys = None  # any key is accepted
    other = "other-key-1234567890"
    simulator.usage.add_spend(3, key=other, model=MODEL, at=simulator.service_time() - 5)
    own = usage(simulator, key_prefix=SECRET_KEY[:8], period="24h").json()
    assert (own["api_key_prefix"], own["spend"]) == (SECRET_KEY[:8], 0)
    refused = usage(simulator, key_prefix=other[:8], period="24h")
    assert refused.status_code == 403
    assert set(refused.json()) == {"message", "path", "requestId", "statusCode", "timestamp"}
    assert SECRET_KEY not in refused.text
    simulator.usage.management_keys.add("management-key-0")
    managed = usage(simulator, key="management-key-0", key_prefix=other[:8], period="24h")
    assert managed.json()["spend"] == 3
    assert usage(simulator, key=other, period="24h").json()["spend"] == 3


@pytest.mark.parametrize(("path", "params", "said"), [
    ("/v2/usage", {}, "either period or both"),
    ("/v2/usage", {"period": "24h", "start": "2027-01-01T00:00:00Z"}, "not both"),
    ("/v2/usage", {"start": "2027-01-01T00:00:00Z"}, "either period"),
    ("/v2/usage", {"period": "0h"}, "positive integer"),
    ("/v2/usage", {"period": "1w"}, "positive integer"),
    ("/v2/usage", {"period": "93d"}, "92 days"),
    ("/v2/usage", {"start": "2027-01-02", "end": "2027-01-01"}, "earlier"),
    ("/v2/usage", {"start": "yesterday", "end": "2027-01-01"}, "ISO-8601"),
    ("/v2/usage", {"period": "24h", "group_by": "day"}, "/v2/usage/detail only"),
    ("/v2/usage", {"period": "24h", "tz": "UTC"}, "/v2/usage/detail only"),
    ("/v2/usage/detail", {"period": "24h", "group_by": "week"}, "group_by"),
    ("/v2/usage/detail", {"period": "24h", "group_by": "day", "tz": "utc"}, "IANA"),
    ("/v2/usage/detail", {"period": "24h", "group_by": "day", "tz": "+05:00"}, "IANA"),
])
def test_bad_queries_answer_400(simulator: KlingSimulator, path: str, params: dict[str, str],
                                said: str) -> None:
    answer = usage(simulator, path, **params)
    assert answer.status_code == 400
    assert said in answer.json()["message"]


def test_a_key_is_required_and_faults_apply(simulator: KlingSimulator) -> None:
    assert httpx.get(f"{simulator.base_url}/v2/usage?period=24h").status_code == 401
    simulator.faults = Faults(statuses=[503])
    assert usage(simulator, period="24h").status_code == 503
    assert usage(simulator, period="24h").status_code == 200


def test_detail_groups_by_day_and_model_and_counts_failures_apart(
        simulator: KlingSimulator, sim_hook: KlingHook, clock: FakeClock) -> None:
    finish(sim_hook, clock, duration=5)
    failed = sim_hook.create_generation(MODEL, prompt="p")
    simulator.set_faults(failed, Faults(error={"name": "X", "message": "no"}))
    clock.t += 3600
    now = simulator.service_time()
    simulator.usage.add_spend("0.5", key=SECRET_KEY, model="other/model", at=now - DAY - 60)
    body = usage(simulator, "/v2/usage/detail", period="7d", group_by="day,model").json()
    assert body["spend"] == 1.9 and body["requests"] == 2
    assert body["models"] == [{"model": MODEL, "spend": 1.4, "requests": 1},
                              {"model": "other/model", "spend": 0.5, "requests": 1}]
    groups = body["groups"]
    assert [(g["model"], g["spend"]) for g in groups] == [("other/model", 0.5), (MODEL, 1.4)]
    assert groups[1]["requests"] == {"total": 2, "charged": 1, "succeeded": 1, "failed": 1}
    assert sum(g["requests"]["charged"] for g in groups) == body["requests"]
    assert groups[0]["day"] < groups[1]["day"]
    by_model = usage(simulator, "/v2/usage/detail", period="7d", group_by="model").json()
    assert all("day" not in g for g in by_model["groups"])
    plain = usage(simulator, "/v2/usage/detail", period="7d").json()
    assert "groups" not in plain and plain["models"] == body["models"]


def test_days_follow_tz(simulator: KlingSimulator, clock: FakeClock) -> None:
    # 23:30 UTC is already the next day in Berlin.
    at = 1_800_000_000.0 - 1_800_000_000.0 % DAY + DAY - 1800
    clock.t = at + 60
    simulator.usage.add_spend(1, key=SECRET_KEY, model=MODEL, at=at)
    utc = usage(simulator, "/v2/usage/detail", period="24h", group_by="day").json()
    berlin = usage(simulator, "/v2/usage/detail", period="24h", group_by="day",
                   tz="Europe/Berlin").json()
    assert int(berlin["groups"][0]["day"][-2:]) == int(utc["groups"][0]["day"][-2:]) + 1
    assert berlin["start"] == utc["start"]  # start and end stay UTC
