"""Reconciled spend: what tasks recorded against what the service billed, per UTC day and model.

The rule (pure, Hypothesis) and ``KlingSpendReportOperator`` against the simulator's
``GET /v2/usage/detail`` over real HTTP: spend outside Airflow and a record that never landed
show up as "billed, not recorded"; a record the key was never billed for as "recorded, not
billed".
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kling_provider._money.reconcile import reconcile, recorded_rows, report_lines
from kling_provider.exceptions import KlingValidationError
from kling_provider.operators.kling import KlingTextToVideoOperator
from kling_provider.operators.spend_report import KlingSpendReportOperator
from kling_provider.testing.simulator import KlingSimulator
from tests.conftest import SECRET_KEY, FakeClock, StateStoreStub, context_for

MODEL = "klingai/v2-master-text-to-video"
keys = st.tuples(st.sampled_from(["2027-01-14", "2027-01-15"]), st.sampled_from(["a", "b", "c"]))
amounts = st.decimals(min_value=0, max_value=1000, places=6, allow_nan=False, allow_infinity=False)


@given(recorded=st.dictionaries(keys, amounts), billed=st.lists(st.tuples(keys, amounts)))
def test_every_day_and_model_once_and_the_differences_add_up(
        recorded: dict[tuple[str, str], Decimal],
        billed: list[tuple[tuple[str, str], Decimal]]) -> None:
    rows = reconcile(recorded, [(day, model, usd) for (day, model), usd in billed])
    assert [(r.day, r.model) for r in rows] == sorted(set(recorded) | {k for k, _ in billed})
    assert sum(r.difference for r in rows) == sum(u for _, u in billed) - sum(recorded.values())
    for row in rows:
        if row.status == "billed, not recorded":
            assert row.recorded == 0 and row.billed > 0
        if row.status == "matches":
            assert row.recorded == row.billed
    assert report_lines(rows)[-1].endswith(
        f"{sum(r.status != 'matches' for r in rows)} of {len(rows)} day/model rows differ.")


def test_recorded_rows_take_sql_tuples_mappings_and_decimal_text() -> None:
    rows = [("2027-01-15", "m", "0.1"), {"day": "2027-01-15", "model": "m", "usd": 0.2},
            ("2027-01-16", "m", Decimal("1.40"))]
    assert recorded_rows(rows) == {("2027-01-15", "m"): Decimal("0.3"),
                                   ("2027-01-16", "m"): Decimal("1.40")}
    for bad in [("2027-01-15", "m"), ("2027-01-15", "m", "lots"), (None, "m", 1), "row"]:
        with pytest.raises(KlingValidationError, match="'recorded'"):
            recorded_rows([bad])


@pytest.mark.parametrize("days", [0, 93, True, "7"])
def test_days_are_checked_when_the_dag_is_parsed(days: object) -> None:
    with pytest.raises(KlingValidationError, match="'days'"):
        KlingSpendReportOperator(task_id="report", days=days)  # type: ignore[arg-type]


def test_outside_spend_and_a_missing_record_show_up(airflow_sim: KlingSimulator,
                                                   clock: FakeClock) -> None:
    generate = KlingTextToVideoOperator(task_id="g", model=MODEL, prompt="p", duration=5,
                                        deferrable=False, poll_interval=10)
    result = generate.execute(context_for(StateStoreStub()))
    clock.t += 1  # the report runs after the video was billed
    day = datetime.fromtimestamp(clock.now(), timezone.utc).date().isoformat()
    airflow_sim.usage.add_spend("0.75", key=SECRET_KEY, model="klingai/other-model",
                                at=airflow_sim.service_time() - 60)  # a script, same key
    recorded = [(day, MODEL, str(result["usd_spent"])), ("2000-01-01", MODEL, "9"),  # too old
                (day, "klingai/never-billed", "2.00")]
    rows = KlingSpendReportOperator(task_id="report", recorded=recorded, days=2).execute(
        context_for(None))
    assert {(r["model"], r["status"], r["difference_usd"]) for r in rows} == {
        (MODEL, "matches", "0.0"),
        ("klingai/other-model", "billed, not recorded", "0.75"),
        ("klingai/never-billed", "recorded, not billed", "-2.00")}
    assert all(r["day"] == day for r in rows)
    assert airflow_sim.ledger.count(method="GET", path="/v2/usage/detail") == 1
