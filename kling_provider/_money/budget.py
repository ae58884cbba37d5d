"""A budget across runs: what it is, whose it is, and the rule that refuses a generation.

A budget is ``budget_usd`` per ``budget_period`` (``day``, ``week``, ``month``: the rolling
24 h / 7 d / 30 d window of ``GET /v2/usage``), set in the connection's extra and overridable per
task (:func:`resolve_budget`). Before paying, a task adds three figures (exact ``Decimal``s, so
$0.10 + $0.20 fits a $0.30 budget) and :func:`check_budget` refuses when their sum passes it:

- what the key spent in the window, as the service billed it (``GET /v2/usage``);
- this deployment's generations in flight: the service bills an async video only when it
  completes, so a generation still running is in no bill yet (``kling_provider._task.reservations``
  counts them, this task's own reservation left out);
- this generation's estimated price (``kling_provider._money.pricing``).

Pure: the hook reads the figures, the generate operators call this; like the spend limit and the
balance rules of :mod:`kling_provider._money.guard`.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from kling_provider._checks import (
    BUDGET_PERIODS,
    ON_UNKNOWN_SPEND,
    check_budget_usd,
    check_choice,
)
from kling_provider._money.spend import format_usd
from kling_provider.exceptions import KlingBudgetExceededError

__all__ = ["BUDGET_EXTRAS", "DEFAULT_PERIOD", "Budget", "check_budget", "resolve_budget"]

#: The connection extras (and the task parameters of the same names) a budget is made of.
BUDGET_EXTRAS = ("budget_usd", "budget_period", "on_unknown_spend")

#: The period of a budget that names none.
DEFAULT_PERIOD = "month"
_WINDOW_WORDS = {"day": "24 hours", "week": "7 days", "month": "30 days"}


@dataclass(frozen=True)
class Budget:
    """``usd`` per rolling ``period``; ``source`` says where it was set (for messages)."""

    usd: Decimal
    period: str
    on_unknown_spend: str
    source: str

    @property
    def window(self) -> str:
        """The ``period`` of ``GET /v2/usage`` this budget is read over (``24h``, ``7d``, ``30d``)."""
        return BUDGET_PERIODS[self.period]

    def describe(self) -> str:
        return (f"{format_usd(self.usd)} per {self.period} (the last {_WINDOW_WORDS[self.period]}, "
                f"set {self.source})")


def resolve_budget(task: dict[str, Any], connection: dict[str, Any], *, task_id: str,
                   conn_id: str) -> Budget | None:
    """The budget a task runs under: each of ``budget_usd``, ``budget_period`` and
    ``on_unknown_spend`` from the task when it sets it, else from the connection's extra
    (``None`` values: not set). ``None`` when neither sets ``budget_usd``.

    Validates what it reads (a task's rendered text included), naming the parameter or extra.
    """
    chosen: dict[str, tuple[Any, str]] = {}
    for name in BUDGET_EXTRAS:
        value = task.get(name)
        empty = value is None or (isinstance(value, str) and not value.strip())
        chosen[name] = ((connection.get(name), f"extra of connection {conn_id!r}") if empty
                        else (value, f"parameter of task {task_id!r}"))
    value, where = chosen["budget_usd"]
    usd = check_budget_usd(value, where=where)
    period_value, period_where = chosen["budget_period"]
    period = (DEFAULT_PERIOD if period_value is None or not str(period_value).strip()
              else check_choice(period_value, BUDGET_PERIODS, name="budget_period",
                                where=period_where))
    unknown_value, unknown_where = chosen["on_unknown_spend"]
    on_unknown = ("fail" if unknown_value is None or not str(unknown_value).strip()
                  else check_choice(unknown_value, ON_UNKNOWN_SPEND, name="on_unknown_spend",
                                    where=unknown_where))
    if usd is None:
        return None
    source = (f"on task {task_id!r}" if where.startswith("parameter")
              else f"on connection {conn_id!r}")
    return Budget(usd=usd, period=period, on_unknown_spend=on_unknown, source=source)


def check_budget(budget: Budget, *, spent: Decimal, in_flight: Decimal, in_flight_count: int,
                 estimate: Decimal | None, model: str) -> Decimal:
    """Raise :class:`KlingBudgetExceededError` when spent + in flight + the estimate pass the
    budget; return that sum. An unknown estimate counts as nothing, but a budget already used up
    by spent and in-flight money refuses any generation (each costs something)."""
    total = spent + in_flight + (estimate or Decimal(0))
    if total <= budget.usd and (estimate is not None or spent + in_flight < budget.usd):
        return total
    price = ("price, unknown (counted as $0)" if estimate is None
             else f"estimate {format_usd(estimate)}")
    plural = "" if in_flight_count == 1 else "s"
    raise KlingBudgetExceededError(
        f"Not submitting: this {model} generation would pass the budget of {budget.describe()}. "
        f"Spent in that window {format_usd(spent)} (GET /v2/usage, billed by the service) + in "
        f"flight {format_usd(in_flight)} ({in_flight_count} generation{plural} of this "
        f"deployment not billed yet) + this generation's {price} = {format_usd(total)}"
        f" > {format_usd(budget.usd)}. Wait for the window to move on, or raise budget_usd. "
        "Nothing was sent to the API.")
