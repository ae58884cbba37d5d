"""Terminal answers in every shape the service was seen to use, on the sync, async and trigger paths.

Status classification and error-shape parsing are pure functions in ``types.py``; these tests pin
what a user reads, and that no answer to the paid POST escapes as a raw httpx/json exception.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from airflow.providers.common.compat.sdk import TaskDeferred

from kling_provider._api import protocol as _protocol
from kling_provider.exceptions import (
    KlingGenerationFailedError,
    KlingSubmissionUncertainError,
    KlingValidationError,
)
from kling_provider.hooks.kling import KlingHook, aclose_shared_clients
from kling_provider.sensors.kling import KlingGenerationSensor
from kling_provider.testing.simulator import KlingSimulator
from kling_provider.triggers.kling import (
    KlingGenerationTrigger,
    KlingSubmissionRecoveryTrigger,
    generation_from_event,
)
from kling_provider.types import Generation, StatusClass, classify_status, describe_error
from tests.conftest import FakeClock, Script, StateStoreStub, context_for, ok, run_async
from tests.test_hook_rules import GID, MODES, create, wait
from tests.test_never_paying_twice import drive_resume, generate, paid, run

MakeHook = Callable[..., KlingHook]
VIDEO = {"url": "https://cdn.test/o.mp4", "file_name": "o.mp4", "file_size": 10}
#: The failure the Kling effects page shows, verbatim in shape.
FACE = {"detail": [{"loc": ["body", "image_url"], "msg": "Could not detect face in the image",
                    "type": "face_detection_error"}]}


# -- statuses -------------------------------------------------------------------------------------

@pytest.mark.parametrize("status", ["completed", "succeeded", "success", " Succeeded ", "SUCCESS"])
def test_success_spellings(status: str) -> None:
    assert classify_status(status) is StatusClass.SUCCESS


@pytest.mark.parametrize("mode", MODES)
def test_succeeded_generation_is_returned_at_once(mock_hook: MakeHook, clock: FakeClock,
                                                  mode: str) -> None:
    script = Script(ok({"id": GID, "status": "succeeded", "video": VIDEO}))
    generation = wait(mock_hook(script), mode, clock, timeout=1800, schedule="fixed")
    assert generation.video_url == VIDEO["url"]
    assert len(script.requests) == 1 and clock.sleeps == []  # not polled to the deadline


# -- error shapes ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("error", "reads"), [
    (FACE, "face_detection_error: Could not detect face in the image (field 'image_url')"),
    ({"name": "ContentPolicy", "message": "prompt blocked"}, "ContentPolicy: prompt blocked"),
    ("quota exceeded", "quota exceeded"),
    (["first problem", {"message": "second"}], "first problem; second"),
    ({"error": {"detail": [{"loc": ["body", "image_list", 1], "msg": "too small",
                            "type": "value_error"},
                           {"loc": ["body", "prompt"], "msg": "too long", "type": "value_error"}]}},
     "value_error: too small (field 'image_list[1]'); too long (field 'prompt')"),
    ({"detail": "Generation expired"}, "Generation expired"),
    ({"detail": [{"msg": "no field given"}]}, "no field given"),
    ({"code": 1301, "reason": "risk control"}, "1301: risk control"),
    ({"unexpected": {"shape": 1}}, '{"unexpected": {"shape": 1}}'),
    (None, "the API gave no reason"),
    ({}, "the API gave no reason"),
])
def test_failure_message_names_field_and_reason(error: Any, reads: str) -> None:
    generation = Generation.from_api({"id": "g1", "status": "error", "error": error})
    failure = _protocol.generation_failed(generation)
    assert str(failure).startswith("Generation 'g1' ended with status 'error': ")
    assert reads in str(failure)
    assert "unknown error" not in str(failure)


def test_describe_error_is_total() -> None:
    deep: Any = "bottom"
    for _ in range(50):
        deep = {"error": [deep]}
    values: list[Any] = [deep, 3, 2.5, True, ["", None, {}], {"name": {"x": 1}}, {"msg": None}]
    for value in values:
        name, message = describe_error(value)
        assert name is None or isinstance(name, str)
        assert message is None or isinstance(message, str)
    assert len(describe_error("x" * 10_000)[1] or "") <= 2000


@pytest.mark.parametrize("body", [
    {"id": "g", "status": "completed", "meta": "not an object", "video": "not an object"},
    {"id": "g", "status": "completed", "meta": {"usage": ["x"]}, "video": [None]},
    {"id": "g", "status": "completed", "video": {"url": {"nested": 1}, "file_size": float("inf"),
                                                  "duration": "long"}},
    {"id": "g", "status": None, "error": 42, "meta": {"usage": {"credits_used": "many"}}},
])
def test_generation_parsing_tolerates_odd_field_types(body: dict[str, Any]) -> None:
    generation = Generation.from_api(body)
    assert generation.generation_id == "g"
    assert generation.video_url is None and generation.file_size is None


# -- the same shapes through the trigger and the sensor ------------------------------------------

def _trigger_event(hook: KlingHook, monkeypatch: pytest.MonkeyPatch,
                   clock: FakeClock) -> dict[str, Any]:
    monkeypatch.setattr(KlingGenerationTrigger, "_hook", lambda self: hook)
    trigger = KlingGenerationTrigger(kling_conn_id="kling_default", generation_id=GID,
                                     poll_interval=10, deadline=clock.now() + 1800)

    async def first() -> dict[str, Any]:
        try:
            events = [event.payload async for event in trigger.run()]
            assert len(events) == 1
            return events[0]  # type: ignore[no-any-return]
        finally:
            await aclose_shared_clients()

    return asyncio.run(first())


def test_trigger_reports_succeeded_and_face_detection(mock_hook: MakeHook, clock: FakeClock,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    done = _trigger_event(mock_hook(Script(ok({"id": GID, "status": "succeeded",
                                               "video": VIDEO}))), monkeypatch, clock)
    assert done["status"] == "success"
    assert generation_from_event(done, expected_generation_id=GID).video_url == VIDEO["url"]
    failed = _trigger_event(mock_hook(Script(ok({"id": GID, "status": "failed", "error": FACE}))),
                            monkeypatch, clock)
    assert failed["status"] == "failure"
    with pytest.raises(KlingGenerationFailedError,
                       match=r"Could not detect face in the image \(field 'image_url'\)"):
        generation_from_event(failed, expected_generation_id=GID)


def test_sensor_poke_reads_succeeded_and_face_detection(mock_hook: MakeHook,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    hook = mock_hook(Script(ok({"id": GID, "status": "success", "video": VIDEO}),
                            ok({"id": GID, "status": "error", "error": FACE})))
    monkeypatch.setattr(KlingGenerationSensor, "hook", property(lambda self: hook))
    sensor = KlingGenerationSensor(task_id="wait", generation_id=GID, deferrable=False)
    context: dict[str, Any] = {"ti": type("TI", (), {"xcom_push": lambda *a, **k: None})()}
    assert sensor.poke(context).is_done is True  # type: ignore[arg-type]
    with pytest.raises(KlingGenerationFailedError, match="face_detection_error: Could not"):
        sensor.poke(context)  # type: ignore[arg-type]


# -- create answers that are not readable JSON ----------------------------------------------------

def _raw(content: bytes, status: int = 200, *,
         headers: dict[str, str] | None = None) -> Callable[[], httpx.Response]:
    """An answer whose body is read (and decoded) by the client, as from the network."""
    return lambda: httpx.Response(status, stream=httpx.ByteStream(content), headers=headers)


JSON = {"Content-Type": "application/json"}
GZIP = {**JSON, "Content-Encoding": "gzip"}
UNREADABLE: dict[str, Callable[[], httpx.Response]] = {
    "html page": _raw(b"<html><body>Bad Gateway</body></html>", headers={"Content-Type": "text/html"}),
    "empty 200": _raw(b""),
    "204 no content": _raw(b"", 204),
    "truncated json": _raw(b'{"id": "10c09c56-2e00', headers=JSON),
    "json list": _raw(b'["10c09c56"]', headers=JSON),
    "json string": _raw(b'"10c09c56"', headers=JSON),
    "json null": _raw(b"null", headers=JSON),
    "invalid utf-8": _raw(b'{"id": "\xff\xfe"}', headers=JSON),
    "nesting past the parser's recursion limit": _raw(b"[" * 200_000, headers=JSON),
    "gzip header over plain bytes": _raw(b'{"id": "x"}', headers=GZIP),
    "gzip body cut short": _raw(gzip.compress(b'{"id": "abc", "status": "queued"}')[:15],
                                headers=GZIP),
    "object without an id": _raw(b'{"status": "queued"}', headers=JSON),
    "id of the wrong type": _raw(b'{"id": {"nested": "x"}, "status": "queued"}', headers=JSON),
    "blank id": _raw(b'{"id": "   ", "status": "queued"}', headers=JSON),
    "redirect": _raw(b"", 302, headers={"Location": "https://elsewhere.test/"}),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("answer", list(UNREADABLE), ids=list(UNREADABLE))
def test_unreadable_create_answer_is_an_uncertain_submission(mock_hook: MakeHook, mode: str,
                                                             answer: str) -> None:
    script = Script(lambda request: UNREADABLE[answer]())
    with pytest.raises(KlingSubmissionUncertainError, match="may have been created") as caught:
        create(mock_hook(script), mode)
    assert script.methods() == ["POST"]  # reported, never re-sent
    assert not isinstance(caught.value.__cause__, (ValueError, RecursionError))


@pytest.mark.parametrize("mode", MODES)
def test_create_refused_without_id_reads_as_failure(mock_hook: MakeHook, mode: str) -> None:
    script = Script(ok({"status": "error", "error": {"name": "Moderation",
                                                     "message": "prompt blocked"}}))
    with pytest.raises(KlingGenerationFailedError,
                       match="The create request ended with status 'error': Moderation: prompt"):
        create(mock_hook(script), mode)


@pytest.mark.parametrize("mode", MODES)
def test_http_error_bodies_in_detail_shape_name_the_field(mock_hook: MakeHook, mode: str) -> None:
    script = Script(httpx.Response(400, json={"detail": FACE["detail"],
                                              "requestId": "req-9"}))
    with pytest.raises(KlingValidationError,
                       match=r"Could not detect face in the image \(field 'image_url'\) "
                             r"\(requestId req-9\)"):
        create(mock_hook(script), mode)


def test_retry_after_in_any_date_form_never_raises() -> None:
    assert _protocol.parse_retry_after("Wed, 21 Oct 2015 07:28:00 -0000") == 0.0
    assert _protocol.parse_retry_after("Wed, 99 Foo 2015 99:99:99 GMT") is None
    assert _protocol.parse_retry_after("1e999") == float("inf")


def test_async_and_sync_read_the_same_answer(mock_hook: MakeHook) -> None:
    hook = mock_hook(Script(*(ok({"id": GID, "status": "failed", "error": FACE}) for _ in "ab")))
    sync = hook.get_generation(GID)
    async_ = run_async(lambda: hook.aget_generation(GID))
    assert (sync.error_name, sync.error_message) == (async_.error_name, async_.error_message)


def test_created_then_unreadable_answer_is_recovered_not_repaid(airflow_sim: KlingSimulator,
                                                                clock: FakeClock) -> None:
    """End to end: a 200 HTML page after the API created the generation is recovered like a
    lost answer (usage-logs lookup in the same try), exactly one generation paid."""
    operator = generate(extra_params={"simulator_faults": {"create_garbled": True}})
    context = context_for(StateStoreStub())
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(context)
    assert isinstance(deferred.value.trigger, KlingSubmissionRecoveryTrigger)
    result = drive_resume(operator, context, deferred.value, run(deferred.value.trigger))
    assert result["status"] == "completed"
    assert list(paid(airflow_sim).values()) == [[result["generation_id"]]]
    assert airflow_sim.ledger.count(method="POST") == 1
