"""A user's test in a hostile world: neighbours, late usage logs, clock skew, a refusal."""

from __future__ import annotations

import pytest

from kling_provider.exceptions import KlingNoCreditsError
from kling_provider.hooks.kling import KlingHook
from kling_provider.testing.simulator import Faults, KlingSimulator

MODEL = "klingai/v2-master-text-to-video"


def test_my_task_among_neighbours(monkeypatch: pytest.MonkeyPatch) -> None:
    # 6 other callers' generations per create, usage logs 240 s late, the API's clock 4 min ahead
    with KlingSimulator(time_scale=6000, neighbours=6, logs_lag=240, skew=240) as sim:
        monkeypatch.setenv("AIRFLOW_CONN_KLING_DEFAULT", sim.connection_uri())
        hook = KlingHook()
        sim.faults = Faults(refusals=[403])  # the first create: out of credits, nothing made
        with pytest.raises(KlingNoCreditsError):
            hook.create_generation(MODEL, prompt="A fox")
        generation_id = hook.create_generation(MODEL, prompt="A fox",
                                               client_request_id="my-dag:run-1:generate")
        assert hook.wait_for_generation(generation_id, poll_interval=1).status == "completed"
        assert sim.generation_ids() == [generation_id]  # yours only ...
        assert len(sim.generation_ids(include_neighbours=True)) == 7  # ... six were others'
        sim.logs_lag = 0  # every knob is an attribute: change it mid-test
        row = hook.find_generation("my-dag:run-1:generate", model=MODEL,
                                   since=hook.clock.now() - 600)
        assert row is not None
        assert row.generation_id == generation_id
