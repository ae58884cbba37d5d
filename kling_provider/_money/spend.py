"""What one generation cost, read from the API's answer, and how that is said to people.

Pure functions: the cost headers merged into a fetch body (:func:`with_cost_headers`), the DAG
run's running total (:func:`run_total`), and the one-line summary the task log shows when a
generation finishes (:func:`spend_summary`). The spend field names are
:data:`kling_provider._task.result.SPEND_FIELDS`.

Where the money comes from: a finished generation's body carries ``meta.usage.credits_used``
(legacy: ``tokens_used``) and, on newer models, ``meta.usage.usd_spent``; every non-streaming
JSON answer also carries ``x-aimlapi-credits-used`` / ``x-aimlapi-usd-spent``. The body describes
the whole generation, so it wins; the headers fill what it leaves out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from kling_provider.types import finite_number

__all__ = [
    "CREDITS_HEADER",
    "USD_HEADER",
    "exact_amount",
    "format_duration",
    "format_usd",
    "run_total",
    "spend_summary",
    "with_cost_headers",
]

CREDITS_HEADER = "x-aimlapi-credits-used"
USD_HEADER = "x-aimlapi-usd-spent"



def _number(value: Any) -> float | None:
    number = finite_number(value)
    return number if number is not None and number >= 0 else None  # negatives: unreadable


def with_cost_headers(body: dict[str, Any], headers: Mapping[str, str]) -> dict[str, Any]:
    """``body`` with ``meta.usage`` completed from the cost headers (the body's values win)."""
    from_headers = {"credits_used": _number(headers.get(CREDITS_HEADER)),
                    "usd_spent": _number(headers.get(USD_HEADER))}
    from_headers = {k: v for k, v in from_headers.items() if v is not None}
    if not from_headers:
        return body
    meta = body.get("meta")
    meta = meta if isinstance(meta, dict) else {}
    usage = meta.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    if "tokens_used" in usage:  # the legacy spelling of credits_used
        from_headers.pop("credits_used", None)
    merged_usage = {**from_headers, **{k: v for k, v in usage.items() if v is not None}}
    return {**body, "meta": {**meta, "usage": merged_usage}}


def exact_amount(value: Any) -> Decimal | None:
    """A reported amount as the decimal it was written as (``1.4`` is ``Decimal("1.4")``, not
    the binary float's expansion), so sums are exact; ``None`` for anything but a finite number
    (booleans and numeric text included). The videos page sums with this too."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        return None
    exact = Decimal(str(value))
    return exact if exact.is_finite() else None


def run_total(results: Iterable[Any], generation_id: str, usd_spent: Any
              ) -> tuple[Decimal | None, int]:
    """USD spent by a DAG run so far and on how many generations: the other generate tasks'
    return values (``results``, each counted once by generation id) plus this generation."""
    seen = {generation_id}
    total, count = exact_amount(usd_spent), 1
    for result in results:
        other = result.get("generation_id") if isinstance(result, Mapping) else None
        if not isinstance(other, str) or other in seen:
            continue
        seen.add(other)
        count += 1
        usd = exact_amount(result.get("usd_spent"))
        if usd is not None:
            total = (total or Decimal(0)) + usd
    return total, count


def format_usd(usd: float | Decimal | None) -> str:
    """``$1.40``; sub-cent amounts keep their significant digits (``$0.00124``)."""
    usd = finite_number(str(usd) if isinstance(usd, Decimal) else usd)
    if usd is None:
        return "unknown USD"
    if usd == 0 or usd >= 0.01:
        return f"${usd:,.2f}"
    return f"${usd:.6f}".rstrip("0")


def format_duration(seconds: float | None) -> str:
    """``5 min 12 s`` / ``42 s``."""
    seconds = finite_number(seconds)
    if seconds is None:
        return "an unknown time"
    whole = round(seconds)
    minutes, rest = divmod(whole, 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def spend_summary(generation_id: str, *, credits_used: float | None, usd_spent: float | None,
                  generation_seconds: float | None, estimated_usd: float | None = None,
                  run_so_far: tuple[Decimal | None, int] | None = None) -> str:
    """The sentence the task log shows when a generation finishes; ``run_so_far`` is
    :func:`run_total`'s answer (the DAG run's running total, this generation included)."""
    credits_used = finite_number(credits_used)
    credits = "unknown credits" if credits_used is None else f"{credits_used:,.0f} credits"
    text = (f"Generation {generation_id} finished in {format_duration(generation_seconds)}: "
            f"{credits}, {format_usd(usd_spent)}")
    if finite_number(estimated_usd) is not None:
        text += f" (estimated before submitting: {format_usd(estimated_usd)})"
    if run_so_far is not None:
        usd, count = run_so_far
        text += (f". This DAG run so far: {format_usd(usd)} for {count} "
                 f"generation{'s' if count != 1 else ''}")
    return text + "."
