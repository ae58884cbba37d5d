"""The DAG of the budget test (issue 20): eight mapped generations against a $5.00 budget.

``tests/test_budget_airflow.py`` runs it in real Airflow (LocalExecutor, the mapped tasks
deciding at the same time) against the simulator: each $1.40 video reserves its estimate before
paying, so at most three of the eight may pay, whatever order they run in. The budget comes from
a DAG param through the templated ``budget_usd`` (rendered to the text ``"5.00"``).
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG

from kling_provider.operators.kling import KlingTextToVideoOperator

POLL_INTERVAL = float(os.environ.get("KLING_POLL_INTERVAL", "10"))
MODEL = "klingai/v2-master-text-to-video"

with DAG(dag_id="kling_budget", schedule=None, start_date=datetime(2026, 1, 1), catchup=False,
         params={"budget": "5.00"}, default_args={"retries": 0}):
    KlingTextToVideoOperator.partial(
        task_id="generate", model=MODEL, poll_interval=POLL_INTERVAL,
        budget_usd="{{ params.budget }}", budget_period="day",
    ).expand(prompt=[f"A raccoon on a budget, take {n}" for n in range(8)])
