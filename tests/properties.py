"""What a user may write for a request field, and what the provider must then do with it.

Shared by the property tests (``tests/test_properties_*.py``): strategies drawing a field's value
as users write them (valid values, rendered-template text, NaN and infinities, huge and negative
numbers, empty and unicode strings, ``None``, wrong types), and :func:`classify`, an oracle
written from the published JSON schema alone (not from the provider's validator): a value is
``VALID`` (the run must go through and send exactly ``sent``), ``INVALID`` (it must be refused
before any request, naming the field) or ``EITHER`` (a rendered form the provider may coerce or
refuse; if it coerces, the body must hold ``sent``).
"""

from __future__ import annotations

import ast
import json
import math
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from hypothesis import strategies as st

from kling_provider.catalogue import get_model

VALID, EITHER, INVALID = "valid", "either", "invalid"
#: The verdict's "sent" for a field that must not be in the body.
ABSENT = object()

#: Text a rendered template gives for numbers, booleans and nothing, and text users paste.
RENDERED = ("5", "10", "7", "5.0", "10.0", " 5 ", "5\n", "0", "1", "0.5", ".5", "1.", "0.0",
            "-0", "-5", "-1e-9", "1e-400", "1e400", "-1e400", "nan", "NaN", "-nan", "inf",
            "-inf", "Infinity", "1_0", "0x5", "\u0665", "\u0661\u0660", "True", "False", "true",
            "false", "None", "null", "", "   ", "\t", "[]", "{}", "16:9", " 16:9 ", "1:1\n",
            "\U0001f99d raccoon", "\x00", "caf\u00e9", "\ud83d", "std", "pro", "image",
            "https://img.example.com/a.png", "not a url")
#: Python values users pass or native rendering produces.
NATIVE: tuple[Any, ...] = (None, math.nan, -math.nan, math.inf, -math.inf, 0, 1, 5, 10, -5, 7, 5.0, 10.0, 5.5,
          0.5, 1.0000001, -0.0, 1e308, -1e308, 5e-324, 10**30, -(10**30), 10**400, True, False,
          [], {}, ["https://img.example.com/a.png"], b"5")

_ASCII_INT = re.compile(r"[+-]?[0-9]{1,30}")
_ASCII_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


@dataclass(frozen=True)
class Verdict:
    kind: str
    #: What the create body must hold for the field if the value is accepted (ABSENT: nothing).
    sent: Any = ABSENT
    #: Accepted either as ``sent`` or left out of the body (a blank optional value).
    may_drop: bool = False

    def weaker(self) -> Verdict:
        """The same value reached in a form the provider may also refuse."""
        return Verdict(EITHER, self.sent, self.may_drop) if self.kind == VALID else self


def field_schema(prop: Mapping[str, Any]) -> Mapping[str, Any]:
    """The form of a property the tests write: the string option of an ``anyOf``."""
    if "anyOf" in prop:
        return next(o for o in prop["anyOf"] if o.get("type") == "string")
    return prop


def testable(prop: Mapping[str, Any]) -> bool:
    """Scalars, enums and arrays of strings: what users write by hand or template."""
    kind = field_schema(prop).get("type")
    if kind == "array":
        return bool(field_schema(prop).get("items", {}).get("type") == "string")
    return kind in ("string", "integer", "number", "boolean")


def _number(text: str) -> float | None:
    try:
        return float(text)
    except (ValueError, OverflowError):
        return None


def _allowed(x: float, prop: Mapping[str, Any]) -> bool:
    low, high = prop.get("minimum"), prop.get("maximum")
    finite = isinstance(x, int) or math.isfinite(x)  # a 400-digit int has no float form
    return (finite and (low is None or x >= low) and (high is None or x <= high)
            and ("enum" not in prop or x in prop["enum"]))


def _url(text: str) -> bool:
    parsed = urlparse(text)
    return parsed.scheme in ("http", "https") and bool(parsed.netloc) and text == text.strip()


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def classify(value: Any, prop: Mapping[str, Any], *, required: bool) -> Verdict:
    """The verdict on ``value`` for a property of a model's published schema."""
    if value is None:
        return Verdict(INVALID) if required else Verdict(VALID)
    schema = field_schema(prop)
    kind = schema.get("type")
    if isinstance(value, bool) and kind != "boolean":
        return Verdict(INVALID)
    if kind == "integer":
        return _integer(value, schema)
    if kind == "number":
        return _real(value, schema)
    if kind == "boolean":
        return _boolean(value)
    if kind == "array":
        return _array(value, schema, required)
    if "enum" in schema:
        if isinstance(value, str) and value in schema["enum"]:
            return Verdict(VALID, value)
        if isinstance(value, str) and value.strip() in schema["enum"]:
            return Verdict(EITHER, value.strip())
        return Verdict(INVALID)
    return _text(value, schema, required)


def _integer(value: Any, schema: Mapping[str, Any]) -> Verdict:
    if isinstance(value, int):
        return Verdict(VALID, value) if _allowed(value, schema) else Verdict(INVALID)
    if isinstance(value, float):
        ok = math.isfinite(value) and value.is_integer() and _allowed(int(value), schema)
        return Verdict(EITHER, int(value)) if ok else Verdict(INVALID)
    if isinstance(value, str):
        if _ASCII_INT.fullmatch(value):
            number = int(value)
            return Verdict(VALID, number) if _allowed(number, schema) else Verdict(INVALID)
        parsed = _number(value.strip())
        if parsed is not None and math.isfinite(parsed) and parsed.is_integer() \
                and _allowed(int(parsed), schema):
            return Verdict(EITHER, int(parsed))
    return Verdict(INVALID)


def _real(value: Any, schema: Mapping[str, Any]) -> Verdict:
    if isinstance(value, (int, float)):
        return Verdict(VALID, value) if _allowed(value, schema) else Verdict(INVALID)
    if isinstance(value, str):
        exact = bool(_ASCII_DECIMAL.fullmatch(value))
        parsed = _number(value if exact else value.strip())
        if parsed is not None and _allowed(parsed, schema):
            return Verdict(VALID if exact else EITHER, parsed)
    return Verdict(INVALID)


def _boolean(value: Any) -> Verdict:
    if isinstance(value, bool):
        return Verdict(VALID, value)
    if isinstance(value, int) and value in (0, 1):
        return Verdict(EITHER, bool(value))
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ("true", "1", "yes"):
            return Verdict(EITHER, True)
        if word in ("false", "0", "no"):
            return Verdict(EITHER, False)
    return Verdict(INVALID)


def _array(value: Any, schema: Mapping[str, Any], required: bool) -> Verdict:
    if isinstance(value, str):  # a list rendered as text: JSON or Python's repr
        for parse in (json.loads, ast.literal_eval):
            try:
                parsed = parse(value)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                continue
            if isinstance(parsed, list):
                return _array(parsed, schema, required).weaker()
        return Verdict(INVALID)
    if not isinstance(value, (list, tuple)):
        return Verdict(INVALID)
    items = list(value)
    if not items:
        return Verdict(INVALID) if required else Verdict(EITHER, items, may_drop=True)
    low, high = schema.get("minItems", 0), schema.get("maxItems", len(items))
    if not low <= len(items) <= high:
        return Verdict(INVALID)
    if not all(isinstance(i, str) and i.strip() and _utf8(i) for i in items):
        return Verdict(INVALID)
    return Verdict(VALID if all(map(_url, items)) else EITHER, items)


def _text(value: Any, schema: Mapping[str, Any], required: bool) -> Verdict:
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return Verdict(EITHER, str(value))  # a number where text goes: coerced, or refused
    if not isinstance(value, str):
        return Verdict(INVALID)
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        return Verdict(INVALID)
    if not value.strip():
        return Verdict(INVALID) if required else Verdict(EITHER, value, may_drop=True)
    if not _utf8(value) or (schema.get("format") == "uri" and not _url(value)):
        return Verdict(EITHER, value)
    return Verdict(VALID, value)


# -- strategies -------------------------------------------------------------------------------

_URLS = st.builds("https://img.example.com/{}.png".format,
                  st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=8))
_PROMPTS = st.text(min_size=1, max_size=40).filter(lambda s: s.strip() != "")


def valid_value(prop: Mapping[str, Any]) -> st.SearchStrategy[Any]:
    """A value the schema accepts, as a user would write it in Python."""
    schema = field_schema(prop)
    kind = schema.get("type")
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if kind == "integer":
        return st.integers(schema.get("minimum", -100), schema.get("maximum", 100))
    if kind == "number":
        low, high = schema.get("minimum", -100.0), schema.get("maximum", 100.0)
        return st.floats(low, high) | st.sampled_from([low, high])
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        low = schema.get("minItems", 1)
        return st.lists(_URLS, min_size=max(low, 1), max_size=min(schema.get("maxItems", 3), 4))
    return _URLS if schema.get("format") == "uri" else _PROMPTS


#: Values that are not finite numbers, or become one when read as a number.
NON_FINITE = (math.nan, -math.nan, math.inf, -math.inf, "nan", "NaN", "-nan", "inf", "-inf",
              "Infinity", "1e400", "-1e400", " nan ", "1" * 400)


def numeric(prop: Mapping[str, Any]) -> bool:
    return field_schema(prop).get("type") in ("integer", "number")


def hostile_value(prop: Mapping[str, Any]) -> st.SearchStrategy[Any]:
    """Anything a user might write except non-finite numbers: valid values, rendered text,
    huge and negative numbers, empty and unicode strings, ``None``, wrong types."""
    def finite(value: Any) -> bool:
        if isinstance(value, float):
            return math.isfinite(value)
        number = _number(value.strip()) if isinstance(value, str) else None
        return number is None or math.isfinite(number)

    return st.one_of(
        valid_value(prop),
        valid_value(prop).map(str),
        st.sampled_from([v for v in RENDERED if finite(v)]),
        st.sampled_from([v for v in NATIVE if finite(v)]),
        st.text(max_size=12).filter(finite),
        st.integers(-(10**20), 10**20),
        st.floats(allow_nan=False, allow_infinity=False),
    )


def non_finite_value(prop: Mapping[str, Any]) -> st.SearchStrategy[Any]:
    """NaN, infinities and numbers too large for a float, as values or rendered text."""
    return st.sampled_from(NON_FINITE)


def model_fields(model: str, family: str) -> tuple[str, dict[str, Any], set[str]]:
    """The family a model's request goes to, its testable properties and the fields it needs."""
    spec = get_model(model)
    assert spec is not None
    chosen = family if family in spec.schemas else spec.families[0]
    schema = spec.schemas[chosen]
    props = {k: v for k, v in schema.get("properties", {}).items() if testable(v)}
    needed = set(spec.required(chosen))
    for group in schema.get("x-one-of-required", ()):
        needed |= {name for name in group if name in props}  # the tests send the first form
    props.pop("multi_prompt", None)  # the alternative to ``prompt``, exclusive with it
    needed.discard("multi_prompt")
    return chosen, props, needed
