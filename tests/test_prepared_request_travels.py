"""Issue 19 point 3: the validated request is the value that travels.

A duration given as a template renders as a string (``"5.0"``, ``"10"``, ``" 10 "``). The
operator validates the rendered fields once per worker start (the catalogue coerces the string
to the schema's integer there), and everything after reads that prepared request: the price
estimate, the one POST, the wait's schedule (in the worker or in the trigger) and the result.
The hook never validates again. Driven against the simulator, through Airflow's own rendering.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred

from kling_provider import catalogue
from kling_provider.exceptions import KlingValidationError
from kling_provider.hooks.kling import KlingHook
from kling_provider.testing.simulator import KlingSimulator
from kling_provider.triggers.kling import KlingGenerationTrigger
from tests.conftest import FakeClock, StateStoreStub, context_for
from tests.test_hostile_inputs import rendered
from tests.test_never_paying_twice import drive_resume, run

CASES = [("5.0", 5), ("10", 10), (" 10 ", 10)]


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    """What the hook was given after the operator prepared the request: each catalogue
    validation (the rendered duration it validated), the estimate's and the wait's duration."""
    seen: dict[str, list[Any]] = {"validated": [], "estimated": [], "waited": []}
    validate, guard, wait = (catalogue.prepare_request, KlingHook.guard_spend,
                             KlingHook.wait_for_generation)

    def validating(model: str, params: Any, **kwargs: Any) -> Any:
        seen["validated"].append(params.get("duration"))
        return validate(model, params, **kwargs)

    def guarding(self: KlingHook, model: str, body: Any, **kwargs: Any) -> Any:
        seen["estimated"].append(body.get("duration"))
        return guard(self, model, body, **kwargs)

    def waiting(self: KlingHook, generation_id: str, **kwargs: Any) -> Any:
        seen["waited"].append(kwargs.get("duration"))
        return wait(self, generation_id, **kwargs)

    # The hook's own name for the catalogue's validation, the one the operator's call reaches.
    monkeypatch.setattr("kling_provider.hooks.kling.prepare_request", validating)
    monkeypatch.setattr(KlingHook, "guard_spend", guarding)
    monkeypatch.setattr(KlingHook, "wait_for_generation", waiting)
    return seen


@pytest.mark.parametrize(("value", "seconds"), CASES)
def test_a_rendered_duration_waited_in_the_worker(airflow_sim: KlingSimulator, clock: FakeClock,
                                                  seen: dict[str, list[Any]], value: str,
                                                  seconds: int) -> None:
    operator = rendered({"duration": value}, duration="{{ params.duration }}", deferrable=False)
    assert operator.duration == value  # as Airflow renders it: a string
    result = operator.execute(context_for(StateStoreStub()))
    assert seen == {"validated": [value], "estimated": [seconds], "waited": [seconds]}
    assert airflow_sim.ledger.count(method="POST") == 1
    (generation,) = airflow_sim._generations.values()
    assert generation.duration == seconds and type(generation.duration) is int
    assert result["status"] == "completed" and result["generation_id"] == generation.generation_id
    assert result["duration"] == seconds


@pytest.mark.parametrize(("value", "seconds"), CASES)
def test_a_rendered_duration_waited_in_the_triggerer(airflow_sim: KlingSimulator,
                                                     clock: FakeClock,
                                                     seen: dict[str, list[Any]], value: str,
                                                     seconds: int) -> None:
    operator = rendered({"duration": value}, duration="{{ params.duration }}")
    store = StateStoreStub()
    # The resume runs on a fresh copy of the rendered task, as a new worker start would.
    resumed = copy.deepcopy(operator)
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(context_for(store))
    trigger = deferred.value.trigger
    assert isinstance(trigger, KlingGenerationTrigger)
    assert trigger.serialize()[1]["duration"] == seconds  # the prepared value travels
    assert seen == {"validated": [value], "estimated": [seconds], "waited": []}
    result = drive_resume(resumed, context_for(store), deferred.value, run(trigger))
    # The resumed start validates its rendered fields once to name the prompt sent; it pays
    # nothing and waits no more.
    assert seen == {"validated": [value, value], "estimated": [seconds], "waited": []}
    assert airflow_sim.ledger.count(method="POST") == 1
    (generation,) = airflow_sim._generations.values()
    assert generation.duration == seconds
    assert result["generation_id"] == generation.generation_id and result["duration"] == seconds
    assert result["prompt"] == operator.prompt


def test_extra_params_may_not_replace_the_model(airflow_sim: KlingSimulator, clock: FakeClock,
                                                seen: dict[str, list[Any]]) -> None:
    # The estimate, the budget, the wait's timings and the result read ``model``: a body naming
    # another model would pay for one nothing else knows about. Refused before any request,
    # for a literal at parse time and for a rendered template at execute time.
    other = "klingai/v2.1-master-text-to-video"
    with pytest.raises(KlingValidationError, match=r"extra_params\['model'\]=.*may not replace"):
        rendered({}, extra_params={"model": other})
    operator = rendered({"model": other}, extra_params={"model": "{{ params.model }}"})
    assert operator.extra_params == {"model": other}
    with pytest.raises(KlingValidationError, match=r"extra_params\['model'\]='klingai/v2\.1"):
        operator.execute(context_for(StateStoreStub()))
    assert airflow_sim.ledger.entries() == []
