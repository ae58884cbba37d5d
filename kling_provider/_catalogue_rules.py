"""The catalogue's validation rules: a value against its field's schema, and the request-wide rules.

Used by :func:`kling_provider.catalogue.prepare_request` (the only caller; the operators reach
these rules through it when a DAG is parsed and again before the POST, the simulator to answer
its 400s). Split from the public module so that it keeps the catalogue's surface and this one
the JSON-Schema subset the catalogue uses, with the rules a published schema cannot express (an
empty prompt, at least one of / at most one of). Every refusal names the parameter, the value
and what is allowed, before anything is paid.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from kling_provider.exceptions import KlingValidationError

__all__ = ["allowed_in_words", "check_groups", "check_prompt", "check_value", "coerce", "is_blank"]

#: What a ``format: uri`` field takes: an absolute URI (RFC 3986: a scheme, then no blanks).
_ABSOLUTE_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s<>\"{}|\\^`]+")


def check_prompt(given: Mapping[str, Any], where: str) -> None:
    """An empty prompt is refused: the API's own rule, though its published schema allows one."""
    prompt = given.get("prompt")
    if isinstance(prompt, str) and not prompt.strip():
        raise KlingValidationError(
            f"Invalid parameter 'prompt'={prompt!r} for {where}: empty; the API refuses an empty "
            "prompt. Give the text to generate from, or leave prompt out (None) where the model "
            "does not need one.")


def is_blank(value: Any) -> bool:
    """Whether a value counts as not given: blank text or an empty list or object (a required
    field given so is as missing to the API)."""
    return (isinstance(value, str) and not value.strip()) or (
        isinstance(value, (list, tuple, dict)) and not value)


def check_groups(schema: Mapping[str, Any], present: set[str], where: str, kind: str) -> None:
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


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list, tuple),
}


def check_value(value: Any, schema: Mapping[str, Any], name: str, where: str) -> Any:
    """Check ``value`` against the JSON-Schema subset the catalogue uses; return it normalised."""
    if value is None and schema.get("nullable"):
        return None
    if "anyOf" in schema:
        problems = []
        for option in schema["anyOf"]:
            try:
                return check_value(value, option, name, where)
            except KlingValidationError as exc:
                problems.append(str(exc))
        raise KlingValidationError(problems[0] if len(problems) == 1 else
                                   f"Invalid parameter {name!r}={value!r} for {where}: matches no "
                                   f"allowed form ({'; '.join(problems)}).")
    kind = schema.get("type")
    given = value
    value = coerce(value, kind)
    allowed = allowed_in_words(schema)
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
            value = [check_value(v, schema["items"], f"{name}[{i}]", where) for i, v in enumerate(value)]
    if kind == "object" and "properties" in schema:
        props = schema["properties"]
        for required in schema.get("required", ()):
            if required not in value:
                raise KlingValidationError(
                    f"Missing parameter '{name}.{required}' for {where}: it is required."
                )
        value = {
            k: (check_value(v, props[k], f"{name}.{k}", where) if k in props else v)
            for k, v in value.items()
        }
    return value


def allowed_in_words(schema: Mapping[str, Any]) -> str:
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


def coerce(value: Any, kind: Any) -> Any:
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
