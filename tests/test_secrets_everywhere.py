"""The API key reaches nothing a user, a log or a monitoring tool can read: sync, async, trigger.

Each scenario makes the provider fail (or log) in a way that once could carry the key: httpx
exceptions whose ``.request.headers`` hold ``Authorization``, chained as ``__cause__`` or
``__context__``; API answers that echo the key (an error body, a failed generation's message, an
HTML page). :func:`reachable_strings` then walks everything reachable from the raised exception
(str, repr, args, attributes, the whole cause/context chain, requests, responses, headers) and
the captured logs, and the distinctive key must be in none of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from kling_provider.exceptions import KlingError
from kling_provider.hooks.kling import KlingHook, aclose_shared_clients
from kling_provider.triggers.kling import KlingGenerationTrigger
from tests.conftest import SECRET_KEY, FakeClock, Script, api_error, ok, run_async
from tests.test_hook_rules import GID, MODEL

#: A key no other string could contain by accident: any hit below is the key itself.
KEY = "sk-" + "Zq7Xw3Vr9Ts5Pn1Lm8Kj4Hg6Fd2Sa0"
MODES = ["sync", "async"]


def reachable_strings(root: Any) -> Iterator[str]:
    """Every string reachable from ``root``: the exception chain and everything it holds."""
    seen: set[int] = set()
    todo = [root]
    while todo:
        item = todo.pop()
        if id(item) in seen or item is None:
            continue
        seen.add(id(item))
        if isinstance(item, (str, bytes)):
            yield item if isinstance(item, str) else item.decode("utf-8", "replace")
            continue
        if isinstance(item, (int, float, bool)):
            continue
        yield repr(item)
        if isinstance(item, BaseException):
            yield str(item)
            todo += [item.__cause__, item.__context__, *item.args,
                     *getattr(item, "__notes__", [])]
            for name in ("request", "response"):  # httpx raises when these are unset
                with contextlib.suppress(RuntimeError, AttributeError):
                    todo.append(getattr(item, name))
        if isinstance(item, httpx.Request):
            todo += [str(item.url), list(item.headers.raw)]
            with contextlib.suppress(httpx.RequestNotRead):
                todo.append(item.content)
        elif isinstance(item, httpx.Response):
            todo += [item.request if item._request is not None else None,
                     list(item.headers.raw), item.content]
        elif isinstance(item, dict):
            todo += [*item.keys(), *item.values()]
        elif isinstance(item, (list, tuple, set, frozenset)):
            todo += list(item)
        elif hasattr(item, "__dict__") and not isinstance(item, type):
            todo += list(vars(item).values())


def assert_no_key(*roots: Any) -> None:
    leaks = [text for root in roots for text in reachable_strings(root) if KEY in text]
    assert leaks == [], f"the API key leaked in: {leaks[:3]}"


def test_the_sweep_finds_a_key_in_a_chained_request_header() -> None:
    """The detector itself: a key three links down a chain, in a header, is found."""
    request = httpx.Request("GET", "https://api.test/", headers={"Authorization": f"Bearer {KEY}"})
    try:
        try:
            raise httpx.ReadTimeout("slow", request=request)
        except httpx.ReadTimeout as inner:
            raise KlingError("wrapped") from inner
    except KlingError as outer:
        with pytest.raises(AssertionError, match="leaked"):
            assert_no_key(outer)


@pytest.fixture
def key_hook(kling_env: Callable[..., None], clock: FakeClock) -> Callable[[Script], KlingHook]:
    def make(script: Script) -> KlingHook:
        kling_env("https://api.example.test", key=KEY, max_retries=2)
        transport = httpx.MockTransport(script)
        return KlingHook(clock=clock, transport=transport, async_transport=transport)

    return make


def call(hook: KlingHook, mode: str, what: str) -> Any:
    if what == "create":
        if mode == "sync":
            return hook.create_generation(MODEL, prompt="p")
        return run_async(lambda: hook.acreate_generation(MODEL, prompt="p"))
    if what == "fetch":
        return hook.get_generation(GID) if mode == "sync" else run_async(
            lambda: hook.aget_generation(GID))
    if what == "find":
        since = hook.clock.now() - 60
        return hook.find_generation("kling:d:r:t:-1.t1r1", model=MODEL, since=since) \
            if mode == "sync" else run_async(lambda: hook.afind_generation(
                "kling:d:r:t:-1.t1r1", model=MODEL, since=since))
    if mode == "sync":  # a fixed schedule: polls only, no timing lookups in the script
        return hook.wait_for_generation(GID, poll_interval=10, timeout=30, poll_schedule="fixed")
    deadline = hook.clock.now() + 30
    return run_async(lambda: hook.await_for_generation(GID, poll_interval=10, deadline=deadline,
                                                       poll_schedule="fixed"))


def echoing(status: int) -> Callable[[httpx.Request], httpx.Response]:
    """An error answer that repeats the request's Authorization header back."""
    return lambda request: api_error(status, f"bad header {request.headers['authorization']}")


class OddTransportError(httpx.NetworkError):
    """A transport's own error type, built differently from httpx's."""

    def __init__(self, text: str, *, code: int) -> None:
        super().__init__(f"{text} ({code})")


SCENARIOS: dict[str, tuple[str, Callable[[], list[Any]]]] = {
    "POST read timeout (uncertain)": ("create", lambda: [httpx.ReadTimeout("slow")]),
    "POST dropped connection": ("create", lambda: [httpx.RemoteProtocolError("peer closed")]),
    "POST undecodable answer": ("create", lambda: [
        lambda r: httpx.Response(200, stream=httpx.ByteStream(b"x"),
                                 headers={"Content-Encoding": "gzip"})]),
    "POST 502 echoing the key": ("create", lambda: [echoing(502)]),
    "POST 401 echoing the key": ("create", lambda: [echoing(401)]),
    "POST 400 detail echoing the key": ("create", lambda: [lambda r: httpx.Response(
        400, json={"detail": [{"loc": ["header", "authorization"],
                               "msg": f"malformed {r.headers['authorization']}",
                               "type": "value_error"}]})]),
    "POST refused, message echoing the key": ("create", lambda: [lambda r: ok(
        {"status": "error", "error": {"name": "Auth", "message": r.headers["authorization"]}})]),
    "POST failing with a transport's own error class": ("create", lambda: [
        OddTransportError("gone", code=7)]),
    "GET connect errors until the budget is spent": ("fetch", lambda: [
        httpx.ConnectError("refused"), httpx.ConnectError("refused")]),
    "GET HTML 500 pages echoing the key": ("fetch", lambda: [
        lambda r: httpx.Response(500, text=f"<pre>{r.headers['authorization']}</pre>")] * 2),
    "GET 403 echoing the key": ("fetch", lambda: [echoing(403)]),
    "failed generation echoing the key": ("wait", lambda: [lambda r: ok(
        {"id": GID, "status": "error", "error": {
            "detail": [{"msg": f"token {r.headers['authorization']} rejected", "type": "x"}]}})]),
    "usage-logs lookup 401 echoing the key": ("find", lambda: [echoing(401)]),
    "usage-logs lookup 400 detail echoing the key": ("find", lambda: [lambda r: httpx.Response(
        400, json={"detail": [{"loc": ["query", "limit"], "type": "value_error",
                               "msg": f"bad {r.headers['authorization']}"}]})]),
    "polls failing transiently then the deadline": ("wait", lambda: [
        httpx.ReadTimeout("slow")] * 2 * 4 + [echoing(503)] * 8),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_no_raised_error_or_log_carries_the_key(key_hook: Callable[[Script], KlingHook],
                                                mode: str, scenario: str,
                                                caplog: pytest.LogCaptureFixture,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    what, answers = SCENARIOS[scenario]
    script = Script(*answers())
    hook = key_hook(script)
    with caplog.at_level(logging.DEBUG), pytest.raises(KlingError) as caught:
        call(hook, mode, what)
    assert script.requests[0].headers["authorization"] == f"Bearer {KEY}"  # it was sent
    assert_no_key(caught.value, caplog.text, capsys.readouterr(), repr(hook), str(vars(hook)))


def test_trigger_events_and_kwargs_never_carry_the_key(key_hook: Callable[[Script], KlingHook],
                                                       clock: FakeClock,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[Any] = []
    for answer in (echoing(401), lambda r: ok({"id": GID, "status": "failed",
                                               "error": r.headers["authorization"]})):
        hook = key_hook(Script(answer))
        monkeypatch.setattr(KlingGenerationTrigger, "_hook", lambda self, hook=hook: hook)
        # Fixed: the script answers polls only (the adaptive default asks the keyless
        # /models/metrics first).
        trigger = KlingGenerationTrigger(kling_conn_id="kling_default", generation_id=GID,
                                         poll_interval=10, deadline=clock.now() + 60,
                                         poll_schedule="fixed")

        async def run(trigger: KlingGenerationTrigger = trigger) -> list[Any]:
            try:
                return [event.payload async for event in trigger.run()]
            finally:
                await aclose_shared_clients()

        events += asyncio.run(run())
        assert_no_key(trigger.serialize(), repr(trigger))
    assert [e["status"] for e in events] == ["error", "failure"]
    assert_no_key(events, json.dumps(events))


def test_successful_answers_echoing_the_key_are_scrubbed(
        key_hook: Callable[[Script], KlingHook]) -> None:
    """A fetch answer repeating the key (in any field) never reaches XCom-bound values."""
    hook = key_hook(Script(lambda r: ok({"id": GID, "status": "completed",
                                         "video": {"url": "https://cdn.test/o.mp4"},
                                         "debug": {"auth": r.headers["authorization"]}})))
    generation = hook.get_generation(GID)
    assert generation.video_url == "https://cdn.test/o.mp4"
    assert_no_key(generation, generation.to_dict(), generation.raw)


def test_the_shared_test_key_is_not_this_key() -> None:
    assert KEY not in SECRET_KEY and SECRET_KEY not in KEY  # scenarios above use KEY only


def test_download_from_the_api_origin_and_connection_test_never_carry_the_key(
        key_hook: Callable[[Script], KlingHook], tmp_path: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    """The key is attached to downloads on the API's own origin: their failures are checked too."""
    script = Script(*[httpx.ReadTimeout("slow")] * 3)
    hook = key_hook(script)
    with caplog.at_level(logging.DEBUG), pytest.raises(KlingError) as caught:
        hook.download_video("https://api.example.test/files/o.mp4", tmp_path / "o.mp4")
    assert script.requests[0].headers["authorization"] == f"Bearer {KEY}"
    probe = key_hook(Script(echoing(401))).test_connection()
    assert probe[0] is False
    assert_no_key(caught.value, caplog.text, probe)


def test_a_short_key_never_corrupts_answers(kling_env: Callable[..., None],
                                            clock: FakeClock) -> None:
    """Scrubbing is for real keys: a one-letter test key must not eat every 'k' of an id."""
    kling_env("https://api.example.test", key="k")
    transport = httpx.MockTransport(Script(ok({"id": GID, "status": "completed",
                                                "video": {"url": "https://cdn.test/kling.mp4"}})))
    generation = KlingHook(clock=clock, transport=transport).get_generation(GID)
    assert (generation.generation_id, generation.video_url) == (GID, "https://cdn.test/kling.mp4")
