"""The DAG of the videos page's reconciliation test: a spend report with its recorded rows.

``tests/test_gallery_browser.py`` triggers it after the raccoon's run with ``recorded`` in the
run's conf (rows of day, model, USD, as a SQL task over the page's summary would give them:
docs/spend.rst); the report's ``kling_spend_report`` XCom is what the page shows.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from kling_provider.operators.spend_report import KlingSpendReportOperator

with DAG(dag_id="kling_spend_report", schedule=None, start_date=datetime(2026, 1, 1),
         catchup=False, params={"recorded": []}, render_template_as_native_obj=True,
         default_args={"retries": 0}):
    KlingSpendReportOperator(task_id="report", recorded="{{ params.recorded }}", days=2)
