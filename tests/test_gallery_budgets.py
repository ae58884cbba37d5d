"""Budgets, spend in flight and reconciled spend on the videos page, from what tasks recorded.

The plugin's app in-process under Airflow's SimpleAuthManager on a real metadata DB (SQLite, and
PostgreSQL when it answers on loopback), as in ``tests/test_gallery_routes.py``. Budget checks
and spend reports are written as the Task SDK writes their XCom (no scheduler runs here), and
reservations as the Variables the budget writes. The page and ``api/spend`` must agree, show
only what the caller's DAGs recorded, and show a hostile DAG author's record escaped or not at
all. The grouping rule is checked over inputs with Hypothesis.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kling_provider._money.readings import (
    BUDGET_XCOM_KEY,
    REPORT_XCOM_KEY,
    BudgetReading,
    SpendReport,
)
from kling_provider._money.reconcile import SpendRow
from kling_provider._task.reservations import Reservation
from kling_provider.gallery import budgets
from kling_provider.gallery.records import TaskRef
from tests import test_gallery_queries
from tests.gallery_seed import new_task_instance_id
from tests.gallery_site import SIMPLE, Site, make_site

#: The fixtures: the site on SQLite, and on PostgreSQL when it answers on loopback.
postgres_template_db, site = test_gallery_queries.postgres_template_db, test_gallery_queries.site
NOW = datetime.now(timezone.utc).replace(microsecond=0)
RED_KEY, PUBLIC_KEY = "a1" * 8, "b2" * 8


def check(key: str = RED_KEY, *, ago: timedelta = timedelta(hours=1), **changes: Any
          ) -> dict[str, Any]:
    reading = BudgetReading(key=key, conn_id="kling_default", budget=Decimal("5.00"),
                            period="day", source="on connection 'kling_default'",
                            spent=Decimal("1.10"), in_flight=Decimal("1.4"), in_flight_count=1,
                            estimate=Decimal("1.4"), decision="admitted",
                            checked_at=NOW - ago)
    return {**reading.to_record(), **changes}


def report(rows: list[tuple[str, str, str, str]], *, first: int, last: int,
           ago: timedelta, key: str = RED_KEY) -> dict[str, Any]:
    """A report of days ``first``..``last`` days ago; rows of (days ago, model, recorded,
    billed)."""
    def day(n: int) -> str:
        return (NOW - timedelta(days=n)).date().isoformat()

    return SpendReport(key=key, conn_id="kling_default", first_day=day(first), last_day=day(last),
                       billed_total=sum((Decimal(r[3]) for r in rows), Decimal(0)),
                       rows=tuple(SpendRow(day(int(d)), m, Decimal(rec), Decimal(bil))
                                  for d, m, rec, bil in rows),
                       reported_at=NOW - ago).to_record()


def push(dag_id: str, task_id: str, key: str, value: Any, *, ago: timedelta) -> None:
    """``value`` as the XCom ``key`` of a task of a new run of ``dag_id``."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import insert, select

    run_id = f"run_{task_id}_{time.monotonic_ns()}"
    with create_session() as session:
        session.execute(insert(DagRun.__table__).values(
            dag_id=dag_id, run_id=run_id, run_type="manual", state="success",
            run_after=NOW - ago))
        run_pk = session.scalar(select(DagRun.id).where(DagRun.dag_id == dag_id,
                                                        DagRun.run_id == run_id))
        session.execute(insert(TaskInstance.__table__).values(
            id=new_task_instance_id(), dag_id=dag_id, run_id=run_id, task_id=task_id,
            map_index=-1, state="success", pool="default_pool", try_number=1))
        session.execute(insert(XComModel.__table__).values(
            dag_run_id=run_pk, dag_id=dag_id, run_id=run_id, task_id=task_id, map_index=-1,
            key=key, value=value, timestamp=NOW - ago))


def reserve(key: str, usd: str, *, expires_in: float) -> None:
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session

    name = Reservation(key, f"{time.monotonic_ns():016d}"[-16:],
                       int(time.time() + expires_in), int(Decimal(usd) * 10**6)).name
    with create_session() as session:
        session.add(Variable(key=name, val="{}"))  # type: ignore[no-untyped-call]


def seed() -> None:
    push("red_dag", "generate", BUDGET_XCOM_KEY, check(spent_usd="0.50"), ago=timedelta(hours=5))
    push("red_dag", "generate", BUDGET_XCOM_KEY, check(), ago=timedelta(hours=1))  # the newest
    push("public_dag", "generate", BUDGET_XCOM_KEY,
         check(PUBLIC_KEY, budget_usd="20", period="week", spent_usd="3.000001",
               in_flight_usd="0", in_flight_count=0), ago=timedelta(hours=2))
    reserve(RED_KEY, "1.40", expires_in=3600)
    reserve(RED_KEY, "1.40", expires_in=3600)
    reserve(RED_KEY, "9.00", expires_in=-5)  # expired: a killed task's, not counted
    reserve("c3" * 8, "7.00", expires_in=3600)  # another key
    # An older report of days 3..1, then a newer one of days 2..1: day 3 from the older only.
    push("red_dag", "report", REPORT_XCOM_KEY, report(
        [("3", "m1", "1.40", "1.40"), ("2", "m1", "9", "9"), ("1", "m1", "0", "5")],
        first=3, last=1, ago=timedelta(days=1)), ago=timedelta(days=1))
    push("red_dag", "report", REPORT_XCOM_KEY, report(
        [("2", "m1", "2.80", "2.80"), ("1", "m1", "1.40", "2.15"), ("1", "m2", "0", "0.75")],
        first=2, last=1, ago=timedelta(hours=3)), ago=timedelta(hours=3))


def cells(html: str, table: str) -> list[list[str]]:
    """The text of each cell of the page's table ``table``, row by row (headings left out)."""
    body = re.search(rf'<table id="{table}">(.*?)</table>', html, re.S)
    assert body is not None, table
    return [[unescape(re.sub(r"<[^>]+>", "", c)) for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
            for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body.group(1), re.S)[1:]]


def test_the_page_and_the_json_show_budgets_in_flight_and_reconciliation(site: Site) -> None:
    seed()
    with site.client("red") as red:
        answer = red.get("/api/spend").json()
        html = red.get("/").text
    red_budget, public_budget = sorted(answer["budgets"], key=lambda b: b["key"])
    assert (red_budget["budget_usd"], red_budget["period"], red_budget["window"]) == (
        "5.00", "day", "24h")
    last = red_budget["last_check"]
    assert (last["spent_usd"], last["in_flight_usd"], last["in_flight_count"],
            last["decision"], last["dag_id"]) == ("1.10", "1.4", 1, "admitted", "red_dag")
    assert datetime.fromisoformat(last["checked_at"]) == NOW - timedelta(hours=1)
    assert red_budget["in_flight_now"]["usd"] == "2.800000"  # two $1.40: exact, live
    assert red_budget["in_flight_now"]["count"] == 2
    assert (public_budget["last_check"]["spent_usd"], public_budget["in_flight_now"]["count"]) == (
        "3.000001", 0)
    rows = [(r["day"], r["model"], r["recorded_usd"], r["billed_usd"], r["difference_usd"],
             r["status"]) for r in answer["reconciliation"]]
    day = [(NOW - timedelta(days=n)).date().isoformat() for n in range(4)]
    assert rows == [(day[3], "m1", "1.40", "1.40", "0.00", "matches"),
                    (day[2], "m1", "2.80", "2.80", "0.00", "matches"),
                    (day[1], "m1", "1.40", "2.15", "0.75", "billed more"),
                    (day[1], "m2", "0", "0.75", "0.75", "billed, not recorded")]
    # The page shows the same figures.
    shown = cells(html, "budgets")  # by connection, then key: red's first; cents (JSON: exact)
    assert [c[1:5] for c in shown] == [["$5.00 per day", "$1.10", "$1.40 (1)", "$2.80 (2)"],
                                       ["$20.00 per week", "$3.00", "$0.00 (0)",
                                        "$0.00 (0)"]]
    assert "red_dag / generate" in shown[0][5] and "admitted" in shown[0][5]
    reconciled = cells(html, "reconciliation")
    assert [(c[0], c[1], c[3], c[4], c[5], c[6]) for c in reconciled] == [
        (day[3], "m1", "$1.40", "$1.40", "$0.00", "matches"),
        (day[2], "m1", "$2.80", "$2.80", "$0.00", "matches"),
        (day[1], "m1", "$1.40", "$2.15", "+$0.75", "billed more"),
        (day[1], "m2", "$0.00", "$0.75", "+$0.75", "billed, not recorded")]
    assert html.count('<tr class="differs">') == 2


def test_each_user_sees_only_what_their_dags_recorded(site: Site) -> None:
    seed()
    seen = {}
    for user in ("admin", "red", "blue", "nobody"):
        with site.client(user) as client:
            answer = client.get("/api/spend").json()
            html = client.get("/").text
        seen[user] = ({b["key"] for b in answer["budgets"]}, len(answer["reconciliation"]))
        if RED_KEY not in seen[user][0]:
            assert "$5.00 per day" not in html and 'id="reconciliation"' not in html
    assert seen == {"admin": ({RED_KEY, PUBLIC_KEY}, 4), "red": ({RED_KEY, PUBLIC_KEY}, 4),
                    "blue": ({PUBLIC_KEY}, 0), "nobody": ({PUBLIC_KEY}, 0)}
    with site.client() as anonymous:
        assert anonymous.get("/api/spend").status_code == 401


def test_a_hostile_dag_authors_records_are_escaped_or_not_shown(site: Site) -> None:
    script = "<script>alert(1)</script>"
    push("public_dag", "generate", BUDGET_XCOM_KEY, check(PUBLIC_KEY, conn_id=script,
                                                          source='"><img src=x onerror=alert(2)>'),
         ago=timedelta(hours=1))
    for bad in ({**check("d4" * 8), "spent_usd": "NaN"}, {**check("e5" * 8), "key": "../x"},
                "not a record", [check("f6" * 8)]):
        push("public_dag", "generate", BUDGET_XCOM_KEY, bad, ago=timedelta(minutes=30))
    forged = report([("1", script, "1", "2")], first=1, last=1, ago=timedelta(hours=1),
                    key=PUBLIC_KEY)
    forged["rows"][0].update(status="matches", difference_usd="0")
    push("public_dag", "report", REPORT_XCOM_KEY, forged, ago=timedelta(hours=1))
    with site.client("nobody") as client:
        answer = client.get("/api/spend").json()
        html = client.get("/").text
    assert [b["key"] for b in answer["budgets"]] == [PUBLIC_KEY]
    assert answer["budgets"][0]["conn_id"] == script  # JSON: data, not markup
    [row] = answer["reconciliation"]
    assert (row["status"], row["difference_usd"]) == ("billed more", "1")  # worked out again
    assert script not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert html.count('<tr class="differs">') == 1


# -- the grouping rule -----------------------------------------------------------------------

def reading(record: dict[str, Any]) -> BudgetReading:
    found = BudgetReading.from_record(record)
    assert found is not None
    return found


@given(st.lists(st.tuples(st.sampled_from([RED_KEY, PUBLIC_KEY]), st.sampled_from(["day", "week"]),
                          st.sampled_from(["on connection 'k'", "on task 'generate'"]),
                          st.sampled_from(["red_dag", "public_dag"]), st.integers(0, 10**6)),
                max_size=12))
def test_each_budget_shows_its_newest_check(found: list[tuple[str, str, str, str, int]]) -> None:
    items = [budgets.Recorded(reading(check(key, period=period, source=source,
                                            ago=timedelta(seconds=seconds))),
                              TaskRef(dag_id, "run", "generate"))
             for key, period, source, dag_id, seconds in found]
    newest = budgets.newest_budgets(items)
    groups = {budgets.budget_key(i.record, i.source) for i in items}
    assert len(newest) == len(groups)
    for shown in newest:
        same = [i for i in items if budgets.budget_key(i.record, i.source)
                == budgets.budget_key(shown.record, shown.source)]
        assert shown.record.checked_at == max(i.record.checked_at for i in same)
    connection_wide = {(i.record.key, i.record.period) for i in newest
                       if i.record.source.startswith("on connection")}
    assert len(connection_wide) == sum(i.record.source.startswith("on connection") for i in newest)


@pytest.fixture
def sqlite_site(tmp_path: Path, airflow_db_template: Path) -> Iterator[Site]:
    yield from make_site(tmp_path, airflow_db_template, SIMPLE)


def test_of_many_checks_the_newest_is_shown(sqlite_site: Site) -> None:
    """Every generate task records a check (the benchmark's history seeds 100,000): the page
    shows the newest, that is the last run's last task's (SQLite: the read is the same SQL as
    on PostgreSQL, tested above)."""
    from airflow.utils.session import create_session

    from tests.gallery_seed import Runs, seed, videos_asset

    plan = Runs("public_dag", runs=4, per_run=5, budget_checks=True)
    with create_session() as session:
        seed(session, plan, videos_asset(session))
    with sqlite_site.client("nobody") as client:
        [budget] = client.get("/api/spend").json()["budgets"]
    assert (budget["last_check"]["run_id"], budget["last_check"]["map_index"]) == (
        plan.run_id(3), 4)
