"""The simulator's money side, as the AI/ML API publishes it.

- ``GET /v1/models`` (also ``/models`` and ``/api/v1/models``), no key: the model list; with
  ``?include=pricing`` (or ``all`` / ``details=true``) each model carries its ``pricing`` block;
  ``?id=`` filters on ids and aliases. Answers carry an ``ETag``; ``If-None-Match`` with it gets
  ``304`` and no body. ``GET /model/{id}`` returns one model or 404.
- ``GET /v2/billing`` (key required): ``{"current_balance": <USD>, "currency": "USD"}``.
- Prices: ``price_list.json`` beside this module, placeholders in the published shape (the
  reference publishes no Kling prices); tests edit ``sim.price_list`` to change them.
- Cost: a generation is priced from the same list by :func:`price_of` (the simulator's own
  reading of the ``pricing`` blocks, applied to the request as the service runs it: schema
  defaults filled in by ``_contract``; never the provider's estimate) when it is created and
  charged to the balance once it completes; the completed answer reports it in
  ``meta.usage`` and in ``x-aimlapi-credits-used`` / ``x-aimlapi-usd-spent`` (``0`` before).
  A create with the balance at or below zero is refused with the documented 403.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

from kling_provider import _endpoints
from kling_provider._money.spend import CREDITS_HEADER, USD_HEADER
from kling_provider.testing._contract import duration_of

__all__ = ["BILLING_PATH", "CREDITS_PER_USD", "MODEL_LIST_PATHS", "NO_CREDITS_MESSAGE",
           "cost_headers", "is_account_path", "model_list_answer", "price_of",
           "simulator_price_list"]

#: The model list's path and the aliases the real API also answers on.
MODEL_LIST_PATHS = frozenset({_endpoints.path("models"), "/models", "/api/v1/models"})
BILLING_PATH = _endpoints.path("billing")


@cache
def simulator_price_list() -> dict[str, Any]:
    """The model list with placeholder prices the simulator serves (``price_list.json``)."""
    text = resources.files(__package__).joinpath("price_list.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data
#: As in the published examples: 120000 credits = $0.06, 2480 credits = $0.00124.
CREDITS_PER_USD = 2_000_000
#: What the simulator charges when the list cannot price a request (``variable`` models).
UNPRICED_USD = 0.5
NO_CREDITS_MESSAGE = ("You've run out of credits. Please top up your balance or update your "
                      "payment method to continue: https://aimlapi.com/app/billing/")


def is_account_path(path: str) -> bool:
    return path in MODEL_LIST_PATHS or path == BILLING_PATH or path.startswith("/model/")


def _etag(body: bytes) -> str:
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()[:27]
    return f'W/"{len(body):x}-{digest}"'


def _project(entry: Mapping[str, Any], sections: set[str]) -> dict[str, Any]:
    keep = {"id", "aliases", "type", "info", "tags"} | sections
    return {k: v for k, v in entry.items() if k in keep}


def model_list_answer(price_list: Mapping[str, Any], path: str, query: str,
                      if_none_match: str | None) -> tuple[int, bytes, dict[str, str]]:
    """(status, body, headers) of a model-list or single-model request."""
    params = parse_qs(query)
    wanted = {v.strip().lower() for raw in params.get("include", []) for v in raw.split(",")}
    if {"all"} & wanted or params.get("details", [""])[0] in ("true", "1"):
        wanted |= {"pricing", "modalities", "capabilities"}
    sections = wanted & {"pricing", "modalities", "capabilities"}
    entries = [e for e in price_list.get("data", []) if isinstance(e, Mapping)]
    ids = {v.strip().lower() for raw in params.get("id", []) for v in raw.split(",") if v.strip()}
    if path.startswith("/model/"):
        ids = {path[len("/model/"):].lower()}
    if ids:
        entries = [e for e in entries
                   if {str(n).lower() for n in [e.get("id"), *(e.get("aliases") or [])]} & ids]
    payload: dict[str, Any]
    if path.startswith("/model/"):
        if not entries:
            return 404, json.dumps({"message": f"Model {path[7:]!r} not found",
                                    "statusCode": 404}).encode(), {}
        payload = {"object": "model", "data": _project(entries[0], sections)}
    else:
        payload = {"object": "list", "data": [_project(e, sections) for e in entries]}
    body = json.dumps(payload).encode()
    etag = _etag(body)
    if if_none_match and etag in [t.strip() for t in if_none_match.split(",")]:
        return 304, b"", {"ETag": etag}
    return 200, body, {"ETag": etag}


#: Seconds of video each rate unit stands for (``None``: one unit per generation).
_UNIT_SECONDS: dict[str, float | None] = {"second": 1.0, "minute": 60.0, "video": None,
                                          "generation": None, "request": None}


def _same(value: Any, wanted: Any) -> bool:
    """A request value against a variant's ``when``: ``5``, ``5.0`` and ``"5"`` are one value."""
    def canon(v: Any) -> str:
        if isinstance(v, bool):
            return str(v).lower()
        try:
            return repr(float(v))
        except (TypeError, ValueError):
            return str(v).strip().lower()
    return canon(value) == canon(wanted)


def price_of(price_list: Mapping[str, Any], model: str, request: Mapping[str, Any]) -> float:
    """What the simulator charges for one generation of ``model`` run as ``request``.

    ``fixed``: the sum of its units; ``variants``: the variant whose ``when`` the request
    meets in the most dimensions; ``variable``, an unlisted model or an unknown unit:
    :data:`UNPRICED_USD`. A unit's price is per ``per`` of it, and per second or minute of video.
    """
    entry = next((e for e in price_list.get("data", [])
                  if model in (e.get("id"), *(e.get("aliases") or []))), None)
    pricing = (entry or {}).get("pricing") or {}
    seconds = float(duration_of(request))
    request = {**request, "duration": seconds}  # what runs when the body names no duration
    if pricing.get("kind") == "fixed":
        rates = list(pricing.get("units") or [])
    elif pricing.get("kind") == "variants":
        met = [v for v in pricing.get("variants") or []
               if all(_same(request.get(k), w) for k, w in (v.get("when") or {}).items())]
        rates = sorted(met, key=lambda v: len(v.get("when") or {}))[-1:]
    else:
        rates = []
    total = 0.0
    for rate in rates:
        unit = str(rate.get("unit") or rate.get("name") or "").rstrip("s")
        if unit not in _UNIT_SECONDS:
            return UNPRICED_USD
        per_unit = _UNIT_SECONDS[unit]
        quantity = 1.0 if per_unit is None else seconds / per_unit
        total += float(rate["price"]) / float(rate.get("per") or 1) * quantity
    return round(total, 6) if rates else UNPRICED_USD


def cost_headers(usd: float) -> dict[str, str]:
    return {CREDITS_HEADER: str(round(usd * CREDITS_PER_USD)), USD_HEADER: f"{usd:.9f}"}
