"""Bad input is refused before any request: at parse time, and again first thing in ``execute``.

Every test here runs with :func:`no_requests`: httpx's real transports fail the test on any
request at all, so a check that runs after a GET (reattach, poke) or after the paid POST shows.
An earlier generation sits in ``task_state_store`` where it matters, so a reattach that ran
before the checks would be caught too.
"""

from __future__ import annotations

import importlib.util
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from airflow.sdk import DAG

from kling_provider.exceptions import KlingValidationError
from kling_provider.hooks.kling import KlingHook
from kling_provider.operators.kling import (
    STATE_KEY,
    KlingDownloadVideoOperator,
    KlingGenerateVideoOperator,
    KlingTextToVideoOperator,
)
from kling_provider.sensors.kling import KlingGenerationSensor
from tests.conftest import StateStoreStub, context_for, run_async

GID = "10c09c56-2e00-4a64-89ec-358ff71f8144:kling-video/v2.1/master/text-to-video"
BAD_SECONDS = [float("inf"), float("-inf"), float("nan"), True, "30", 0, -5, None, [10],
               30 * 24 * 3600]


def with_earlier_generation() -> dict[str, Any]:
    store = StateStoreStub()
    store.set(STATE_KEY, {"generation_id": GID, "endpoint_family": "legacy",
                          "model": "klingai/v2.1-master-text-to-video", "submitted_at": 0})
    return context_for(store)  # type: ignore[no-any-return]


def test_no_requests_fixture_catches_a_request(no_requests: list[httpx.Request]) -> None:
    with pytest.raises(AssertionError, match="a request was sent"):
        KlingHook().get_generation(GID)
    assert len(no_requests) == 1


# -- parse time -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["poll_interval", "timeout"])
@pytest.mark.parametrize("value", BAD_SECONDS, ids=repr)
def test_generate_operator_refuses_bad_seconds(name: str, value: Any) -> None:
    with pytest.raises(KlingValidationError) as caught:
        KlingTextToVideoOperator(task_id="gen", prompt="p", **{name: value})
    message = str(caught.value)
    assert f"Task 'gen': invalid parameter '{name}'={value!r} ({type(value).__name__})" in message
    assert "finite number of seconds above 0 and at most 604800" in message


@pytest.mark.parametrize("name", ["poke_interval", "timeout"])
@pytest.mark.parametrize("value", BAD_SECONDS, ids=repr)
def test_sensor_refuses_bad_seconds(name: str, value: Any) -> None:
    with pytest.raises(KlingValidationError,
                       match=rf"Task 'wait': invalid parameter '{name}'=.*finite number"):
        KlingGenerationSensor(task_id="wait", generation_id=GID, **{name: value})


def test_mapped_generate_operator_checks_partial_seconds() -> None:
    with DAG(dag_id="mapped", schedule=None, start_date=datetime(2026, 1, 1)), \
            pytest.raises(KlingValidationError, match=r"Task 'gen': invalid parameter 'timeout'=inf"):
        KlingTextToVideoOperator.partial(task_id="gen", timeout=float("inf")).expand(prompt=["a"])


def test_seconds_accept_numbers_and_timedeltas() -> None:
    operator = KlingTextToVideoOperator(task_id="gen", prompt="p", poll_interval=15,
                                        timeout=timedelta(minutes=20))
    assert (operator.poll_interval, operator.timeout) == (15.0, 1200.0)
    sensor = KlingGenerationSensor(task_id="wait", generation_id=GID,
                                   poke_interval=timedelta(seconds=30), timeout=600)
    assert (sensor.poke_interval, sensor.timeout) == (30.0, 600.0)


def test_download_to_problems_found_at_parse_time() -> None:
    with pytest.raises(KlingValidationError, match=r"'download_to'='nosuch://b/v.mp4' .*"
                                                   r"no filesystem for 'nosuch://'"):
        KlingTextToVideoOperator(task_id="gen", prompt="p", download_to="nosuch://b/v.mp4")
    with pytest.raises(KlingValidationError, match="needs wait_for_completion=True"):
        KlingTextToVideoOperator(task_id="gen", prompt="p", download_to="/tmp/videos/",
                                 wait_for_completion=False)
    KlingTextToVideoOperator(task_id="gen", prompt="p", download_to="{{ var.value.where }}")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"destination": "nosuch://bucket/"}, r"'destination'='nosuch://bucket/'.*no filesystem"),
    ({"destination": "  "}, r"'destination'='  '.*a file path"),
    ({"destination": 42}, r"'destination'=42 \(int\).*expected a path"),
    ({"destination": "/tmp/v/", "max_bytes": -1}, r"'max_bytes'=-1 \(int\).*whole number"),
    ({"destination": "/tmp/v/", "max_bytes": True}, r"'max_bytes'=True \(bool\)"),
    ({"destination": "/tmp/v/", "max_bytes": "5MB"}, r"'max_bytes'='5MB' \(str\)"),
])
def test_download_operator_refuses_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(KlingValidationError, match=message):
        KlingDownloadVideoOperator(task_id="dl", generation_id=GID, **kwargs)


# -- execute: the checks come before any request ---------------------------------------------------

@pytest.mark.parametrize(("attribute", "value"), [
    ("timeout", float("inf")), ("poll_interval", float("nan")), ("timeout", "1800"),
    ("download_to", "nosuch://bucket/videos/"), ("max_cost_usd", float("nan")),
    ("on_uncertain_submission", "maybe"),
])
@pytest.mark.parametrize("deferrable", [True, False])
def test_generate_execute_checks_before_reattach_or_submit(
        no_requests: list[httpx.Request], attribute: str, value: Any, deferrable: bool) -> None:
    operator = KlingGenerateVideoOperator(task_id="gen", model="klingai/v2.1-master-text-to-video",
                                          prompt="p", deferrable=deferrable,
                                          download_to="{{ params.where }}")
    setattr(operator, attribute, value)  # as a mapped task or a rendered template leaves it
    with pytest.raises(KlingValidationError, match=f"'{attribute}'="):
        operator.execute(with_earlier_generation())  # type: ignore[arg-type]
    assert no_requests == []


@pytest.mark.parametrize("deferrable", [True, False])
@pytest.mark.parametrize(("attribute", "value", "message"), [
    ("poke_interval", float("nan"), "'poke_interval'=nan"),
    ("timeout", float("inf"), "'timeout'=inf"),
    ("generation_id", "  ", "'generation_id'='  '"),
])
def test_sensor_execute_checks_before_polling(no_requests: list[httpx.Request], deferrable: bool,
                                              attribute: str, value: Any, message: str) -> None:
    sensor = KlingGenerationSensor(task_id="wait", generation_id=GID, deferrable=deferrable)
    setattr(sensor, attribute, value)
    with pytest.raises(KlingValidationError, match=message):
        sensor.execute(context_for(None))
    assert no_requests == []


@pytest.mark.parametrize(("attribute", "value", "message"), [
    ("destination", "nosuch://bucket/clip.mp4", "no filesystem"),
    ("max_bytes", 0, "'max_bytes'=0"),
])
def test_download_execute_checks_before_fetching(no_requests: list[httpx.Request],
                                                 attribute: str, value: Any, message: str) -> None:
    operator = KlingDownloadVideoOperator(task_id="dl", generation_id=GID,
                                          destination="{{ params.where }}")
    setattr(operator, attribute, value)
    with pytest.raises(KlingValidationError, match=message):
        operator.execute(context_for(None))
    assert no_requests == []


def test_hook_waits_refuse_unbounded_seconds(no_requests: list[httpx.Request]) -> None:
    hook = KlingHook()
    with pytest.raises(KlingValidationError, match="'timeout'=inf"):
        hook.wait_for_generation(GID, timeout=float("inf"))
    with pytest.raises(KlingValidationError, match="'poll_interval'=nan"):
        hook.wait_for_generation(GID, poll_interval=float("nan"))
    with pytest.raises(KlingValidationError, match="'deadline'=inf"):
        run_async(lambda: hook.await_for_generation(GID, deadline=float("inf")))
    assert no_requests == []


def test_s3_destination_without_s3fs_is_refused_before_paying() -> None:
    """The README's example: on a machine without ``s3fs``, ``s3://`` fails at parse time."""
    if importlib.util.find_spec("s3fs") is not None:
        pytest.skip("s3fs is installed here: s3:// destinations are writable")
    with pytest.raises(KlingValidationError, match=r"'download_to'='s3://bucket/videos/'.*s3fs"):
        KlingTextToVideoOperator(task_id="gen", prompt="p", download_to="s3://bucket/videos/")
