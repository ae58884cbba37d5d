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

The rules a value and a request are checked by are in ``kling_provider._catalogue_rules``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping
from functools import cache
from importlib import resources
from typing import Any, Literal, NamedTuple

from kling_provider import _endpoints
from kling_provider._catalogue_rules import check_groups, check_prompt, check_value, is_blank
from kling_provider._checks import require_json
from kling_provider.exceptions import KlingValidationError

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
    known_as: str | None = None,
) -> PreparedRequest:
    """Validate ``params`` for ``model`` and build the JSON body of the create request.

    ``family`` is the connection's preferred endpoint family; a model that only the other family
    serves is sent there. ``None`` values are dropped (operators pass every optional argument).
    Numeric strings are accepted for numeric fields, because templated values render as strings.
    ``extra_params`` are merged in unvalidated: the escape hatch for fields the catalogue lacks.
    ``pending`` names fields whose values are not known yet (templates, XComArgs, checked when a
    DAG is parsed): they count as present and are checked again once rendered.
    ``allow_unknown_model`` lets a model id the catalogue lacks through, unvalidated.
    ``known_as`` is the catalogue model whose parameters ``model`` takes when the catalogue lacks
    ``model`` itself (an alias or a superseded id, per the model deprecation feed:
    :func:`kling_provider._models.retirement.catalogue_model`); the body still names ``model``.

    :raises KlingValidationError: naming the parameter, the value and what is allowed.
    """
    if not isinstance(model, str) or not model.strip():
        raise KlingValidationError(f"Invalid parameter 'model'={model!r}: a model id is required.")
    if extra_params and "model" in extra_params:
        # One model for all: the estimate, the budget, the wait's timings and the result read
        # ``model``; a body naming another would pay for a model nothing else knows about.
        raise KlingValidationError(
            f"Invalid parameter extra_params['model']={extra_params['model']!r}: the model is "
            f"given by the 'model' parameter ({model!r}); extra_params may not replace it.")
    chosen = endpoint_family(family)
    given = {k: v for k, v in params.items() if v is not None}
    spec = get_model(model) or (get_model(known_as) if known_as else None)
    if spec is None:
        if not allow_unknown_model:
            raise KlingValidationError(unknown_model_message(model, chosen))
        log.warning(
            "Model %r is not in the Kling catalogue (%d models); allow_unknown_model=True: sending "
            "it unvalidated to the %s endpoint (endpoint_family=... picks the other one).",
            model, len(list_models()), chosen,
        )
        check_prompt(given, f"model {model!r}")
        passthrough = {"model": model, **given, **dict(extra_params or {})}
        require_json(passthrough, given)
        return PreparedRequest(family=chosen, body=passthrough, known_model=False)
    if chosen not in spec.schemas:
        (chosen,) = (f for f in ENDPOINT_FAMILIES if f in spec.schemas)
    schema = spec.schemas[chosen]
    where = (f"model {model!r} ({chosen} endpoint)" if spec.model == model
             else f"model {model!r} (as {spec.model!r}, {chosen} endpoint)")
    allowed = spec.parameters(chosen)
    unknown = sorted((set(given) | set(pending)) - set(allowed))
    if unknown:
        raise KlingValidationError(
            f"Invalid parameter {unknown[0]!r}={given.get(unknown[0])!r} for {where}: not a parameter "
            f"of this model. Allowed: {', '.join(allowed)}. Pass fields the catalogue does not "
            "know through extra_params."
        )
    check_prompt(given, where)
    present = ({k for k, v in given.items() if not is_blank(v)} | set(pending)
               | set(extra_params or {}))
    missing = [r for r in spec.required(chosen) if r not in present]
    if missing:
        raise KlingValidationError(
            f"Missing parameter {missing[0]!r} for {where}: it is required "
            f"(required: {', '.join(spec.required(chosen))})."
        )
    check_groups(schema, present, where, spec.kind)
    body: dict[str, Any] = {"model": model}
    for name, value in given.items():
        body[name] = check_value(value, schema["properties"][name], name, where)
    body.update(extra_params or {})
    require_json(body, given)
    return PreparedRequest(family=chosen, body=body, known_model=True)


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
