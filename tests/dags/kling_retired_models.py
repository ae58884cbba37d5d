"""Two generate tasks whose models the deprecation feed lists, for ``airflow dags test``: one
withdrawn (the task must fail before any paid request), one deprecated (it runs and warns).

Used by ``tests/test_retirement_airflow.py`` (the simulator, which retires both models, is the
connection).
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from kling_provider.operators.kling import KlingTextToVideoOperator

WITHDRAWN = "klingai/v2-master-text-to-video"
DEPRECATED = "klingai/v2.1-master-text-to-video"

with DAG("kling_retired_models", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    KlingTextToVideoOperator(task_id="withdrawn_model", model=WITHDRAWN, prompt="a fox",
                             duration=5, deferrable=False, poll_interval=0.2)
    KlingTextToVideoOperator(task_id="deprecated_model", model=DEPRECATED, prompt="a fox",
                             duration=5, deferrable=False, poll_interval=0.2)
