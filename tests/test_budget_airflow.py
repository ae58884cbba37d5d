"""Budgets in real Airflow: concurrent mapped tasks stay within the budget (docs/spend.rst).

One run of ``tests/dags/kling_budget.py`` (eight mapped $1.40 generations, a $5.00 budget from a
DAG param) in a real cluster (api-server, scheduler, dag-processor, triggerer, LocalExecutor; see
``test_real_airflow``) against the simulator. The tasks reserve their estimates in Airflow
Variables through the Task SDK, read the key's spend from ``GET /v2/usage``, and decide at the
same time; what docs/spend.rst promises is checked: what the key was billed stays within the
budget (no price above its estimate here, nothing outside the deployment), the refused tasks
failed before paying, and no reservation is left once the videos completed. Then
``tests/dags/kling_budget_in_triggerer.py``: budgeted tasks that end in the triggerer
(``end_from_trigger=True``) leave no reservation either (the trigger deletes it).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tests.conftest import SECRET_KEY
from tests.test_real_airflow import ROOT, local_cluster, run_to_the_end

pytestmark = pytest.mark.integration


def test_concurrent_mapped_tasks_stay_within_the_budget(tmp_path: Path,
                                                        airflow_db_template: Path) -> None:
    with local_cluster(tmp_path, airflow_db_template, ROOT / "tests" / "dags") as (airflow, sim):
        api = airflow.api
        _, instances = run_to_the_end(airflow, "kling_budget")
        states = sorted(ti["state"] for ti in instances)
        paid = sim.ledger.count(method="POST")
        billed = Decimal(str(httpx.get(f"{sim.base_url}/v2/usage", params={"period": "24h"},
                                       headers={"Authorization": f"Bearer {SECRET_KEY}"}
                                       ).json()["spend"]))
        left = api.get("/api/v2/variables", params={"variable_key_pattern": "kling_inflight%"})
        print(f"\nbudget $5.00, 8 mapped tasks of $1.40: {paid} paid, billed ${billed}, "
              f"states {states}")
        assert 1 <= paid <= 3  # 3 x $1.40 = $4.20 <= $5.00 < $5.60
        assert billed == Decimal("1.4") * paid <= Decimal(5)
        assert states == ["failed"] * (8 - paid) + ["success"] * paid
        assert left.status_code == 200 and left.json()["total_entries"] == 0, left.text

        # Tasks that end in the triggerer: the trigger deletes each reservation there.
        _, instances = run_to_the_end(airflow, "kling_budget_in_triggerer")
        assert sorted(ti["state"] for ti in instances) == ["success"] * 2, airflow.diagnostics()
        ended = [p for p in (airflow.home / "logs" / "dag_id=kling_budget_in_triggerer").rglob(
            "attempt=*.log*") if ".trigger." in p.name]
        assert sum("(task ended in the triggerer)" in p.read_text(errors="replace")
                   for p in ended) == 2, [p.name for p in ended]
        left = api.get("/api/v2/variables", params={"variable_key_pattern": "kling_inflight%"})
        assert left.status_code == 200 and left.json()["total_entries"] == 0, left.text
        assert sim.ledger.count(method="POST") == paid + 2
