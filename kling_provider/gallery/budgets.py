"""Budgets and reconciled spend on the videos page, from what tasks recorded: never the paid API.

Where each figure comes from (docs/gallery.rst, "Budgets and reconciled spend"):

- a budget, and what its key had spent: the newest budget check a generate task recorded
  (:class:`~kling_provider._money.readings.BudgetReading`, its ``kling_budget`` XCom) per budget
  (API key, period, where it was set); ``spent`` is ``GET /v2/usage`` as the service answered
  that task at ``checked_at``, and the spend in flight is what that check counted;
- in flight now: this deployment's reservations of the same key when the page is made (Airflow
  Variables, :mod:`kling_provider._task.reservations`): the key's total, as any budget check of
  that key sees it; it names no DAG;
- reconciliation: per key, UTC day and model, the newest ``KlingSpendReportOperator`` run
  covering that day (its ``kling_spend_report`` XCom), recorded against billed as of its run.

Access: only records of the DAGs the caller may see (:func:`~kling_provider.gallery.access.
shown_dag_ids`, the same rule as the cards), each shown with the task that recorded it. A DAG
author can push anything under these keys: a record is read strictly (``readings``), every text
escaped, and it speaks only for the DAG that pushed it. ``load`` is the database edge; the rest
is pure.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from html import escape
from typing import Any, Generic, TypeVar
from urllib.parse import quote

from sqlalchemy import select

from kling_provider._checks import BUDGET_PERIODS
from kling_provider._money.readings import (
    BUDGET_XCOM_KEY,
    REPORT_XCOM_KEY,
    BudgetReading,
    SpendReport,
    latest_rows,
)
from kling_provider._money.reconcile import SpendRow
from kling_provider._money.spend import format_usd
from kling_provider._task import reservations
from kling_provider.gallery.records import TaskRef

R = TypeVar("R", BudgetReading, SpendReport)
#: How far back records are read: the longest report the service answers (92 days).
HORIZON = timedelta(days=92)
#: The newest records of each kind read per request (every paying task records a check).
NEWEST = 2000


@dataclass(frozen=True)
class Recorded(Generic[R]):
    """A record and the task instance that pushed it (Airflow's row, not the writer's say)."""

    record: R
    source: TaskRef


@dataclass(frozen=True)
class Money:
    """What the page shows: the budgets (newest check each, and the key's reservations now) and
    the latest reconciliation per key, day and model."""

    budgets: list[tuple[Recorded[BudgetReading], reservations.InFlight]]
    reconciliation: list[tuple[SpendRow, Recorded[SpendReport]]] = field(default_factory=list)


def budget_key(reading: BudgetReading, source: TaskRef) -> tuple[str, ...]:
    """One budget: the API key's hash, the period and where it was set (a task's own budget is
    its DAG's: two DAGs' tasks named alike set two budgets)."""
    own = source.dag_id if not reading.source.startswith("on connection") else ""
    return (reading.key, reading.period, reading.source, own)


def newest_budgets(found: Iterable[Recorded[BudgetReading]]) -> list[Recorded[BudgetReading]]:
    """The newest check of each budget (:func:`budget_key`), by connection then period."""
    newest: dict[tuple[str, ...], Recorded[BudgetReading]] = {}
    for item in found:
        key = budget_key(item.record, item.source)
        if key not in newest or item.record.checked_at > newest[key].record.checked_at:
            newest[key] = item
    return sorted(newest.values(), key=lambda i: (i.record.conn_id, i.record.key,
                                                  list(BUDGET_PERIODS).index(i.record.period),
                                                  i.record.source, i.source.dag_id))


def assemble(checks: Iterable[Recorded[BudgetReading]], reports: Iterable[Recorded[SpendReport]],
             reservation_names: Iterable[str], now: datetime) -> Money:
    """The page's figures from the records the caller may see and the reservations' names."""
    names = list(reservation_names)
    budgets = [(item, reservations.in_flight_of(names, item.record.key, now=now.timestamp()))
               for item in newest_budgets(checks)]
    by_report = {id(r.record): r for r in reports}
    rows = latest_rows(r.record for r in by_report.values())
    return Money(budgets, [(row, by_report[id(report)]) for row, report in rows])


def _source(ref: TaskRef) -> dict[str, Any]:
    return {"dag_id": ref.dag_id, "run_id": ref.run_id, "task_id": ref.task_id,
            "map_index": ref.map_index}


def _usd(amount: Decimal | None) -> str | None:
    return None if amount is None else str(amount)


def as_json(money: Money, now: datetime) -> dict[str, Any]:
    """The JSON of ``api/spend``: amounts as exact decimal text, times as ISO-8601."""
    budgets = []
    for item, flying in money.budgets:
        r = item.record
        budgets.append({
            "conn_id": r.conn_id, "key": r.key, "budget_usd": _usd(r.budget), "period": r.period,
            "window": BUDGET_PERIODS[r.period], "source": r.source,
            "last_check": {"spent_usd": _usd(r.spent), "in_flight_usd": _usd(r.in_flight),
                           "in_flight_count": r.in_flight_count,
                           "estimate_usd": _usd(r.estimate), "decision": r.decision,
                           "checked_at": r.checked_at.isoformat(), **_source(item.source)},
            "in_flight_now": {"usd": _usd(flying.usd), "count": flying.count,
                              "as_of": now.isoformat()}})
    rows = [{"key": rec.record.key, "conn_id": rec.record.conn_id, "day": row.day,
             "model": row.model, "recorded_usd": _usd(row.recorded),
             "billed_usd": _usd(row.billed), "difference_usd": _usd(row.difference),
             "status": row.status, "reported_at": rec.record.reported_at.isoformat(),
             **_source(rec.source)} for row, rec in money.reconciliation]
    return {"budgets": budgets, "reconciliation": rows}


def _run_link(ref: TaskRef, text: str) -> str:
    url = (f"/dags/{quote(ref.dag_id, safe='')}/runs/{quote(ref.run_id, safe='')}/tasks/"
           f"{quote(ref.task_id, safe='')}" + (f"/mapped/{ref.map_index}" if ref.map_index >= 0
                                               else ""))
    return f'<a target="_top" href="{escape(url)}">{escape(text)}</a>'


def _when(moment: datetime) -> str:
    return f"{moment.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S} UTC"


def _budget_rows(budgets: Sequence[tuple[Recorded[BudgetReading], reservations.InFlight]]
                 ) -> str:
    rows = []
    for item, flying in budgets:
        r = item.record
        spent = (format_usd(r.spent) if r.spent is not None else "unknown (not readable)")
        rows.append(
            f"<tr><td>{escape(r.conn_id)} <small>(key {escape(r.key[:8])}, set "
            f"{escape(r.source)})</small></td>"
            f"<td>{escape(format_usd(r.budget))} per {escape(r.period)}</td>"
            f'<td class="spent">{escape(spent)}</td>'
            f'<td class="at-check">{escape(format_usd(r.in_flight))} ({r.in_flight_count})</td>'
            f'<td class="in-flight">{escape(format_usd(flying.usd))} ({flying.count})</td>'
            f"<td>{_when(r.checked_at)}, {escape(r.decision)} by "
            f"{_run_link(item.source, f'{item.source.dag_id} / {item.source.task_id}')}</td>"
            "</tr>")
    return "".join(rows)


def render(money: Money, now: datetime) -> str:
    """The page's "Budgets" and "Reconciled spend" sections (each absent when nothing is
    recorded), ids ``budgets`` and ``reconciliation``; rows that differ have class
    ``differs``."""
    parts = []
    if money.budgets:
        parts.append(
            "<h2>Budgets</h2><p class=\"note\">Spent: what <code>GET /v2/usage</code> reported "
            "to the newest budget check (the page never asks the API). In flight: this "
            "deployment's generations not billed yet, at that check and now "
            f"({_when(now)}); (n) generations.</p>"
            '<table id="budgets"><tr><th>connection</th><th>budget</th><th>spent (service)</th>'
            "<th>in flight at check</th><th>in flight now</th><th>checked</th></tr>"
            f"{_budget_rows(money.budgets)}</table>")
    if money.reconciliation:
        rows = []
        for row, rec in money.reconciliation:
            differs = ' class="differs"' if row.status != "matches" else ""
            rows.append(
                f"<tr{differs}><td>{escape(row.day)}</td><td>{escape(row.model)}</td>"
                f"<td>{escape(rec.record.conn_id)}</td>"
                f"<td>{escape(format_usd(row.recorded))}</td>"
                f"<td>{escape(format_usd(row.billed))}</td>"
                f"<td>{escape(_signed(row.difference))}</td><td>{escape(row.status)}</td>"
                f"<td>{_run_link(rec.source, _when(rec.record.reported_at))}</td></tr>")
        parts.append(
            "<h2>Reconciled spend</h2><p class=\"note\">Recorded by tasks against billed by the "
            "service, per UTC day and model, from the newest spend report covering each day."
            "</p><table id=\"reconciliation\"><tr><th>day (UTC)</th><th>model</th>"
            "<th>connection</th><th>recorded</th><th>billed</th><th>billed - recorded</th>"
            f"<th>status</th><th>reported</th></tr>{''.join(rows)}</table>")
    return "".join(parts)


def _signed(amount: Decimal) -> str:
    return ("-" if amount < 0 else "+" if amount > 0 else "") + format_usd(abs(amount))


STYLE = (".note{font-size:.8rem;color:#4a5568;margin:2px 0 6px} tr.differs td{background:#fed7d7;"
         "color:#822727;font-weight:600}")


def _rows(session: Any, key: str, dag_ids: Collection[str], since: datetime) -> list[Any]:
    # ORM models (~0.4 s): every Airflow process loads this plugin, only page requests use them
    from airflow.models.xcom import XComModel

    return list(session.scalars(
        select(XComModel).where(XComModel.key == key, XComModel.dag_id.in_(list(dag_ids)),
                                XComModel.timestamp >= since)
        .order_by(XComModel.timestamp.desc()).limit(NEWEST)))


def _parsed(rows: Iterable[Any], kind: type[R]) -> list[Recorded[R]]:
    # ORM models: see _rows
    from airflow.models.xcom import XComModel

    found = []
    for row in rows:
        record = kind.from_record(XComModel.deserialize_value(row))
        if record is not None:
            found.append(Recorded(record, TaskRef(row.dag_id, row.run_id, row.task_id,
                                                  row.map_index)))
    return found


def load(dag_ids: Collection[str], now: datetime) -> Money:
    """The figures of :func:`assemble` from the metadata database, for ``dag_ids``."""
    # ORM models (~0.4 s): every Airflow process loads this plugin, only page requests use them
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session

    if not dag_ids:
        return Money([])
    since = now - HORIZON
    with create_session() as session:
        checks = _parsed(_rows(session, BUDGET_XCOM_KEY, dag_ids, since), BudgetReading)
        reports = _parsed(_rows(session, REPORT_XCOM_KEY, dag_ids, since), SpendReport)
        names: list[str] = []
        if checks:
            names = list(session.scalars(select(Variable.key).where(
                Variable.key.startswith(f"{reservations.PREFIX}.", autoescape=True))))
    return assemble(checks, reports, names, now)

