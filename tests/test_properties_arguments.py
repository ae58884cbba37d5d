"""Property tests: every request argument of the generate operator, as users write it.

For any Kling model of the catalogue and either endpoint family, each request field is given as
a literal, as a template rendered by Airflow to text, or rendered natively
(``render_template_as_native_obj``), with values from :mod:`tests.properties` (valid ones,
``"5.0"``, ``"nan"``, ``"1e400"``, ``" 5 "``, NaN, infinities, huge and negative numbers, empty
and unicode strings, ``None``, wrong types). The operator is then driven for real against the
simulator (deferrable or polling in the worker, the fake clock moving time). Invariant:

* a value the schema refuses is refused **before any request** (the simulator saw nothing, no
  intent was stored) with a message naming a field whose value was refusable;
* otherwise the run completes with **exactly one** paid generation, its result names it, its
  video is the one downloaded, and the body sent holds the validated values.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import DAG
from hypothesis import event, given, note, settings
from hypothesis import strategies as st

from kling_provider._api import protocol as _protocol
from kling_provider._task.submission import STATE_KEY
from kling_provider.catalogue import list_models
from kling_provider.exceptions import KlingValidationError
from kling_provider.operators.kling import KlingGenerateVideoOperator
from kling_provider.testing.simulator import KlingSimulator
from tests.conftest import FakeClock, StateStoreStub, context_for
from tests.properties import (
    ABSENT,
    EITHER,
    INVALID,
    VALID,
    Verdict,
    classify,
    hostile_value,
    model_fields,
    non_finite_value,
    numeric,
    valid_value,
)
from tests.test_never_paying_twice import drive

#: The request fields the operator takes as named arguments; the others go in ``parameters``.
NAMED = ("prompt", "negative_prompt", "aspect_ratio", "duration", "cfg_scale", "camera_control",
         "image_url", "tail_image_url", "image_list")
FORMS = ("literal", "text", "native")

class Bodies:
    """Records each create body the hook hands to the protocol (the call goes through)."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []


@pytest.fixture
def bodies(monkeypatch: pytest.MonkeyPatch) -> Bodies:
    seen = Bodies()
    real = _protocol.create_steps

    def recording(family: str, body: Any, *args: Any, **kwargs: Any) -> Any:
        seen.sent.append(dict(body))
        return real(family, body, *args, **kwargs)

    monkeypatch.setattr(_protocol, "create_steps", recording)
    return seen


def _same(sent: Any, expected: Any) -> bool:
    """The body holds the validated value: same number (not a bool), same text, same list."""
    if isinstance(expected, bool) or isinstance(sent, bool):
        return sent is expected
    if isinstance(expected, (int, float)):
        return isinstance(sent, (int, float)) and sent == expected
    if isinstance(expected, list):
        return isinstance(sent, (list, tuple)) and list(sent) == expected
    return bool(sent == expected)


@dataclass
class World:
    """The fixtures one run uses: the simulator, where the connection points, what was sent."""

    sim: KlingSimulator
    kling_env: Any
    bodies: Bodies
    paths: Iterator[Path]


@pytest.fixture
def world(airflow_sim: KlingSimulator, clock: FakeClock, kling_env: Any, bodies: Bodies,
          tmp_path: Path) -> World:
    airflow_sim.balance_usd = 1e9  # hundreds of paid runs per test
    return World(airflow_sim, kling_env, bodies,
                 (tmp_path / f"video-{n}.mp4" for n in itertools.count()))


Values = Callable[[Mapping[str, Any]], st.SearchStrategy[Any]]


def run_once(data: st.DataObject, world: World, values_of: Values,
             fields: Callable[[Mapping[str, Any]], bool] = lambda prop: True) -> None:
    """Draw a request (a model, a family, each field's value and form), run it, check it.

    A complete valid request first, then one to three fields (those ``fields`` accepts) get a
    value from ``values_of``, each as a literal or a template rendered by Airflow.
    """
    model = data.draw(st.sampled_from(list_models()), label="model")
    connection_family = data.draw(st.sampled_from(["legacy", "unified"]), label="connection")
    world.kling_env(world.sim.base_url, endpoint_family=connection_family)
    _, props, needed = model_fields(model, connection_family)
    values = {name: data.draw(valid_value(props[name]), label=name) for name in sorted(needed)}
    optional = sorted(set(props) - needed)
    for name in data.draw(st.lists(st.sampled_from(optional), unique=True, max_size=3)
                          if optional else st.just([]), label="optional fields"):
        values[name] = data.draw(valid_value(props[name]), label=name)
    targets = sorted(n for n, prop in props.items() if fields(prop))
    if not targets:
        return
    for name in data.draw(st.lists(st.sampled_from(targets), min_size=1, max_size=3,
                                   unique=True), label="fields to vary"):
        values[name] = data.draw(values_of(props[name]), label=name)
    forms = {name: data.draw(st.sampled_from(FORMS), label=f"form of {name}") for name in values}
    native = data.draw(st.booleans(), label="render_template_as_native_obj")
    deferrable = data.draw(st.booleans(), label="deferrable")
    poll_schedule: Any = data.draw(st.sampled_from(["adaptive", "fixed"]), label="poll_schedule")

    params = {n: v for n, v in values.items() if forms[n] != "literal"}
    written = {n: (f"{{{{ params[{n!r}] }}}}" if forms[n] != "literal" else v)
               for n, v in values.items()}
    # A template goes where the operator renders it: in its own argument when that is a
    # templated field, else in ``parameters`` (test_every_request_argument_is_templated).
    templated = set(KlingGenerateVideoOperator.template_fields)
    named: dict[str, Any] = {n: v for n, v in written.items()
             if n in NAMED and (forms[n] == "literal" or n in templated)}
    extra = {n: v for n, v in written.items() if n not in named}
    before = _snapshot(world.sim, world.bodies)
    store = StateStoreStub()
    context = context_for(store)
    context["params"] = params
    destination = next(world.paths)
    verdicts: dict[str, Verdict] = {}
    try:
        with DAG(dag_id="properties", schedule=None, render_template_as_native_obj=native):
            operator = KlingGenerateVideoOperator(
                task_id="generate", model=model, endpoint_family=connection_family,
                deferrable=deferrable, poll_interval=30,
                poll_schedule=poll_schedule, parameters=extra or None,
                download_to=str(destination), **named)
        for name, value in values.items():  # what Airflow's renderer makes of what was written
            # Native rendering turns even a literal "0" of a templated field into 0.
            rendered = name in extra or name in templated
            arrives = operator.render_template(written[name], context) if rendered else value
            verdicts[name] = classify(arrives, props[name], required=name in needed)
            note(f"{name}: {forms[name]} {value!r} arrives as {arrives!r}: {verdicts[name]}")
        operator.render_template_fields(context)
        result = drive(operator, context)
    except KlingValidationError as refusal:
        if not verdicts:  # refused by the constructor: the literals alone decide
            verdicts = {n: classify(v, props[n], required=n in needed)
                        for n, v in values.items() if forms[n] == "literal"}
        _assert_refused_before_any_request(str(refusal), verdicts, world.sim, world.bodies,
                                           before, store)
        return
    _assert_paid_once(result, verdicts, world.sim, world.bodies, before, store, destination)


@given(data=st.data())
def test_valid_requests_in_any_form_are_paid_once(data: st.DataObject, world: World) -> None:
    """Valid values, written as literals or rendered to text or natively, go through."""
    run_once(data, world, lambda prop: valid_value(prop) | valid_value(prop).map(str))


@given(data=st.data())
def test_hostile_values_are_refused_before_paying_or_paid_once(data: st.DataObject,
                                                               world: World) -> None:
    """Rendered text, huge and negative numbers, empty and unicode strings, None, wrong types."""
    run_once(data, world, hostile_value)


@given(data=st.data())
def test_non_finite_numbers_are_refused_before_paying(data: st.DataObject,
                                                      world: World) -> None:
    """NaN, infinities and 1e400, as values or rendered text, in every numeric field."""
    run_once(data, world, non_finite_value, fields=numeric)


def _snapshot(sim: KlingSimulator, bodies: Bodies) -> tuple[int, set[str], int]:
    return len(sim.ledger.entries()), set(sim.generation_ids()), len(bodies.sent)


def _assert_refused_before_any_request(message: str, verdicts: dict[str, Verdict],
                                       sim: KlingSimulator, bodies: Bodies,
                                       before: tuple[int, set[str], int],
                                       store: StateStoreStub) -> None:
    culprits = [n for n, v in verdicts.items() if v.kind in (INVALID, EITHER)]
    note(f"refused: {message}")
    event("refused before paying")
    assert culprits, f"a valid request was refused: {message}"
    assert any(f"'{name}'" in message for name in culprits), \
        f"the refusal names none of {culprits}: {message}"
    assert _snapshot(sim, bodies) == before, "a request was sent before the refusal"
    assert STATE_KEY not in store.data, "an intent was stored for a request never sent"


def _assert_paid_once(result: dict[str, Any], verdicts: dict[str, Verdict], sim: KlingSimulator,
                      bodies: Bodies, before: tuple[int, set[str], int], store: StateStoreStub,
                      destination: Path) -> None:
    event("paid once")
    refusable = [n for n, v in verdicts.items() if v.kind == INVALID]
    assert not refusable, f"{refusable} should have been refused before paying: {result}"
    entries, generations, sent = before
    new = set(sim.generation_ids()) - generations
    assert len(new) == 1, f"{len(new)} generations paid"
    (generation_id,) = new
    posts = [e for e in sim.ledger.entries()[entries:] if e.method == "POST"]
    assert len(posts) == 1
    assert result["generation_id"] == generation_id and result["status"] == "completed"
    assert destination.read_bytes() == sim.video_of(generation_id)
    assert store.data[STATE_KEY]["generation_id"] == generation_id
    assert store.data[STATE_KEY]["delivered"] is True
    (body,) = bodies.sent[sent:]
    for name, verdict in verdicts.items():
        if verdict.sent is ABSENT:
            assert name not in body, f"{name}={body.get(name)!r} sent for a value not given"
        elif not (verdict.may_drop and name not in body):
            assert name in body and _same(body[name], verdict.sent), \
                f"{name}: sent {body.get(name)!r}, the validated value is {verdict.sent!r}"
    if "duration" in verdicts and verdicts["duration"].sent is not ABSENT:
        assert result["duration"] == verdicts["duration"].sent


def test_oracle_examples() -> None:
    """The oracle itself, on the rows of the issue (a wrong oracle proves nothing)."""
    duration = {"type": "integer", "enum": [5, 10]}
    cfg = {"type": "number", "minimum": 0, "maximum": 1}
    assert classify("5", duration, required=False) == Verdict(VALID, 5)
    assert classify("5.0", duration, required=False) == Verdict(EITHER, 5)
    assert classify(" 5 ", duration, required=False) == Verdict(EITHER, 5)
    assert classify("7", duration, required=False).kind == INVALID
    assert classify("1e400", duration, required=False).kind == INVALID
    assert classify(True, duration, required=False).kind == INVALID
    assert classify(None, duration, required=False) == Verdict(VALID)
    for bad in ("nan", math.nan, math.inf, "inf", "-1e400", 1.5, -0.1, "1e400", "", None):
        assert classify(bad, cfg, required=True).kind == INVALID, bad
    assert classify("0.5", cfg, required=False) == Verdict(VALID, 0.5)
    assert classify(10**400, cfg, required=False).kind == INVALID  # no float form at all
    assert classify("False", {"type": "string", "format": "uri"}, required=True).kind == EITHER
    prompt = {"type": "string", "maxLength": 10}
    assert classify("   ", prompt, required=True).kind == INVALID
    assert classify("x" * 11, prompt, required=False).kind == INVALID
    assert classify("\ud83d", prompt, required=False).kind == EITHER
    assert classify("caf\u00e9", prompt, required=True) == Verdict(VALID, "caf\u00e9")


# -- the minimal failing examples of the findings above, kept as plain regression tests --------

@pytest.mark.parametrize("written", [math.nan, "nan", "{{ params.cfg }}"])
def test_nan_cfg_scale_is_refused_before_paying(world: World, written: Any) -> None:
    """NaN passes every range check (each comparison with it is false); it once reached the
    POST, which failed to encode after the intent was stored."""
    context = context_for(StateStoreStub())
    context["params"] = {"cfg": "nan"}

    def parse_and_run() -> None:
        with DAG(dag_id="nan", schedule=None):
            operator = KlingGenerateVideoOperator(
                task_id="generate", model="klingai/v2-master-text-to-video", prompt="a raccoon",
                deferrable=False, parameters={"cfg_scale": written})
        operator.render_template_fields(context)
        operator.execute(context)

    with pytest.raises(KlingValidationError, match="'cfg_scale'"):  # when parsed, or executed
        parse_and_run()
    assert world.sim.ledger.entries() == [] and context["task_state_store"].data == {}


def test_every_request_argument_is_templated(world: World) -> None:
    """``duration="{{ params.duration }}"`` once reached validation unrendered."""
    templated: dict[str, Any] = {"prompt": "{{ params.prompt }}", "aspect_ratio": "{{ params.ratio }}",
                 "duration": "{{ params.duration }}", "cfg_scale": "{{ params.cfg }}",
                 "camera_control": "{{ params.camera }}"}
    with DAG(dag_id="templated", schedule=None):
        operator = KlingGenerateVideoOperator(
            task_id="generate", model="klingai/v2-master-text-to-video", deferrable=False,
            endpoint_family="unified", **templated)
    assert set(NAMED) <= set(operator.template_fields)
    context = context_for(StateStoreStub())
    context["params"] = {"prompt": "a raccoon", "ratio": "9:16", "duration": 10, "cfg": 0.25,
                         "camera": "down_back"}
    operator.render_template_fields(context)
    result = operator.execute(context)
    assert result["status"] == "completed" and result["duration"] == 10
    (body,) = world.bodies.sent
    assert (body["aspect_ratio"], body["duration"], body["cfg_scale"]) == ("9:16", 10, 0.25)


def test_parse_time_refusal_names_the_bad_field_whatever_the_family() -> None:
    """It once named only the first family's problem: a field fine for the other family."""
    # ``provider`` is a field of the unified schema only; the bad value is image_url's.
    with pytest.raises(KlingValidationError, match="'image_url'"):
        KlingGenerateVideoOperator(task_id="generate",
                                   model="kling-video/v1.6/standard/image-to-video",
                                   prompt="a raccoon", image_url=5,  # type: ignore[arg-type]
                                   parameters={"provider": "kling"})


def test_the_budget_of_this_run() -> None:
    """``make test`` runs these with a fixed number of examples from a derandomized seed;
    ``make fuzz`` runs them randomized and much longer."""
    profile = os.environ.get("HYPOTHESIS_PROFILE", "ci")
    assert settings.default == settings.get_profile(profile)
    ci = settings.get_profile("ci")
    assert ci.derandomize and ci.database is None and ci.max_examples <= 50
    fuzz = settings.get_profile("fuzz")
    assert not fuzz.derandomize
    assert fuzz.max_examples == int(os.environ.get("FUZZ_EXAMPLES", 10 * ci.max_examples))
    makefile = (Path(__file__).resolve().parent.parent / "Makefile").read_text()
    assert "HYPOTHESIS_PROFILE=fuzz" in makefile.split("\nfuzz:", 1)[1].split("\n\n", 1)[0]


def test_non_url_in_a_uri_field_is_refused_before_paying(world: World) -> None:
    context = context_for(StateStoreStub())

    def parse_and_run() -> None:
        operator = KlingGenerateVideoOperator(
            task_id="generate", model="klingai/video-v3-omni-720p-image-to-video",
            prompt="a raccoon", image_url="False", deferrable=False)
        operator.execute(context)

    with pytest.raises(KlingValidationError, match="'image_url'"):
        parse_and_run()
    assert world.sim.ledger.count(method="POST") == 0
