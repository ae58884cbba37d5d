"""The simulator's reading of the published contract: which create bodies the API accepts.

Used by :class:`~kling_provider.testing.simulator.KlingSimulator` to answer a create POST. The
rules are the published OpenAPI documents themselves (``published_specs.json``, derived by
``tools/extract_specs.py``), checked with ``jsonschema``: never the provider's own catalogue or
its stricter rules (an empty ``prompt`` the schema allows is accepted here; the provider refuses
it before paying). A model described by several documents on one endpoint is accepted when any
of them accepts the body, as the service serves every page it publishes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

__all__ = ["ContractError", "accepted", "create_schemas", "duration_of", "specs", "warm"]

#: A duration the service assumes when neither the body nor the schema gives one.
DEFAULT_DURATION = 5
#: An absolute URI (RFC 3986): a scheme, a colon, then no whitespace or characters it excludes.
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s<>\"{}|\\^`]*")


class ContractError(ValueError):
    """A body the published schema refuses; the message is the API's 400 message."""


@cache
def specs() -> dict[str, dict[str, Any]]:
    """Every published Kling OpenAPI document, by ``<family>/<page>``."""
    text = resources.files(__package__).joinpath("published_specs.json").read_text("utf-8")
    loaded: dict[str, dict[str, Any]] = json.loads(text)["specs"]
    return loaded


def _openapi_to_json_schema(node: Any) -> Any:
    """OpenAPI 3.0's ``nullable`` in JSON Schema terms (the only keyword jsonschema lacks)."""
    if isinstance(node, list):
        return [_openapi_to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: _openapi_to_json_schema(value) for key, value in node.items()
                 if key != "nullable"}
    if node.get("nullable") is True:
        return {"anyOf": [converted, {"type": "null"}]}
    return converted


@cache
def create_schemas(family: str) -> dict[str, list[dict[str, Any]]]:
    """The create request schemas of ``family``, per model (one per page naming it)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for name, doc in specs().items():
        if not name.startswith(family + "/"):
            continue
        for operations in doc.get("paths", {}).values():
            body = operations.get("post", {}).get("requestBody")
            if not body:
                continue
            schema = _openapi_to_json_schema(body["content"]["application/json"]["schema"])
            for model in schema.get("properties", {}).get("model", {}).get("enum", []):
                found.setdefault(model, []).append(schema)
    return found


def warm() -> None:
    """Load the documents and the validator library ahead of the first create."""
    import jsonschema  # noqa: F401  # Airflow's own dependency

    for family in ("legacy", "unified"):
        create_schemas(family)


@cache
def _format_checker() -> Any:
    import jsonschema  # Airflow's own dependency; imported when a create is first checked

    checker = jsonschema.FormatChecker()

    def is_uri(value: object) -> bool:
        return not isinstance(value, str) or bool(_URI.fullmatch(value))

    # jsonschema checks ``uri`` only with an optional package; the API refuses non-URLs itself.
    checker.checks("uri")(is_uri)
    return checker


def _validator(schema: Mapping[str, Any]) -> Any:
    # jsonschema: only when a contract is checked
    import jsonschema

    return jsonschema.Draft4Validator(schema, format_checker=_format_checker())


def accepted(family: str, body: Any, *, allow_unknown_model: bool = False) -> dict[str, Any]:
    """``body`` as the service runs it (schema defaults filled in), or :class:`ContractError`."""
    if not isinstance(body, dict):
        raise ContractError("Body validation error\nExpected object, received "
                            f"{type(body).__name__}")
    schemas = create_schemas(family)
    model = body.get("model")
    if not isinstance(model, str) or model not in schemas:
        if allow_unknown_model and isinstance(model, str):
            return dict(body)
        expected = " | ".join(f"'{m}'" for m in sorted(schemas))
        raise ContractError(f"Body validation error\nInvalid enum value for 'model'. Expected "
                            f"{expected}, received {model!r}")
    problems = []
    for schema in schemas[model]:
        errors = sorted(_validator(schema).iter_errors(body), key=lambda e: list(e.path))
        if not errors:
            return _with_defaults(schema, body)
        where = ".".join(str(p) for p in errors[0].path) or "body"
        problems.append(f"'{where}': {errors[0].message}")
    raise ContractError("Body validation error\n" + problems[0])


def _with_defaults(schema: Mapping[str, Any], body: Mapping[str, Any]) -> dict[str, Any]:
    request = dict(body)
    for name, prop in schema.get("properties", {}).items():
        if name not in request and isinstance(prop, Mapping) and "default" in prop:
            request[name] = prop["default"]
    return request


def duration_of(request: Mapping[str, Any]) -> int:
    """The video's seconds (schemas write ``5`` or ``"5"``; a missing one is 5)."""
    try:
        return int(float(request.get("duration", DEFAULT_DURATION)))
    except (TypeError, ValueError):
        return DEFAULT_DURATION
