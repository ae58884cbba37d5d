"""The defaults the README and the docs promise, seen in what the tasks and the hook do.

A task given nothing but what it must have submits to the documented model of its operator,
waits up to 1800 s (``timeout``), polls at most 60 s apart (``poll_interval`` / ``poke_interval``)
on the adaptive schedule, in the triggerer; a connection with no extras allows 64 requests in
flight per event loop and reads the live model timings. Each is checked against the simulator.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kling_provider._runtime.client import ASYNC_CLIENTS
from kling_provider.exceptions import KlingValidationError
from kling_provider.hooks.kling import KlingHook, aclose_shared_clients
from kling_provider.operators.kling import KlingImageToVideoOperator, KlingTextToVideoOperator
from kling_provider.sensors.kling import KlingGenerationSensor
from kling_provider.testing.simulator import KlingSimulator
from tests.conftest import FakeClock, StateStoreStub, connection_json, context_for
from tests.test_airflow_layer import defer, run_trigger, submit
from tests.test_simulator_integration import CountingTransport

# docs/howto/text_to_video.rst, docs/howto/image_to_video.rst, docs/waiting.rst, README.md
DOCUMENTED_TIMEOUT = 1800.0
DOCUMENTED_POLL_INTERVAL = 60.0


def test_text_to_video_with_only_a_prompt_waits_as_documented(airflow_sim: KlingSimulator,
                                                              clock: FakeClock) -> None:
    operator = KlingTextToVideoOperator(task_id="generate", prompt="a raccoon")
    deferred = defer(operator, context_for(StateStoreStub()))  # deferrable by default
    _, kwargs = deferred.trigger.serialize()
    assert kwargs["deadline"] == clock.now() + DOCUMENTED_TIMEOUT
    assert kwargs["poll_interval"] == DOCUMENTED_POLL_INTERVAL
    assert kwargs["poll_schedule"] == "adaptive"
    assert kwargs["kling_conn_id"] == "kling_default"
    # The simulator names each generation after the model the POST asked for.
    [generation_id] = airflow_sim.generation_ids()
    assert generation_id.endswith(":kling-video/v2.1/master/text-to-video")
    assert kwargs["model"] == "klingai/v2.1-master-text-to-video"


def test_image_to_video_submits_to_its_documented_model(airflow_sim: KlingSimulator) -> None:
    operator = KlingImageToVideoOperator(task_id="animate", prompt="it moves",
                                         image_url="https://images.test/cat.jpg",
                                         wait_for_completion=False)
    result = operator.execute(context_for(StateStoreStub()))
    assert result["model"] == "klingai/v2.1-master-image-to-video"
    assert result["generation_id"].endswith(":kling-video/v2.1/master/image-to-video")
    assert airflow_sim.ledger.count(method="POST") == 1


def test_sensor_with_only_a_generation_id_waits_as_documented(airflow_sim: KlingSimulator,
                                                              clock: FakeClock) -> None:
    generation_id = submit(airflow_sim)
    sensor = KlingGenerationSensor(task_id="wait", generation_id=generation_id)
    context = context_for(None)
    deferred = defer(sensor, context)
    _, kwargs = deferred.trigger.serialize()
    assert kwargs["deadline"] == clock.now() + DOCUMENTED_TIMEOUT
    assert kwargs["poll_interval"] == DOCUMENTED_POLL_INTERVAL
    assert kwargs["poll_schedule"] == "adaptive"
    assert sensor.execute_complete(context, run_trigger(deferred.trigger)[0])["status"] == \
        "completed"


# -- the connection's extras (docs/connection.rst) ---------------------------------------------

def test_a_connection_without_extras_allows_64_requests_in_flight(
        simulator: KlingSimulator, kling_env: Callable[..., None], clock: FakeClock) -> None:
    kling_env(simulator.base_url)  # no max_concurrency
    generation_id = KlingHook(clock=clock).create_generation(
        "klingai/v2.1-master-text-to-video", prompt="p")
    transport = CountingTransport()

    async def many() -> int:
        try:
            hooks = [KlingHook(clock=clock, async_transport=transport) for _ in range(200)]
            await asyncio.gather(*(h.aget_generation(generation_id) for h in hooks))
            return len(ASYNC_CLIENTS[asyncio.get_running_loop()])
        finally:
            await aclose_shared_clients()

    assert asyncio.run(many()) == 1
    assert transport.peak == 64


def test_a_connection_without_extras_reads_the_live_timings(
        simulator: KlingSimulator, kling_env: Callable[..., None], clock: FakeClock) -> None:
    kling_env(simulator.base_url)  # no live_timings
    hook = KlingHook(clock=clock)
    hook.expected_duration("klingai/v2.1-master-text-to-video")
    assert simulator.ledger.count(method="GET", path="/models/metrics") == 1


EXTRAS = ["timeout", "connect_timeout", "max_retries", "max_concurrency"]


@given(name=st.sampled_from(EXTRAS),
       value=st.one_of(st.integers(max_value=0), st.floats(max_value=0.0),
                       st.sampled_from([float("inf"), float("nan"), "inf", "nan", "many", "",
                                        "-3", None, [1]])))
def test_a_bad_numeric_extra_is_refused_naming_the_extra_and_the_connection(
        name: str, value: Any) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRFLOW_CONN_KLING_MIRROR",
                     connection_json("https://api.example.test", **{name: value}))
        with pytest.raises(KlingValidationError) as refused:
            _ = KlingHook(kling_conn_id="kling_mirror").settings
    message = str(refused.value)
    assert f"extra {name!r}={value!r}" in message
    assert "'kling_mirror'" in message and "finite positive number" in message


@pytest.mark.parametrize("value", ["5", "2.5", 7])
def test_a_numeric_extra_may_be_written_as_a_string(kling_env: Callable[..., None],
                                                    value: Any) -> None:
    kling_env("https://api.example.test", timeout=value)
    assert KlingHook().settings.timeout == float(value)
