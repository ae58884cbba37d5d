"""The DAG of the running-total test (issue 18): mapped variants, then two more generations.

``tests/test_run_total_airflow.py`` runs it in real Airflow and reads each task's spend line:
the two mapped variants end in the triggerer first, then ``ends_in_triggerer`` (its line is
written by the triggerer, which reads the mapped results one map index at a time), then
``resumes_on_worker`` (a worker reads them in one request per task id). Each $1.40.
``download`` stores the video of ``ends_in_triggerer`` from its ``output``: what a task that ended
in the triggerer returned, which Airflow 3.3.2 gives back to a downstream task as JSON text.
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG

from kling_provider.operators.kling import KlingDownloadVideoOperator, KlingTextToVideoOperator

POLL_INTERVAL = float(os.environ.get("KLING_POLL_INTERVAL", "10"))
MODEL = "klingai/v2-master-text-to-video"

with DAG(dag_id="kling_run_total", schedule=None, start_date=datetime(2026, 1, 1),
         catchup=False, default_args={"retries": 0}):
    variants = KlingTextToVideoOperator.partial(
        task_id="variants", model=MODEL, poll_interval=POLL_INTERVAL, end_from_trigger=True,
    ).expand(prompt=["A raccoon, variant 0", "A raccoon, variant 1"])
    in_triggerer = KlingTextToVideoOperator(
        task_id="ends_in_triggerer", model=MODEL, prompt="A raccoon, after the variants",
        poll_interval=POLL_INTERVAL, end_from_trigger=True)
    on_worker = KlingTextToVideoOperator(
        task_id="resumes_on_worker", model=MODEL, prompt="A raccoon, last",
        poll_interval=POLL_INTERVAL)
    download = KlingDownloadVideoOperator(
        task_id="download", generation=in_triggerer.output,
        destination="{{ var.value.get('kling_output_dir', '/tmp/kling') }}/run_total/")
    variants >> in_triggerer >> on_worker
