"""Price estimates before paying: the model list's ``pricing`` block applied to a request.

Pure: no I/O. :func:`estimate_price` reads a model's ``pricing`` (``kind`` first: ``fixed`` one rate
per unit, ``variants`` one rate per parameter combination, ``variable`` not quotable ahead), matches
it against the request *as it will be sent* (:func:`request_as_sent`: the catalogue schema's
defaults filled in for fields the task leaves out, e.g. ``generate_audio=true`` on v2.6/v3) and
always reads ``price`` together with ``per``. An unknown price is an estimate with ``usd=None``
and a reason: callers warn and go on, never block on it.

The live list is fetched by :func:`kling_provider._api.service.price_list_steps`
(``GET /v1/models?include=pricing&id=<model>``) and kept per process with its ETag
(:class:`PriceListCache`), so a second estimate costs one ``304``. No prices ship in the package
(the API's reference publishes none for Kling): when the live list cannot be read, the price is
unknown, and an unknown price warns but never blocks.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kling_provider._money.spend import format_usd
from kling_provider.catalogue import get_model
from kling_provider.types import finite_number

__all__ = [
    "ASSUMED_DURATION",
    "PriceEstimate",
    "PriceListCache",
    "estimate_price",
    "find_pricing",
    "request_as_sent",
]

#: Seconds of video assumed when a request sends no ``duration`` and no schema gives a default:
#: every Kling model that takes a duration accepts 5 (the shortest common value).
ASSUMED_DURATION = 5
_PER_SECOND = frozenset({"second", "seconds", "sec", "s"})
_PER_MINUTE = frozenset({"minute", "minutes", "min"})
_PER_ITEM = frozenset({"video", "videos", "generation", "generations", "request", "requests",
                       "item", "call"})


@dataclass(frozen=True)
class PriceEstimate:
    """What one generation is expected to cost; ``usd`` is ``None`` when it cannot be known."""

    model: str
    usd: float | None
    #: Seconds of video the estimate assumes (``None``: no duration applies).
    duration: float | None
    #: How the figure was reached (``$0.14 per 1 second x 5 s, generate_audio=true``) or, for an
    #: unknown price, why not.
    basis: str
    #: Where the prices came from (``live price list``), or why no list could be used.
    source: str

    def describe(self) -> str:
        """The sentence the task log shows before the POST."""
        if self.usd is None:
            return (f"Price of this {self.model} generation unknown ({self.basis}; "
                    f"{self.source}): submitting without a price check.")
        return (f"Estimated price of this {self.model} generation: {format_usd(self.usd)} "
                f"({self.basis}; {self.source}).")


def request_as_sent(model: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """``body`` plus the schema defaults of fields it leaves out, typed as the schema says.

    Defaults come from any endpoint family's schema of the model: the legacy schemas often omit a
    default the unified schema documents for the same model and service.
    """
    request = {k: v for k, v in body.items() if v is not None}
    spec = get_model(model)
    if spec is None:
        return request
    for family in spec.families:
        for name, schema in spec.schemas[family].get("properties", {}).items():
            if name not in request and isinstance(schema, Mapping) and "default" in schema:
                request[name] = _typed(schema["default"], schema.get("type"))
    return request


def _typed(value: Any, kind: Any) -> Any:
    """A schema default in its declared type (some schemas write ``"default": "5"`` for an int)."""
    try:
        if kind == "integer" and not isinstance(value, bool):
            return int(value)
        if kind == "number" and not isinstance(value, bool):
            return float(value)
        if kind == "boolean" and isinstance(value, str):
            return value.strip().lower() == "true"
    except (TypeError, ValueError):
        pass
    return value


def find_pricing(listing: Mapping[str, Any], model: str) -> Mapping[str, Any] | None:
    """The ``pricing`` block of ``model`` in a model-list answer, matched on id *and* aliases."""
    wanted = model.strip().lower()
    for entry in listing.get("data") or ():
        if not isinstance(entry, Mapping):
            continue
        names = [entry.get("id"), *(entry.get("aliases") or ())]
        if any(isinstance(n, str) and n.lower() == wanted for n in names):
            pricing = entry.get("pricing")
            return pricing if isinstance(pricing, Mapping) else None
    return None


def _norm(value: Any) -> str:
    """Compare request values and ``when`` values loosely: ``5 == "5" == 5.0``, ``True == "true"``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    number = finite_number(value.strip() if isinstance(value, str) else value)
    return f"{number:g}" if number is not None else str(value).strip().lower()


def _rate(rate: Mapping[str, Any], duration: float) -> tuple[float, str] | None:
    """(USD, text) for one rate: ``price`` per ``per`` units; ``None`` for a unit we cannot count."""
    price, per = finite_number(rate.get("price")), finite_number(rate.get("per") or 1)
    if price is None or per is None or per <= 0:
        return None
    unit = str(rate.get("unit") or rate.get("name") or "").strip().lower()
    if unit in _PER_SECOND:
        quantity, counted = duration, f" x {duration:g} s"
    elif unit in _PER_MINUTE:
        quantity, counted = duration / 60, f" x {duration:g} s"
    elif unit in _PER_ITEM:
        quantity, counted = 1.0, ""
    else:
        return None
    return price / per * quantity, f"{_unit_price(price)} per {per:g} {unit}{counted}"


def _unit_price(price: float) -> str:
    """A published rate with every digit: ``$0.147`` a second, not ``$0.15`` (which
    ``format_usd`` gives, rounding a total to the cent), or the basis would not add up."""
    return format_usd(price) if round(price, 2) == price else f"${price:,.6f}".rstrip("0")


def estimate_price(model: str, pricing: Mapping[str, Any] | None, request: Mapping[str, Any],
                   *, source: str) -> PriceEstimate:
    """Estimate one generation of ``model`` for ``request`` (already :func:`request_as_sent`)."""
    raw_duration = request.get("duration")
    duration = finite_number(raw_duration) if raw_duration is not None else None
    duration = float(ASSUMED_DURATION) if duration is None else duration
    assumed = "" if raw_duration is not None else f", duration {ASSUMED_DURATION} s assumed"
    request = {**request, "duration": duration}  # variants may be priced by duration

    def unknown(reason: str) -> PriceEstimate:
        return PriceEstimate(model, None, duration, reason, source)

    if pricing is None:
        return unknown("the model is not in the price list")
    kind = str(pricing.get("kind") or "").lower()
    if kind == "variable":
        return unknown("the price list says this model's price depends on its output "
                       "('variable')")
    if kind == "fixed":
        rates: Sequence[Any] = pricing.get("units") or ()
        qualifier = ""
    elif kind == "variants":
        dimensions = [str(d) for d in pricing.get("dimensions") or ()]
        variant = _match_variant(pricing.get("variants") or (), request)
        if variant is None:
            sent = ", ".join(f"{d}={_norm(request.get(d))}" for d in dimensions) or "no dimensions"
            return unknown(f"no priced variant matches the request ({sent})")
        rates = [variant]
        when = variant.get("when") or {}
        qualifier = ", " + ", ".join(f"{k}={_norm(v)}" for k, v in when.items()) if when else ""
    else:
        return unknown(f"unknown pricing kind {pricing.get('kind')!r}")
    parts = [_rate(r, duration) if isinstance(r, Mapping) else None for r in rates]
    if not parts or any(p is None for p in parts):
        return unknown(f"a rate's unit is not per second or per video ({list(rates)!r})")
    usd = finite_number(sum(p[0] for p in parts if p is not None))
    if usd is None:  # 1e308 per 1e-308 second: no price anyone can pay
        return unknown(f"the price list's rates do not add up to a finite price ({list(rates)!r})")
    basis = " + ".join(p[1] for p in parts if p is not None) + qualifier + assumed
    return PriceEstimate(model, round(usd, 6), duration, basis, source)


def _match_variant(variants: Sequence[Any], request: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The most specific variant whose ``when`` the request satisfies; ties: the dearest."""
    matches = []
    for variant in variants:
        if not isinstance(variant, Mapping):
            continue
        when = variant.get("when") or {}
        if all(k in request and _norm(request[k]) == _norm(v) for k, v in when.items()):
            matches.append(variant)
    if not matches:
        return None
    return max(matches, key=lambda v: (len(v.get("when") or {}),
                                       finite_number(v.get("price")) or 0.0))


@dataclass(frozen=True)
class _Entry:
    etag: str
    listing: Mapping[str, Any]


class PriceListCache:
    """Model-list answers per (API base URL, model), kept with their ETag for ``If-None-Match``."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._lock = threading.Lock()

    def conditional_headers(self, base_url: str, model: str) -> dict[str, str]:
        entry = self._entries.get((base_url, model))
        return {"If-None-Match": entry.etag} if entry else {}

    def cached(self, base_url: str, model: str) -> Mapping[str, Any] | None:
        entry = self._entries.get((base_url, model))
        return entry.listing if entry else None

    def store(self, base_url: str, model: str, etag: str | None,
              listing: Mapping[str, Any]) -> None:
        if etag:
            with self._lock:
                self._entries[(base_url, model)] = _Entry(etag, listing)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


#: The process-wide cache the hook uses.
PRICE_LISTS = PriceListCache()
