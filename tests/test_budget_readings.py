"""What tasks record of their money decisions for the videos page (``_money/readings.py``).

A budget check pushes its figures (``kling_budget``) and a spend report its rows
(``kling_spend_report``) so the page shows them without calling the API. The records read back
exactly (Hypothesis over readings), anything else reads as nothing (a DAG author can push any
value under these keys), and "the latest reconciliation" is the newest report covering each day.
The operators' side runs against the simulator.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kling_provider._money.readings import (
    BUDGET_XCOM_KEY,
    REPORT_XCOM_KEY,
    BudgetReading,
    SpendReport,
    latest_rows,
)
from kling_provider._money.reconcile import SpendRow
from kling_provider._task.reservations import Reservation, key_id
from kling_provider.exceptions import KlingBudgetExceededError
from kling_provider.operators.spend_report import KlingSpendReportOperator
from kling_provider.testing.simulator import KlingSimulator
from tests.conftest import SECRET_KEY, FakeClock, StateStoreStub, context_for
from tests.test_budget import DictStore, creates, store, task  # noqa: F401  (store: a fixture)

MODEL = "klingai/v2-master-text-to-video"
WHEN = datetime(2026, 11, 21, 10, tzinfo=timezone.utc)
amounts = st.decimals(min_value=Decimal("0.000001"), max_value=Decimal(10**9), places=6,
                      allow_nan=False, allow_infinity=False)
texts = st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=40)


@st.composite
def readings(draw: st.DrawFn) -> BudgetReading:
    return BudgetReading(
        key=draw(st.text("0123456789abcdef", min_size=16, max_size=16)), conn_id=draw(texts),
        budget=draw(amounts), period=draw(st.sampled_from(["day", "week", "month"])),
        source=draw(texts), spent=draw(st.none() | amounts), in_flight=draw(amounts),
        in_flight_count=draw(st.integers(0, 1000)), estimate=draw(st.none() | amounts),
        decision=draw(st.sampled_from(["admitted", "refused", "unknown"])),
        checked_at=WHEN + timedelta(seconds=draw(st.integers(0, 10**7))))


@given(readings())
def test_a_budget_reading_reads_back_exactly(reading: BudgetReading) -> None:
    record = reading.to_record()
    assert all(not isinstance(v, float) for v in record.values())  # money is decimal text
    assert BudgetReading.from_record(record) == reading


NOT_TEXT = [None, True, 1.5, "", "x" * 300, ["1"], {"a": 1}]
NOT_USD = [True, 1.5, 2, "", "NaN", "Infinity", "-sNaN", "1e999", "1" * 50, "one", ["1"]]
HOSTILE: dict[str, list[Any]] = {"key": [*NOT_TEXT, "A" * 16, "a" * 15, "a" * 17, "g" * 16],
           "conn_id": NOT_TEXT, "source": NOT_TEXT,
           "period": [*NOT_TEXT, "year", "Day"], "decision": [*NOT_TEXT, "maybe"],
           "budget_usd": [*NOT_USD, None, "0", "-1"], "in_flight_usd": [*NOT_USD, None],
           "spent_usd": NOT_USD, "estimate_usd": NOT_USD,
           "in_flight_count": [None, True, 1.0, "1", -1, 10**10],
           "checked_at": [*NOT_TEXT, "2026-11-21T10:00", "yesterday"]}


@given(readings(), st.sampled_from(sorted(HOSTILE)).flatmap(
    lambda name: st.tuples(st.just(name), st.sampled_from(HOSTILE[name]))))
def test_a_reading_with_any_field_out_of_shape_is_none(reading: BudgetReading,
                                                       bad: tuple[str, Any]) -> None:
    name, value = bad
    assert BudgetReading.from_record({**reading.to_record(), name: value}) is None
    assert BudgetReading.from_record([reading.to_record()]) is None


days = st.integers(0, 20).map(lambda n: (WHEN + timedelta(days=n)).date().isoformat())


@st.composite
def reports(draw: st.DrawFn, key: str | None = None) -> SpendReport:
    first, last = sorted([draw(days), draw(days)])
    models = ["m1", "m2"]
    rows = {(d, m): SpendRow(d, m, draw(amounts), draw(amounts))
            for d in draw(st.lists(days, max_size=4)) if first <= d <= last
            for m in draw(st.lists(st.sampled_from(models), max_size=2, unique=True))}
    return SpendReport(key=key or draw(st.sampled_from(["a" * 16, "b" * 16])), conn_id="kling",
                       first_day=first, last_day=last, billed_total=draw(amounts),
                       rows=tuple(rows[k] for k in sorted(rows)),
                       reported_at=WHEN + timedelta(minutes=draw(st.integers(0, 10**5))))


@given(reports())
def test_a_report_reads_back_and_its_status_is_worked_out_again(report: SpendReport) -> None:
    record = report.to_record()
    assert SpendReport.from_record(record) == report
    if record["rows"]:  # what a writer claims about a row is not read
        record["rows"][0].update(status="matches", difference_usd="0")
        assert SpendReport.from_record(record) == report
        outside = {**record["rows"][0], "day": "1999-01-01"}
        assert SpendReport.from_record({**record, "rows": [outside]}) is None
    assert SpendReport.from_record({**record, "first_day": "2026-13-01"}) is None


@given(st.lists(reports(), max_size=6))
def test_each_day_is_answered_by_the_newest_report_covering_it(found: list[SpendReport]) -> None:
    shown = latest_rows(found)
    for row, report in shown:
        covering = [r for r in found if r.key == report.key and r.covers(row.day)]
        assert report.reported_at == max(r.reported_at for r in covering)
        assert row in report.rows
    for report in found:  # every row of a report no newer one covers is shown
        for row in report.rows:
            newer = [r for r in found if r.key == report.key and r.covers(row.day)
                     and r.reported_at > report.reported_at]
            if not newer and sum(r.key == report.key and r.covers(row.day)
                                 and r.reported_at == report.reported_at for r in found) == 1:
                assert (row, report) in shown
    keys = [(r.key, row.day, row.model) for row, r in shown]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)


# -- the operators record what they read ---------------------------------------------------------

def test_a_budget_check_records_its_figures_admitted_or_refused(
        airflow_sim: KlingSimulator, store: DictStore, clock: FakeClock) -> None:  # noqa: F811
    now = airflow_sim.service_time()
    airflow_sim.usage.add_spend("1.10", key=SECRET_KEY, model=MODEL, at=now - 3600)
    elsewhere = Reservation.of(SECRET_KEY, "f" * 16, expires_at=clock.now() + 600,
                               usd=Decimal("1.40"))
    store.set(elsewhere.name, "{}")
    admitted, checked = context_for(StateStoreStub()), clock.now()  # checked before paying
    task(budget_usd="5", budget_period="day").execute(admitted)
    reading = BudgetReading.from_record(admitted["ti"].xcom[BUDGET_XCOM_KEY])
    assert reading is not None
    assert (reading.budget, reading.period, reading.spent, reading.in_flight,
            reading.in_flight_count, reading.estimate, reading.decision) == (
        Decimal("5"), "day", Decimal("1.10"), Decimal("1.4"), 1, Decimal("1.4"), "admitted")
    assert reading.key == key_id(SECRET_KEY) and reading.conn_id == "kling_default"
    assert reading.checked_at == datetime.fromtimestamp(checked, timezone.utc)
    assert SECRET_KEY not in repr(admitted["ti"].xcom)
    refused = context_for(StateStoreStub())
    with pytest.raises(KlingBudgetExceededError):
        task(budget_usd="3", budget_period="day").execute(refused)
    reading = BudgetReading.from_record(refused["ti"].xcom[BUDGET_XCOM_KEY])
    assert reading is not None and reading.decision == "refused"
    assert reading.spent == Decimal("2.50")  # the first video is billed now
    assert creates(airflow_sim) == 1


def test_a_spend_report_records_its_rows_for_the_page(airflow_sim: KlingSimulator,
                                                      clock: FakeClock) -> None:
    airflow_sim.usage.add_spend("0.75", key=SECRET_KEY, model="klingai/other-model",
                                at=airflow_sim.service_time() - 60)
    day = datetime.fromtimestamp(clock.now(), timezone.utc).date().isoformat()
    context = context_for(None)
    rows = KlingSpendReportOperator(task_id="report", recorded=[(day, MODEL, "2.00")],
                                    days=3).execute(context)
    report = SpendReport.from_record(context["ti"].xcom[REPORT_XCOM_KEY])
    assert report is not None and report.key == key_id(SECRET_KEY)
    assert report.last_day == day and report.covers(day) and report.billed_total == Decimal("0.75")
    assert [r.to_dict() for r in report.rows] == rows
    assert {(r.model, r.status) for r in report.rows} == {
        ("klingai/other-model", "billed, not recorded"), (MODEL, "recorded, not billed")}
