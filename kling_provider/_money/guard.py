"""The guard before paying: spend limit and balance rules, as pure functions.

The generate operators call the hook's ``guard_spend`` once, right before the create POST; it
estimates the price (:mod:`kling_provider._money.pricing`), then applies these rules:

- ``max_cost_usd``: an estimate above the limit fails the task before any paid request. An
  unknown price never blocks (the caller logs a warning instead).
- ``check_balance``: ``GET /v2/billing`` first (:func:`kling_provider._api.service.balance_steps`);
  a balance below the estimate (or at zero when the price is unknown) fails fast, instead of a
  403 halfway through a mapped run.
"""

from __future__ import annotations

# Defined with the parse-time checks (a DAG file parse needs it, not this module).
from kling_provider._checks import validate_max_cost
from kling_provider._money.pricing import PriceEstimate
from kling_provider._money.spend import format_usd
from kling_provider.exceptions import KlingCostLimitError, KlingInsufficientBalanceError

__all__ = ["check_balance", "check_max_cost", "validate_max_cost"]


def check_max_cost(estimate: PriceEstimate, max_cost_usd: float | None) -> None:
    """Raise :class:`KlingCostLimitError` when the estimate is known and above the limit."""
    if max_cost_usd is None or estimate.usd is None or estimate.usd <= max_cost_usd:
        return
    duration = "" if estimate.duration is None else f" of {estimate.duration:g} s"
    raise KlingCostLimitError(
        f"Not submitting: the estimated price of this {estimate.model} generation{duration} is "
        f"{format_usd(estimate.usd)} ({estimate.basis}; {estimate.source}), above the limit "
        f"max_cost_usd={max_cost_usd:g}. Raise max_cost_usd or choose a shorter or cheaper "
        "generation. Nothing was sent to the API.")


def check_balance(balance_usd: float, estimate: PriceEstimate, *, conn_id: str) -> None:
    """Raise :class:`KlingInsufficientBalanceError` when the balance cannot pay the estimate."""
    if balance_usd > 0 and (estimate.usd is None or balance_usd >= estimate.usd):
        return
    price = (f"the estimated price {format_usd(estimate.usd)}" if estimate.usd is not None
             else "any generation (price unknown)")
    raise KlingInsufficientBalanceError(
        f"Not submitting: the balance of the account behind connection {conn_id!r} is "
        f"{format_usd(balance_usd)}, not enough for {price} of this {estimate.model} "
        "generation. Top up at https://aimlapi.com/app/billing/ and clear this task. Nothing was "
        "sent to the API.")
