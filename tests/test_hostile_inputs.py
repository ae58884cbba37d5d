"""Issue 15's first table, the rows about what a user passes: each through the operator, Airflow's
own template rendering and the simulator.

A value a user may parametrise is a templated field; what Airflow renders (always a string) is
coerced by the model's schema or refused before any request; a number that is not finite is
refused before paying; the request that passed validation is the one the wait, the trigger, the
result and the price estimate read.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred
from airflow.sdk import DAG

from kling_provider._task.submission import STATE_KEY
from kling_provider.catalogue import prepare_request
from kling_provider.exceptions import KlingValidationError
from kling_provider.operators.kling import KlingGenerateVideoOperator, KlingTextToVideoOperator
from kling_provider.testing.simulator import KlingSimulator
from kling_provider.triggers.kling import KlingGenerationTrigger
from tests.conftest import FakeClock, StateStoreStub, context_for
from tests.test_airflow_layer import RACCOON
from tests.test_never_paying_twice import drive

IMAGE_MODEL = "klingai/v2.1-master-image-to-video"
IMAGE = "https://example.test/raccoon.png"


def rendered(params: dict[str, Any], **kwargs: Any) -> KlingGenerateVideoOperator:
    """The operator in a DAG with ``params``, its fields rendered by Airflow as a worker does."""
    with DAG(dag_id="hostile", schedule=None, start_date=datetime(2026, 1, 1),
             params=params) as dag:
        operator = KlingGenerateVideoOperator(task_id="generate", poll_interval=20,
                                              **{**RACCOON, **kwargs})
    operator.render_template_fields({"params": dict(dag.params), "dag": dag, "task": operator})
    return operator


# -- duration="{{ params.duration }}": a templated field, coerced by the schema ------------------

@pytest.mark.parametrize("value", ["10", "10.0", " 10 "])
def test_templated_duration_is_rendered_coerced_and_sent_as_an_integer(
        airflow_sim: KlingSimulator, clock: FakeClock, value: str) -> None:
    operator = rendered({"duration": value}, duration="{{ params.duration }}")
    assert operator.duration == value  # Airflow rendered it: a string, as every template gives
    store = StateStoreStub()
    context = context_for(store)
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(context)
    trigger = deferred.value.trigger
    assert isinstance(trigger, KlingGenerationTrigger)
    assert trigger.serialize()[1]["duration"] == 10  # the prepared value, not the raw string
    result = drive(operator, context_for(store, try_number=1))
    (generation,) = airflow_sim._generations.values()
    assert generation.duration == 10
    assert result["status"] == "completed" and result["generation_id"] == generation.generation_id


def test_duration_5_0_pays_once_and_the_worker_wait_completes(airflow_sim: KlingSimulator,
                                                               clock: FakeClock) -> None:
    """Paid with 5, then ``int("5.0")`` crashed the wait on every retry."""
    operator = KlingGenerateVideoOperator(task_id="generate", poll_interval=20, deferrable=False,
                                          **{**RACCOON, "duration": "5.0"})
    store = StateStoreStub()
    result = operator.execute(context_for(store))
    assert result["status"] == "completed"
    (generation,) = airflow_sim._generations.values()
    assert generation.duration == 5
    assert airflow_sim.ledger.count(method="POST") == 1


@pytest.mark.parametrize(("value", "allowed"), [("5.5", "5, 10"), ("7", "5, 10"),
                                               ("five", "5, 10"), ("1e400", "5, 10")])
def test_templated_duration_that_the_schema_refuses_fails_before_paying(
        no_requests: list[Any], value: str, allowed: str) -> None:
    operator = rendered({"duration": value}, duration="{{ params.duration }}")
    store = StateStoreStub()
    with pytest.raises(KlingValidationError) as error:
        operator.execute(context_for(store))
    message = str(error.value)
    assert "'duration'" in message and repr(value) in message and allowed in message
    assert no_requests == [] and store.data == {}  # no intent, no request


# -- NaN and infinity: refused before paying, whichever way they come ----------------------------

@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_cfg_scale_literal_fails_when_the_dag_is_parsed(value: float) -> None:
    with pytest.raises(KlingValidationError, match=r"'cfg_scale'=.*finite"):
        KlingGenerateVideoOperator(task_id="generate", **{**RACCOON, "cfg_scale": value})


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-Infinity", "1e400"])
def test_non_finite_templated_cfg_scale_fails_before_the_intent(no_requests: list[Any],
                                                                 value: str) -> None:
    operator = rendered({"cfg": value}, cfg_scale="{{ params.cfg }}")
    store = StateStoreStub()
    with pytest.raises(KlingValidationError, match=rf"'cfg_scale'={value!r}.*finite"):
        operator.execute(context_for(store))
    assert no_requests == [] and STATE_KEY not in store.data


@pytest.mark.parametrize("extra", [{"seed": float("nan")}, {"nested": [1, float("inf")]},
                                   {"when": datetime(2026, 1, 1)}, {"text": "\ud800"}])
def test_a_body_that_cannot_be_sent_is_refused_before_the_intent(no_requests: list[Any],
                                                                 extra: dict[str, Any]) -> None:
    """Before: the intent was written, then the body failed to encode, and the retry waited
    ``timeout`` + 5 min in recovery for a request that never left."""
    operator = KlingGenerateVideoOperator(task_id="generate", **RACCOON)
    operator.extra_params = extra  # as rendered from a template or an XCom
    store = StateStoreStub()
    with pytest.raises(KlingValidationError, match=r"extra_params\."):
        operator.execute(context_for(store))
    assert no_requests == [] and STATE_KEY not in store.data


# -- an empty prompt ------------------------------------------------------------------------------

@pytest.mark.parametrize("prompt", ["", "   "])
def test_empty_prompt_is_refused_before_paying_even_where_it_is_optional(
        no_requests: list[Any], prompt: str) -> None:
    with pytest.raises(KlingValidationError, match=r"'prompt'=.*empty"):
        KlingGenerateVideoOperator(task_id="i2v", model=IMAGE_MODEL, image_url=IMAGE,
                                   prompt=prompt)
    with DAG(dag_id="hostile", schedule=None, start_date=datetime(2026, 1, 1),
             params={"prompt": prompt}) as dag:
        operator = KlingGenerateVideoOperator(task_id="i2v", model=IMAGE_MODEL, image_url=IMAGE,
                                              prompt="{{ params.prompt }}")
    operator.render_template_fields({"params": dict(dag.params)})
    with pytest.raises(KlingValidationError, match=r"'prompt'=.*empty"):
        operator.execute(context_for(StateStoreStub()))
    assert no_requests == []


# -- a template where nothing renders it ----------------------------------------------------------

@pytest.mark.parametrize(("name", "value"), [
    ("poll_interval", "{{ params.poll }}"), ("timeout", "{{ params.timeout }}"),
    ("max_cost_usd", "{{ params.limit }}"), ("kling_conn_id", "{{ params.conn }}"),
    ("endpoint_family", "{% if params.x %}unified{% endif %}"),
])
def test_a_template_in_a_field_that_is_not_rendered_fails_at_parse_time(name: str,
                                                                         value: str) -> None:
    with pytest.raises(KlingValidationError) as error:
        KlingTextToVideoOperator(task_id="generate", prompt="p", **{name: value})
    message = str(error.value)
    assert f"'{name}'={value!r}" in message and "not a templated field" in message
    assert "Task 'generate'" in message


def test_every_request_argument_is_a_templated_field() -> None:
    fields = set(KlingGenerateVideoOperator.template_fields)
    assert {"model", "prompt", "negative_prompt", "duration", "aspect_ratio", "cfg_scale",
            "camera_control", "image_url", "tail_image_url", "image_list",
            "parameters", "extra_params"} <= fields


# -- the rules, pure -----------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "sent"), [("5", 5), ("5.0", 5), (5.0, 5), (" 10 ", 10), (10, 10)])
def test_integral_numbers_are_coerced_to_the_schema_integer(value: Any, sent: int) -> None:
    body = prepare_request(RACCOON["model"], {"prompt": "p", "duration": value}).body
    assert body["duration"] == sent and type(body["duration"]) is int


@pytest.mark.parametrize("value", ["5.5", 5.5, "1e400", float("inf"), "nan", True, "0x5"])
def test_integer_fields_refuse_what_is_not_a_whole_allowed_number(value: Any) -> None:
    with pytest.raises(KlingValidationError, match=r"'duration'=.*one of 5, 10"):
        prepare_request(RACCOON["model"], {"prompt": "p", "duration": value})


@pytest.mark.parametrize("value", ["nan", float("nan"), "inf", float("-inf"), "1e400"])
def test_number_fields_refuse_non_finite_values(value: Any) -> None:
    with pytest.raises(KlingValidationError, match=r"'cfg_scale'=.*finite number between 0 and 1"):
        prepare_request(RACCOON["model"], {"prompt": "p", "cfg_scale": value})


def test_unknown_models_bodies_must_be_json_too() -> None:
    with pytest.raises(KlingValidationError, match=r"'fps'=nan"):
        prepare_request("klingai/v9", {"prompt": "p", "fps": math.nan},
                        allow_unknown_model=True)
    with pytest.raises(KlingValidationError, match=r"'prompt'=''.*empty"):
        prepare_request("klingai/v9", {"prompt": ""}, allow_unknown_model=True)


@pytest.mark.parametrize("value", [float("inf"), float("nan"), 10**400, "5"])
def test_max_cost_usd_is_a_finite_number(value: Any) -> None:
    with pytest.raises(KlingValidationError, match=r"'max_cost_usd'=.*finite number of US dollars"):
        KlingTextToVideoOperator(task_id="generate", prompt="p", max_cost_usd=value)


def test_the_result_names_the_prompt_sent_even_from_parameters(airflow_sim: KlingSimulator,
                                                               clock: FakeClock) -> None:
    """The docs' "the prompt sent": read from the validated request, not the raw argument."""
    operator = KlingGenerateVideoOperator(
        task_id="generate", model=RACCOON["model"], deferrable=False,
        parameters={"prompt": "a raccoon from parameters", "duration": "10"})
    result = operator.execute(context_for(StateStoreStub()))
    assert result["prompt"] == "a raccoon from parameters"
    assert result["duration"] == 10
