"""The hook's money side: the price estimate, the balance, the guard before paying, and what the
key spent (``GET /v2/usage``, per day and model ``/v2/usage/detail``).

A mixin of :class:`~kling_provider.hooks.kling.KlingHook` (methods users call as the hook's):
each runs the steps :mod:`kling_provider._runtime.calls` builds, like the rest of the hook.
Amounts the service billed are exact ``Decimal``s.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from kling_provider._api.service import UsageGroup
from kling_provider._money import guard as _guard
from kling_provider._money import pricing as _pricing
from kling_provider._money.spend import format_usd
from kling_provider.hooks._base import KlingConnectionHook


class SpendingHook(KlingConnectionHook):
    """Spend methods of a Kling connection (see :class:`~kling_provider.hooks.kling.KlingHook`)."""

    def estimate_price(self, model: str, body: Mapping[str, Any]) -> _pricing.PriceEstimate:
        """Estimate one generation's price for a create ``body`` (as sent) from the live model
        list; never raises for an unknown price (``usd`` is ``None`` then, with the reason in
        ``basis``)."""
        estimate: _pricing.PriceEstimate = self._run(
            self._calls_for(self.settings).estimate(model, body))
        return estimate

    def get_balance(self) -> float:
        """The account's balance in USD (``GET /v2/billing``)."""
        return float(self._run(self._calls_for(self.settings).balance()))

    def guard_spend(self, model: str, body: Mapping[str, Any], *,
                    max_cost_usd: float | None = None,
                    check_balance: bool = False) -> _pricing.PriceEstimate:
        """Estimate and log the price, then fail before any paid request when it exceeds
        ``max_cost_usd`` or (``check_balance``) the account balance. Unknown price: warn only."""
        estimate = self.estimate_price(model, body)
        if estimate.usd is None:
            self.log.warning(estimate.describe())
        else:
            self.log.info(estimate.describe())
        _guard.check_max_cost(estimate, max_cost_usd)
        if check_balance:
            balance = self.get_balance()
            self.log.info("Account balance: %s.", format_usd(balance))
            _guard.check_balance(balance, estimate, conn_id=self.settings.conn_id)
        return estimate

    def get_key_spend(self, window: str) -> Decimal:
        """What the connection's key spent in the rolling ``window`` (``24h``, ``7d``, ``30d``),
        as the service billed it (``GET /v2/usage``): finished generations only."""
        spent: Decimal = self._run(self._calls_for(self.settings).usage(window))
        return spent

    def get_usage_detail(self, start: str, end: str) -> tuple[Decimal, list[UsageGroup]]:
        """What the service billed the key from ``start`` to ``end`` (ISO-8601) in total and per
        UTC day and model (``GET /v2/usage/detail?group_by=day,model``)."""
        detail: tuple[Decimal, list[UsageGroup]] = self._run(
            self._calls_for(self.settings).usage_detail(start, end))
        return detail
