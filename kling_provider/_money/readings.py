"""What a task records of its money decisions for the videos page, and how the page reads it back.

Why: the videos page must never call the paid API (``GET /v2/usage`` answers for a key; a page
view is no reason to use it), yet it shows a budget's spend and the reconciliation of recorded
against billed spend. So the tasks that read those figures anyway record what they read, as an
XCom of their own task instance (its DAG, run and task are Airflow's, not the writer's say):

- :data:`BUDGET_XCOM_KEY`: a generate task's budget check (:class:`BudgetReading`): the budget,
  the key's spend as the service reported it at that instant, this deployment's spend in flight
  then, the estimate and the decision;
- :data:`REPORT_XCOM_KEY`: a ``KlingSpendReportOperator`` run (:class:`SpendReport`): the UTC
  days it covered and, per day and model, recorded and billed.

One module writes and reads both, so the two sides cannot drift. Reading is strict (a DAG author
can push anything under these keys): a record that is not exactly this shape is ``None``, never
a figure. Amounts are exact decimal text, read back as ``Decimal``. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from kling_provider._checks import BUDGET_PERIODS
from kling_provider._money.reconcile import SpendRow

__all__ = ["BUDGET_XCOM_KEY", "REPORT_XCOM_KEY", "BudgetReading", "SpendReport", "latest_rows"]

BUDGET_XCOM_KEY = "kling_budget"
REPORT_XCOM_KEY = "kling_spend_report"
#: What a budget check decided.
DECISIONS = ("admitted", "refused", "unknown")
#: Beyond this, an amount is not one a task recorded (the largest budget is 10**9).
MAX_USD = Decimal(10**12)
#: Longer texts (connection ids, model names, where a budget was set) are not reported ones.
MAX_TEXT = 250
#: Rows of one report the page reads (92 days of dozens of models fit).
MAX_ROWS = 5000
_KEY = re.compile(r"[0-9a-f]{16}")


def usd_text(amount: Decimal | None) -> str | None:
    """An amount as exact decimal text (``None`` stays ``None``)."""
    return None if amount is None else str(amount)


def _usd(value: Any, *, optional: bool = False) -> Decimal | None:
    """Decimal text of at most :data:`MAX_USD`; raises ``ValueError`` on anything else."""
    if value is None and optional:
        return None
    if not isinstance(value, str) or len(value) > 40:
        raise ValueError(value)
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise ValueError(value) from None
    if not amount.is_finite() or abs(amount) > MAX_USD:
        raise ValueError(value)
    return amount


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
        raise ValueError(value)
    return value


def _when(value: Any) -> datetime:
    when = datetime.fromisoformat(_text(value))
    if when.tzinfo is None:
        raise ValueError(value)
    return when


def _day(value: Any) -> str:
    return date.fromisoformat(_text(value)).isoformat()  # the canonical form or ValueError


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10**9:
        raise ValueError(value)
    return value


def _key(value: Any) -> str:
    if not isinstance(value, str) or not _KEY.fullmatch(value):
        raise ValueError(value)
    return value


@dataclass(frozen=True)
class BudgetReading:
    """One budget check as the task made it: ``spent`` is what ``GET /v2/usage`` reported at
    ``checked_at`` (``None``: it could not be read), ``in_flight`` this deployment's unbilled
    generations of the same key then (this task's own left out)."""

    key: str
    conn_id: str
    budget: Decimal
    period: str
    source: str
    spent: Decimal | None
    in_flight: Decimal
    in_flight_count: int
    estimate: Decimal | None
    decision: str
    checked_at: datetime

    def to_record(self) -> dict[str, Any]:
        """XCom-safe: amounts as exact decimal text, the time as ISO-8601."""
        return {"key": self.key, "conn_id": self.conn_id, "budget_usd": usd_text(self.budget),
                "period": self.period, "source": self.source, "spent_usd": usd_text(self.spent),
                "in_flight_usd": usd_text(self.in_flight), "in_flight_count": self.in_flight_count,
                "estimate_usd": usd_text(self.estimate), "decision": self.decision,
                "checked_at": self.checked_at.isoformat()}

    @classmethod
    def from_record(cls, record: Any) -> BudgetReading | None:
        """The reading ``record`` holds, or ``None`` when it is not exactly one."""
        if not isinstance(record, Mapping):
            return None
        try:
            period, decision = _text(record.get("period")), _text(record.get("decision"))
            budget = _usd(record.get("budget_usd"))
            if period not in BUDGET_PERIODS or decision not in DECISIONS or not budget:
                return None
            return cls(key=_key(record.get("key")), conn_id=_text(record.get("conn_id")),
                       budget=budget, period=period, source=_text(record.get("source")),
                       spent=_usd(record.get("spent_usd"), optional=True),
                       in_flight=_usd(record.get("in_flight_usd")) or Decimal(0),
                       in_flight_count=_count(record.get("in_flight_count")),
                       estimate=_usd(record.get("estimate_usd"), optional=True),
                       decision=decision, checked_at=_when(record.get("checked_at")))
        except (ValueError, TypeError):
            return None


@dataclass(frozen=True)
class SpendReport:
    """One spend report: the key's bill over ``first_day``..``last_day`` (UTC) against what
    tasks recorded, per day and model; ``billed_total`` is the service's own total."""

    key: str
    conn_id: str
    first_day: str
    last_day: str
    billed_total: Decimal
    rows: tuple[SpendRow, ...]
    reported_at: datetime

    def covers(self, day: str) -> bool:
        return self.first_day <= day <= self.last_day

    def to_record(self) -> dict[str, Any]:
        return {"key": self.key, "conn_id": self.conn_id, "first_day": self.first_day,
                "last_day": self.last_day, "billed_total_usd": usd_text(self.billed_total),
                "reported_at": self.reported_at.isoformat(),
                "rows": [{"day": r.day, "model": r.model, "recorded_usd": usd_text(r.recorded),
                          "billed_usd": usd_text(r.billed)} for r in self.rows]}

    @classmethod
    def from_record(cls, record: Any) -> SpendReport | None:
        """The report ``record`` holds, or ``None`` when it is not exactly one. Each row's
        difference and status are worked out again here (``SpendRow``), never taken as written."""
        if not isinstance(record, Mapping):
            return None
        try:
            first, last = _day(record.get("first_day")), _day(record.get("last_day"))
            found = record.get("rows")
            if first > last or not isinstance(found, list) or len(found) > MAX_ROWS:
                return None
            rows = []
            for row in found:
                if not isinstance(row, Mapping):
                    return None
                day = _day(row.get("day"))
                if not first <= day <= last:
                    return None
                rows.append(SpendRow(day, _text(row.get("model")),
                                     _usd(row.get("recorded_usd")) or Decimal(0),
                                     _usd(row.get("billed_usd")) or Decimal(0)))
            return cls(key=_key(record.get("key")), conn_id=_text(record.get("conn_id")),
                       first_day=first, last_day=last,
                       billed_total=_usd(record.get("billed_total_usd")) or Decimal(0),
                       rows=tuple(rows), reported_at=_when(record.get("reported_at")))
        except (ValueError, TypeError):
            return None


def latest_rows(reports: Iterable[SpendReport]) -> list[tuple[SpendRow, SpendReport]]:
    """The latest reconciliation per key, day and model: each (key, day) is answered by the
    newest report of that key covering the day (a day it covers without a row matched at $0,
    so an older report's row for it is not shown). By key, then day, then model."""
    newest: dict[tuple[str, str], SpendReport] = {}
    for report in sorted(reports, key=lambda r: r.reported_at):
        days = {row.day for row in report.rows}
        for day in days:
            newest[(report.key, day)] = report
        for (key, day), older in list(newest.items()):
            if key == report.key and report.covers(day) and older is not report:
                newest[(key, day)] = report
    chosen = [(row, report) for (key, day), report in newest.items()
              for row in report.rows if row.day == day]
    return sorted(chosen, key=lambda pair: (pair[1].key, pair[0].day, pair[0].model))
