"""Submit without waiting, then wait with the deferrable sensor, then download by generation id.

The pattern for long queues: the submit task ends right after the POST (its id is in XCom), and
the sensor waits in the triggerer. The sensor could equally live in another DAG.
"""

from __future__ import annotations

from _kling_example_settings import OUTPUT_DIR, POLL_INTERVAL, RUN_FOLDER, START
from airflow.sdk import DAG

from kling_provider.operators.kling import KlingDownloadVideoOperator, KlingTextToVideoOperator
from kling_provider.sensors.kling import KlingGenerationSensor

with DAG(dag_id="kling_submit_then_sense", schedule=None, start_date=START, catchup=False,
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
