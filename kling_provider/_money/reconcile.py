"""Reconciled spend: what tasks recorded against what the service billed, per day and model.

The service's ledger (``GET /v2/usage/detail?group_by=day,model``, UTC days) is the truth of what
the key paid; the provider's own record is each finished generation's ``usd_spent`` (the
generate tasks' results, summed per UTC day of completion and model by the videos page's summary
table ``kling_gallery_video``, or by any query of your own). Where the two differ:

- billed more than recorded: spend outside Airflow on the same key (a script, the playground, a
  second deployment), or a record that never landed (a task killed after its video completed);
- recorded more than billed: a record of a key other than this one, or a day boundary (a video
  recorded at 23:59:59 and billed at 00:00:01 shows on two days, and balances over both).

Pure: :class:`~kling_provider.operators.spend_report.KlingSpendReportOperator` reads the two
sides and logs :func:`reconcile`'s rows. Amounts are exact ``Decimal``\\ s.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from kling_provider._money.spend import exact_amount, format_usd
from kling_provider.exceptions import KlingValidationError

__all__ = ["SpendRow", "reconcile", "recorded_rows", "report_lines"]

#: Differences below this are rounding (the service's totals may differ from a sum by
#: nano-dollars), not money.
TOLERANCE = Decimal("0.000001")


@dataclass(frozen=True)
class SpendRow:
    """One UTC day and model: recorded by tasks, billed by the service, and what that means."""

    day: str
    model: str
    recorded: Decimal
    billed: Decimal

    @property
    def difference(self) -> Decimal:
        """Billed minus recorded: positive is spend the tasks did not record."""
        return self.billed - self.recorded

    @property
    def status(self) -> str:
        if abs(self.difference) < TOLERANCE:
            return "matches"
        if self.recorded == 0:
            return "billed, not recorded"
        if self.billed == 0:
            return "recorded, not billed"
        return "billed more" if self.difference > 0 else "recorded more"

    def to_dict(self) -> dict[str, str]:
        """XCom-safe (amounts as exact decimal text)."""
        return {"day": self.day, "model": self.model, "recorded_usd": str(self.recorded),
                "billed_usd": str(self.billed), "difference_usd": str(self.difference),
                "status": self.status}


def recorded_rows(rows: Iterable[Any]) -> dict[tuple[str, str], Decimal]:
    """Recorded spend per (day, model) from ``rows``: mappings with ``day``, ``model`` and
    ``usd`` (or sequences in that order, as a SQL task returns them); amounts as numbers or
    decimal text. Rows of one day and model add up."""
    found: dict[tuple[str, str], Decimal] = {}
    for row in rows:
        if isinstance(row, Mapping):
            day, model, usd = row.get("day"), row.get("model"), row.get("usd")
        elif isinstance(row, (list, tuple)) and len(row) == 3:
            day, model, usd = row
        else:
            raise KlingValidationError(
                f"Invalid parameter 'recorded' row {row!r}: give (day, model, usd) or a mapping "
                "with those keys.")
        amount = exact_amount(usd) if not isinstance(usd, str) else _text_amount(usd)
        if not isinstance(day, str) or not isinstance(model, str) or amount is None:
            raise KlingValidationError(
                f"Invalid parameter 'recorded' row {row!r}: day and model must be text "
                "(2026-07-21, klingai/...) and usd a number of US dollars.")
        found[(day, model)] = found.get((day, model), Decimal(0)) + amount
    return found


def _text_amount(text: str) -> Decimal | None:
    try:
        amount = Decimal(text.strip())
    except ArithmeticError:
        return None
    return amount if amount.is_finite() else None


def reconcile(recorded: Mapping[tuple[str, str], Decimal],
              billed: Iterable[tuple[str, str, Decimal]]) -> list[SpendRow]:
    """One row per (day, model) on either side, by day then model."""
    billed_by: dict[tuple[str, str], Decimal] = {}
    for day, model, usd in billed:
        billed_by[(day, model)] = billed_by.get((day, model), Decimal(0)) + usd
    keys = sorted(set(recorded) | set(billed_by))
    return [SpendRow(day, model, recorded.get((day, model), Decimal(0)),
                     billed_by.get((day, model), Decimal(0))) for day, model in keys]


def report_lines(rows: Iterable[SpendRow]) -> list[str]:
    """The task log's table: one line per day and model that does not match, then the totals."""
    rows = list(rows)
    lines = [f"{r.day}  {r.model}: recorded {format_usd(r.recorded)}, billed "
             f"{format_usd(r.billed)} ({r.status}, {format_usd(abs(r.difference))})"
             for r in rows if r.status != "matches"]
    recorded = sum((r.recorded for r in rows), Decimal(0))
    billed = sum((r.billed for r in rows), Decimal(0))
    lines.append(f"Total: recorded {format_usd(recorded)}, billed {format_usd(billed)}; "
                 f"{len(lines)} of {len(rows)} day/model rows differ.")
    return lines
