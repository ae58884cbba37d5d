"""The hook's rules, exercised with httpx's MockTransport and a fake clock, on both paths.

Every behaviour test runs twice, through the sync and the async driver, which proves the two
paths share one implementation rather than merely looking alike.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from kling_provider._api import protocol as _protocol
from kling_provider.exceptions import (
    KlingAuthenticationError,
    KlingGenerationFailedError,
    KlingGenerationNotFoundError,
    KlingNetworkError,
    KlingNoCreditsError,
    KlingRateLimitError,
    KlingServerError,
    KlingSubmissionUncertainError,
    KlingTimeoutError,
    KlingValidationError,
)
from kling_provider.hooks.kling import KlingHook
from tests.conftest import SECRET_KEY, FakeClock, Script, api_error, ok, run_async

MODEL = "klingai/v2.1-master-text-to-video"
GID = "10c09c56-2e00-4a64-89ec-358ff71f8144:kling-video/v2.1/master/text-to-video"
DONE = {"id": GID, "status": "completed",
        "video": {"url": "https://cdn.test/o.mp4", "file_name": "o.mp4", "file_size": 10}}

MODES = ["sync", "async"]


def create(hook: KlingHook, mode: str, **params: Any) -> str:
    params.setdefault("prompt", "a dragon")
    if mode == "sync":
        return hook.create_generation(MODEL, **params)
    return str(run_async(lambda: hook.acreate_generation(MODEL, **params)))


def fetch(hook: KlingHook, mode: str, generation_id: str = GID) -> Any:
    if mode == "sync":
        return hook.get_generation(generation_id)
    return run_async(lambda: hook.aget_generation(generation_id))


def wait(hook: KlingHook, mode: str, clock: FakeClock, timeout: float = 100,
         schedule: Any = "adaptive") -> Any:
    if mode == "sync":
        return hook.wait_for_generation(GID, poll_interval=10, timeout=timeout,
                                        poll_schedule=schedule)
    deadline = clock.now() + timeout
    return run_async(lambda: hook.await_for_generation(GID, poll_interval=10, deadline=deadline,
                                                       poll_schedule=schedule))


MakeHook = Callable[..., KlingHook]


# -- the paid POST -------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("status", [500, 502, 504])
def test_post_is_never_repeated_after_it_may_have_created(mock_hook: MakeHook, mode: str,
                                                          status: int) -> None:
    script = Script(api_error(status, "boom"))
    with pytest.raises(KlingSubmissionUncertainError, match="may have been created and billed"):
        create(mock_hook(script), mode)
    assert script.methods() == ["POST"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("error", [httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("drop"),
                                   httpx.WriteTimeout("w")])
def test_post_not_repeated_after_sending(mock_hook: MakeHook, mode: str,
                                         error: Exception) -> None:
    script = Script(error)
    with pytest.raises(KlingSubmissionUncertainError, match="dashboard"):
        create(mock_hook(script), mode)
    assert len(script.requests) == 1


@pytest.mark.parametrize("mode", MODES)
def test_post_retried_when_it_cannot_have_created(mock_hook: MakeHook, clock: FakeClock,
                                                  mode: str) -> None:
    script = Script(httpx.ConnectError("refused"), api_error(429, "Too Many Requests",
                                                             **{"Retry-After": "7"}),
                    api_error(503, "Service unavailable"), ok({"id": GID, "status": "queued"}))
    assert create(mock_hook(script), mode) == GID
    assert script.methods() == ["POST"] * 4
    assert clock.sleeps[1] == 7.0  # Retry-After honoured


@pytest.mark.parametrize("mode", MODES)
def test_post_with_unreadable_success_body_is_uncertain(mock_hook: MakeHook, mode: str) -> None:
    script = Script(httpx.Response(200, text="<html>"))
    with pytest.raises(KlingSubmissionUncertainError, match="not readable JSON"):
        create(mock_hook(script), mode)
    assert len(script.requests) == 1


def test_invalid_input_sends_nothing(mock_hook: MakeHook) -> None:
    script = Script()
    with pytest.raises(KlingValidationError, match="'duration'=7"):
        mock_hook(script).create_generation(MODEL, prompt="p", duration=7)
    assert script.requests == []


# -- GET retries and error mapping ---------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_get_retried_on_transient_faults(mock_hook: MakeHook, clock: FakeClock, mode: str) -> None:
    script = Script(httpx.ConnectError("x"), httpx.ReadTimeout("x"), api_error(500, "x"),
                    api_error(502, "x"), ok(DONE))
    generation = fetch(mock_hook(script, max_retries=5), mode)
    assert generation.video_url == "https://cdn.test/o.mp4"
    assert len(script.requests) == 5
    assert len(clock.sleeps) == 4


@pytest.mark.parametrize("mode", MODES)
def test_retry_after_is_capped(mock_hook: MakeHook, clock: FakeClock, mode: str) -> None:
    script = Script(api_error(429, "slow down", **{"Retry-After": "3600"}), ok(DONE))
    fetch(mock_hook(script), mode)
    assert clock.sleeps == [60.0]  # the cap docs/paying_once.rst gives


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("status", "error", "text"), [
    (400, KlingValidationError, "rejected the request.*Body validation error"),
    (401, KlingAuthenticationError, "API key of connection 'kling_default'"),
    (403, KlingNoCreditsError, "run out of credits"),
    (404, KlingGenerationNotFoundError, "does not know generation"),
])
def test_terminal_errors_are_not_retried(mock_hook: MakeHook, mode: str, status: int,
                                         error: type[Exception], text: str) -> None:
    message = {400: "Body validation error", 403: "You've run out of credits"}.get(status, "no")
    script = Script(api_error(status, message))
    with pytest.raises(error, match=text):
        fetch(mock_hook(script), mode)
    assert len(script.requests) == 1


@pytest.mark.parametrize("mode", MODES)
def test_retry_budget_then_clear_errors(mock_hook: MakeHook, mode: str) -> None:
    script = Script(*[api_error(429, "limit")] * 3)
    with pytest.raises(KlingRateLimitError, match="429"):
        fetch(mock_hook(script, max_retries=3), mode)
    script = Script(*[api_error(503, "down")] * 3)
    with pytest.raises(KlingServerError, match="503"):
        fetch(mock_hook(script, max_retries=3), mode)
    script = Script(*[httpx.ConnectError("refused")] * 3)
    with pytest.raises(KlingNetworkError, match="Could not reach"):
        fetch(mock_hook(script, max_retries=3), mode)


def test_backoff_is_exponential_with_jitter_and_capped() -> None:
    low = _protocol.RetryPolicy(rand=lambda: 0.0)
    high = _protocol.RetryPolicy(rand=lambda: 0.999999)
    assert [low.backoff(a) for a in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]
    assert high.backoff(3) == pytest.approx(4.0)
    assert low.backoff(20) == 15.0 and high.backoff(20) == pytest.approx(30.0)


def test_retry_after_http_date() -> None:
    assert _protocol.parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert _protocol.parse_retry_after("12") == 12.0
    assert _protocol.parse_retry_after("soon") is None


# -- waiting -------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_wait_survives_transient_and_unknown(mock_hook: MakeHook, clock: FakeClock, mode: str,
                                             caplog: pytest.LogCaptureFixture) -> None:
    script = Script(ok({"id": GID, "status": "queued"}), ok({"id": GID, "status": "thinking"}),
                    *[api_error(503, "down")] * 2,
                    ok({"id": GID, "status": "completed", "video": None}),
                    ok(DONE))
    with caplog.at_level(logging.WARNING, logger="kling_provider"):
        generation = wait(mock_hook(script, max_retries=2), mode, clock)
    assert generation.status == "completed"
    assert "unknown status 'thinking'" in caplog.text
    assert "failed transiently" in caplog.text
    assert "no video URL yet" in caplog.text


@pytest.mark.parametrize("mode", MODES)
def test_wait_raises_api_error_name_and_message(mock_hook: MakeHook, clock: FakeClock,
                                                mode: str) -> None:
    script = Script(ok({"id": GID, "status": "error",
                        "error": {"name": "ContentModeration", "message": "prompt blocked"}}))
    with pytest.raises(KlingGenerationFailedError, match="ContentModeration: prompt blocked") as err:
        wait(mock_hook(script), mode, clock)
    assert err.value.error_name == "ContentModeration"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("schedule", "polls"), [("fixed", 4), ("adaptive", 3)])
def test_wait_times_out_at_deadline(mock_hook: MakeHook, clock: FakeClock, mode: str,
                                    schedule: str, polls: int) -> None:
    script = Script(*[ok({"id": GID, "status": "generating"})] * 4)
    with pytest.raises(KlingTimeoutError, match="did not finish before the deadline"):
        wait(mock_hook(script), mode, clock, timeout=25, schedule=schedule)
    # Never sleeps past the deadline, and looks once more at it. The fixed schedule polls at
    # once, the adaptive one first at its early poll (10 s after the submission).
    assert clock.sleeps == [10, 10, 5]
    assert len(script.requests) == polls


@pytest.mark.parametrize("mode", MODES)
def test_wait_stops_on_auth_error(mock_hook: MakeHook, clock: FakeClock, mode: str) -> None:
    script = Script(ok({"id": GID, "status": "queued"}), api_error(401, "bad key"))
    with pytest.raises(KlingAuthenticationError):
        wait(mock_hook(script), mode, clock)


# -- secrets -------------------------------------------------------------------------------------

def test_key_never_in_errors_reprs_or_logs(mock_hook: MakeHook, caplog: pytest.LogCaptureFixture,
                                           clock: FakeClock) -> None:
    echo = api_error(401, f"Invalid key Bearer {SECRET_KEY}")
    script = Script(httpx.ConnectError("x"), echo)
    hook = mock_hook(script)
    with caplog.at_level(logging.DEBUG), pytest.raises(KlingAuthenticationError) as err:
        hook.get_generation(GID)
    assert script.requests[-1].headers["authorization"] == f"Bearer {SECRET_KEY}"
    # The hook holds the key (it must send it); what it shows of itself must not: its repr and
    # the reprs of everything it holds (settings, clients), as a debugger or a crash dump shows.
    texts = [str(err.value), repr(err.value), repr(hook), repr(hook.settings), caplog.text,
             str(vars(hook))]
    assert all(SECRET_KEY not in t for t in texts)
    assert "***" in str(err.value)


def test_missing_key_is_named(kling_env: Callable[..., None]) -> None:
    kling_env("https://api.example.test", key="")
    with pytest.raises(KlingAuthenticationError, match="has no API key"):
        KlingHook().get_generation(GID)


def test_connection_settings(kling_env: Callable[..., None]) -> None:
    kling_env("api.example.test", endpoint_family="unified", timeout=5)
    settings = KlingHook().settings
    assert settings.base_url == "https://api.example.test"
    assert settings.endpoint_family == "unified"
    assert settings.timeout == 5.0
    kling_env("api.example.test", max_retries=0)
    with pytest.raises(KlingValidationError, match="'max_retries'=0"):
        _ = KlingHook().settings


def test_test_connection_reports_bad_key(mock_hook: MakeHook) -> None:
    failed = mock_hook(Script(api_error(401, "nope"))).test_connection()
    assert failed[0] is False
    assert "API key of connection 'kling_default' (401) while checking the connection" in failed[1]
    result = mock_hook(Script(api_error(404, "unknown"))).test_connection()
    assert result[0] is True and "API key accepted" in result[1]
