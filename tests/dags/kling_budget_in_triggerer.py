"""The DAG of the budget test's second run (issue 20): budgeted generations ending in the triggerer.

``tests/test_budget_airflow.py`` runs it after ``kling_budget`` in the same real Airflow: two
mapped $1.40 videos with a $100.00 budget and ``end_from_trigger=True``, so each task ends in the
triggerer, which must delete the reservation the task wrote before paying (none is left once
the run ends, instead of one per task until its timeout plus an hour).
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG

from kling_provider.operators.kling import KlingTextToVideoOperator

POLL_INTERVAL = float(os.environ.get("KLING_POLL_INTERVAL", "10"))
MODEL = "klingai/v2-master-text-to-video"

with DAG(dag_id="kling_budget_in_triggerer", schedule=None, start_date=datetime(2026, 1, 1),
         catchup=False, default_args={"retries": 0}):
    KlingTextToVideoOperator.partial(
        task_id="generate", model=MODEL, poll_interval=POLL_INTERVAL, end_from_trigger=True,
        budget_usd="100.00", budget_period="day",
    ).expand(prompt=[f"A raccoon ending in the triggerer, take {n}" for n in range(2)])
