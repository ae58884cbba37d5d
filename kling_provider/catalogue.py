"""The Kling model catalogue: which models exist, which endpoint family serves them, what they accept.

Derived from the AI/ML API's published OpenAPI schemas by ``tools/build_catalogue.py`` into
``kling_provider/data/catalogue.json`` (package data, so installed copies need nothing else).
The operators call :func:`prepare_request` when a DAG is parsed and again before the POST, so a bad
``duration`` fails in the DAG processor, not after a paid request; the simulator uses the same
function to answer 400s, so tests exercise the same rules the users hit.

An unknown model id is refused with the closest known ids ("did you mean"): a typo must not reach
the API, where it would go to the wrong endpoint family or fail after the task started. A model
newer than this release needs no provider release: ``allow_unknown_model=True`` sends it
unvalidated (to the connection's endpoint family, or ``endpoint_family=...``).
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Collection, Mapping
from functools import cache
from importlib import resources
from typing import Any, Literal, NamedTuple

from kling_provider import _endpoints
from kling_provider._checks import require_json
from kling_provider.exceptions import KlingValidationError

#: What a ``format: uri`` field takes: an absolute URI (RFC 3986: a scheme, then no blanks).
_ABSOLUTE_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s<>\"{}|\\^`]+")

__all__ = [
    "ENDPOINT_FAMILIES",
    "EndpointFamily",
    "ModelSpec",
    "PreparedRequest",
    "get_model",
    "list_models",
    "prepare_request",
]

log = logging.getLogger(__name__)

EndpointFamily = Literal["legacy", "unified"]
ENDPOINT_FAMILIES: tuple[EndpointFamily, ...] = ("legacy", "unified")


# NamedTuples rather than frozen dataclasses: as immutable, and a fifth of the cost to define
# (this module is imported whenever a DAG file with a Kling operator is parsed).
class ModelSpec(NamedTuple):
    """One catalogue model: its kind (``text-to-video`` ...) and request schema per endpoint family."""

    model: str
    kind: str
    schemas: Mapping[str, Mapping[str, Any]]

    @property
    def families(self) -> tuple[str, ...]:
        return tuple(self.schemas)

    def parameters(self, family: str) -> tuple[str, ...]:
        return tuple(self.schemas[family].get("properties", {}))

    def required(self, family: str) -> tuple[str, ...]:
        return tuple(self.schemas[family].get("required", ()))


class PreparedRequest(NamedTuple):
    """A validated create body and the endpoint family it must go to."""

    family: EndpointFamily
    body: dict[str, Any]
    known_model: bool


@cache
def _catalogue() -> dict[str, Any]:
    text = resources.files("kling_provider").joinpath("data/catalogue.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def endpoint_path(family: str) -> str:
    """The URL path of an endpoint family (``legacy`` or ``unified``)."""
    return _endpoints.path(endpoint_family(family))


def list_models() -> list[str]:
    """Every model id the catalogue knows, sorted."""
    return sorted(_catalogue()["models"])


def get_model(model: str) -> ModelSpec | None:
    """The catalogue entry of ``model``, or ``None`` when the model is not in the catalogue."""
    entry = _catalogue()["models"].get(model)
    if entry is None:
        return None
    return ModelSpec(model=model, kind=entry["kind"], schemas=entry["families"])


def prepare_request(
    model: str,
    params: Mapping[str, Any],
    *,
    family: str = "legacy",
    extra_params: Mapping[str, Any] | None = None,
    pending: Collection[str] = (),
    allow_unknown_model: bool = False,
) -> PreparedRequest:
    """Validate ``params`` for ``model`` and build the JSON body of the create request.

    ``family`` is the connection's preferred endpoint family; a model that only the other family
    serves is sent there. ``None`` values are dropped (operators pass every optional argument).
    Numeric strings are accepted for numeric fields, because templated values render as strings.
    ``extra_params`` are merged in unvalidated: the escape hatch for fields the catalogue lacks.
    ``pending`` names fields whose values are not known yet (templates, XComArgs, checked when a
    DAG is parsed): they count as present and are checked again once rendered.
    ``allow_unknown_model`` lets a model id the catalogue lacks through, unvalidated.

    :raises KlingValidationError: naming the parameter, the value and what is allowed.
    """
    if not isinstance(model, str) or not model.strip():
        raise KlingValidationError(f"Invalid parameter 'model'={model!r}: a model id is required.")
    chosen = endpoint_family(family)
    given = {k: v for k, v in params.items() if v is not None}
    spec = get_model(model)
    if spec is None:
        if not allow_unknown_model:
            raise KlingValidationError(unknown_model_message(model, chosen))
        log.warning(
            "Model %r is not in the Kling catalogue (%d models); allow_unknown_model=True: sending "
            "it unvalidated to the %s endpoint (endpoint_family=... picks the other one).",
            model, len(list_models()), chosen,
        )
        _check_prompt(given, f"model {model!r}")
        passthrough = {"model": model, **given, **dict(extra_params or {})}
        require_json(passthrough, given)
        return PreparedRequest(family=chosen, body=passthrough, known_model=False)
    if chosen not in spec.schemas:
        (chosen,) = (f for f in ENDPOINT_FAMILIES if f in spec.schemas)
    schema = spec.schemas[chosen]
    where = f"model {model!r} ({chosen} endpoint)"
    allowed = spec.parameters(chosen)
    unknown = sorted((set(given) | set(pending)) - set(allowed))
    if unknown:
        raise KlingValidationError(
            f"Invalid parameter {unknown[0]!r}={given.get(unknown[0])!r} for {where}: not a parameter "
            f"of this model. Allowed: {', '.join(allowed)}. Pass fields the catalogue does not "
            "know through extra_params."
        )
    _check_prompt(given, where)
    present = ({k for k, v in given.items() if not _blank(v)} | set(pending)
               | set(extra_params or {}))
    missing = [r for r in spec.required(chosen) if r not in present]
    if missing:
        raise KlingValidationError(
            f"Missing parameter {missing[0]!r} for {where}: it is required "
            f"(required: {', '.join(spec.required(chosen))})."
        )
    _check_groups(schema, present, where, spec.kind)
    body: dict[str, Any] = {"model": model}
    for name, value in given.items():
        body[name] = _check(value, schema["properties"][name], name, where)
    body.update(extra_params or {})
    require_json(body, given)
    return PreparedRequest(family=chosen, body=body, known_model=True)


def _check_prompt(given: Mapping[str, Any], where: str) -> None:
    """An empty prompt is refused: the API's own rule, though its published schema allows one."""
    prompt = given.get("prompt")
    if isinstance(prompt, str) and not prompt.strip():
        raise KlingValidationError(
            f"Invalid parameter 'prompt'={prompt!r} for {where}: empty; the API refuses an empty "
            "prompt. Give the text to generate from, or leave prompt out (None) where the model "
            "does not need one.")


def _blank(value: Any) -> bool:
    return (isinstance(value, str) and not value.strip()) or (
        isinstance(value, (list, tuple, dict)) and not value)


def _check_groups(schema: Mapping[str, Any], present: set[str], where: str, kind: str) -> None:
    """The schema rules ``required`` cannot express (from the API's descriptions, see
    ``tools/build_catalogue.py``): at least one of, at most one of."""
    for group in schema.get("x-one-of-required", ()):
        if not present & set(group):
            raise KlingValidationError(
                f"Missing parameter {' or '.join(map(repr, group))} for {where}: a {kind} "
                f"request needs one of them; without it the API would bill a video made from "
                "no description."
            )
    for group in schema.get("x-exclusive", ()):
        both = [name for name in group if name in present]
        if len(both) > 1:
            raise KlingValidationError(
                f"Invalid parameters {' and '.join(map(repr, both))} for {where}: they are "
                "mutually exclusive, give only one."
            )


def closest_models(model: str, count: int = 3) -> list[str]:
    """Known model ids most like ``model`` (case-insensitive), best first."""
    import difflib  # only for a misspelled model id: not worth its import on every parse

    known = {m.lower(): m for m in list_models()}
    matches = difflib.get_close_matches(model.strip().lower(), list(known), n=count, cutoff=0.6)
    return [known[m] for m in matches]


def unknown_model_message(model: str, family: str) -> str:
    closest = closest_models(model)
    hint = (f"Did you mean {' or '.join(map(repr, closest))}?" if closest
            else "See kling_provider.catalogue.list_models().")
    return (
        f"Invalid parameter 'model'={model!r}: not one of the {len(list_models())} Kling models "
        f"this provider knows. {hint} If it is a model newer than this provider release, pass "
        f"allow_unknown_model=True to send it unvalidated (to the {family} endpoint; "
        "endpoint_family=... chooses)."
    )


def endpoint_family(family: str) -> EndpointFamily:
    """Check an endpoint family name."""
    for known in ENDPOINT_FAMILIES:
        if family == known:
            return known
    raise KlingValidationError(
        f"Invalid endpoint family {family!r}: allowed are 'legacy' (the seeds' "
        f"{_endpoints.path('legacy')}) and 'unified' ({_endpoints.path('unified')})."
    )


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list, tuple),
}


def _check(value: Any, schema: Mapping[str, Any], name: str, where: str) -> Any:
    """Check ``value`` against the JSON-Schema subset the catalogue uses; return it normalised."""
    if value is None and schema.get("nullable"):
        return None
    if "anyOf" in schema:
        problems = []
        for option in schema["anyOf"]:
            try:
                return _check(value, option, name, where)
            except KlingValidationError as exc:
                problems.append(str(exc))
        raise KlingValidationError(problems[0] if len(problems) == 1 else
                                   f"Invalid parameter {name!r}={value!r} for {where}: matches no "
                                   f"allowed form ({'; '.join(problems)}).")
    kind = schema.get("type")
    given = value
    value = _coerce(value, kind)
    allowed = _allowed(schema)
    if kind in _JSON_TYPES and (
        not isinstance(value, _JSON_TYPES[kind]) or (kind != "boolean" and isinstance(value, bool))
    ):
        raise KlingValidationError(
            f"Invalid parameter {name!r}={given!r} for {where}: must be {allowed}."
        )
    if isinstance(value, float) and not math.isfinite(value):  # NaN passes every range test
        raise KlingValidationError(
            f"Invalid parameter {name!r}={given!r} for {where}: must be {allowed}."
        )
    if "enum" in schema and value not in schema["enum"]:
        raise KlingValidationError(
            f"Invalid parameter {name!r}={given!r} for {where}: must be {allowed}."
        )
    low, high = schema.get("minimum"), schema.get("maximum")
    if (low is not None and value < low) or (high is not None and value > high):
        raise KlingValidationError(
            f"Invalid parameter {name!r}={given!r} for {where}: must be {allowed}."
        )
    if kind == "string":
        if schema.get("format") == "uri" and not _ABSOLUTE_URI.fullmatch(value):
            # The API refuses it with a 400 only after the POST; a rendered template that gave
            # "False" or "None" must fail here, before paying.
            raise KlingValidationError(
                f"Invalid parameter {name!r}={given!r} for {where}: must be a URL (an absolute "
                f"URI such as https://example.com/image.png, or a data: URI)."
            )
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            raise KlingValidationError(
                f"Invalid parameter {name!r} for {where}: {len(value)} characters, at most "
                f"{schema['maxLength']} allowed."
            )
        if "minLength" in schema and len(value) < schema["minLength"]:
            raise KlingValidationError(
                f"Invalid parameter {name!r}={value!r} for {where}: at least "
                f"{schema['minLength']} characters required."
            )
    if kind == "array":
        count = len(value)
        low_n, high_n = schema.get("minItems"), schema.get("maxItems")
        if (low_n is not None and count < low_n) or (high_n is not None and count > high_n):
            raise KlingValidationError(
                f"Invalid parameter {name!r} for {where}: {count} items given, allowed "
                f"{low_n if low_n is not None else 0} to {high_n if high_n is not None else 'any'}."
            )
        if "items" in schema:
            value = [_check(v, schema["items"], f"{name}[{i}]", where) for i, v in enumerate(value)]
    if kind == "object" and "properties" in schema:
        props = schema["properties"]
        for required in schema.get("required", ()):
            if required not in value:
                raise KlingValidationError(
                    f"Missing parameter '{name}.{required}' for {where}: it is required."
                )
        value = {
            k: (_check(v, props[k], f"{name}.{k}", where) if k in props else v)
            for k, v in value.items()
        }
    return value


def _allowed(schema: Mapping[str, Any]) -> str:
    """What a field accepts, in words: ``one of 5, 10``, ``a finite number between 0 and 1``."""
    kind = schema.get("type")
    if "enum" in schema:
        return f"one of {', '.join(map(repr, schema['enum']))}"
    what = {"integer": "a whole number", "number": "a finite number"}.get(str(kind),
                                                                         f"of type {kind}")
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None and high is not None:
        return f"{what} between {low} and {high}"
    if low is not None or high is not None:
        return f"{what} {'at least ' + str(low) if low is not None else 'at most ' + str(high)}"
    return what


def _coerce(value: Any, kind: Any) -> Any:
    """Numbers as the schema types them: templates render ``{{ params.duration }}`` as text.

    ``"5"``, ``"5.0"`` and ``5.0`` are the integer 5; ``"5.5"``, ``"nan"`` or ``"1e400"`` stay
    what they are for an integer field, and are refused as not whole. A number field reads any
    numeric text; what is not finite is refused by the caller.
    """
    if kind not in ("integer", "number") or isinstance(value, bool):
        return value
    number = value
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return value
    if not isinstance(number, float):
        return value
    if kind == "integer":
        return int(number) if number.is_integer() else value
    if isinstance(value, str) and number.is_integer() and "." not in value:
        return int(number)
    return number
