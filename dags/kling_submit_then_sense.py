"""Submit without waiting, then wait with the deferrable sensor, then download by generation id.

The pattern for long queues: the submit task ends right after the POST (its id is in XCom), and
the sensor waits in the triggerer. The sensor could equally live in another DAG.
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG

from kling_provider.operators.kling import KlingDownloadVideoOperator, KlingTextToVideoOperator
from kling_provider.sensors.kling import KlingGenerationSensor

# Real generations take 5-14 minutes. POLL_INTERVAL is the longest gap between two polls; the adaptive
# schedule places polls around the model's expected finish. `make demo` shortens it for the simulator.
POLL_INTERVAL = float(os.environ.get("KLING_POLL_INTERVAL", "60"))
# Downloads go under the Airflow Variable `kling_output_dir`, one folder per run.
OUTPUT_DIR = "{{ var.value.get('kling_output_dir', '/tmp/kling') }}"
RUN_FOLDER = "{{ run_id | replace(':', '_') | replace('+', '_') }}"

with DAG(dag_id="kling_submit_then_sense", schedule=None, start_date=datetime(2026, 1, 1), catchup=False,
         tags=["kling", "example"], doc_md=__doc__):
    submit = KlingTextToVideoOperator(
        task_id="submit",
        prompt="Timelapse of clouds rolling over a mountain lake at sunrise",
        duration=5,
        wait_for_completion=False,
    )
    wait = KlingGenerationSensor(
        task_id="wait",
        generation_id="{{ ti.xcom_pull(task_ids='submit')['generation_id'] }}",
        poke_interval=POLL_INTERVAL,
    )
    download = KlingDownloadVideoOperator(
        task_id="download",
        generation_id="{{ ti.xcom_pull(task_ids='submit')['generation_id'] }}",
        destination=f"{OUTPUT_DIR}/sensed/{RUN_FOLDER}/",
    )
    submit >> wait >> download
