"""The DAG of the worker-starts test (issue 9): one task per way of waiting, in one run.

``tests/test_worker_starts.py`` runs it in real Airflow and counts, per task, how many times a
worker started it (the execution API's ``PATCH .../run`` answered 200):

- ``resumes_on_worker``: the default deferrable generate (submit on a worker, resume on one);
- ``ends_in_triggerer``: ``end_from_trigger=True``, so a success ends in the triggerer;
- ``mapped_ends_in_triggerer``: the same, mapped over two prompts;
- ``fails_on_worker``: ``end_from_trigger=True``, but the generation fails, so a worker resumes
  it to fail with the API's message (and to retry, when retries are set);
- ``submit`` then ``sensor_in_triggerer``: the sensor starts in the triggerer and ends there.
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG

from kling_provider.operators.kling import KlingTextToVideoOperator
from kling_provider.sensors.kling import KlingGenerationSensor

POLL_INTERVAL = float(os.environ.get("KLING_POLL_INTERVAL", "10"))
MODEL = "klingai/v2-master-text-to-video"
MODERATED = {"simulator_faults": {"error": {"name": "moderation_error",
                                            "message": "The prompt was refused"}}}

with DAG(dag_id="kling_worker_starts", schedule=None, start_date=datetime(2026, 1, 1),
         catchup=False, default_args={"retries": 0}):
    KlingTextToVideoOperator(task_id="resumes_on_worker", model=MODEL, prompt="A raccoon, resumed",
                             poll_interval=POLL_INTERVAL)
    KlingTextToVideoOperator(task_id="ends_in_triggerer", model=MODEL, prompt="A raccoon, ended",
                             poll_interval=POLL_INTERVAL, end_from_trigger=True)
    KlingTextToVideoOperator.partial(
        task_id="mapped_ends_in_triggerer", model=MODEL, poll_interval=POLL_INTERVAL,
        end_from_trigger=True,
    ).expand(prompt=["A raccoon, mapped 0", "A raccoon, mapped 1"])
    KlingTextToVideoOperator(task_id="fails_on_worker", model=MODEL, prompt="A raccoon, refused",
                             poll_interval=POLL_INTERVAL, end_from_trigger=True,
                             extra_params=MODERATED)
    submit = KlingTextToVideoOperator(task_id="submit", model=MODEL, prompt="A raccoon, sensed",
                                      wait_for_completion=False)
    sensor = KlingGenerationSensor(
        task_id="sensor_in_triggerer",
        # map_indexes=-1: rendered in the triggerer, whose Airflow 3.3.2 supervisor refuses the
        # "all map indexes" XCom read that a bare xcom_pull(task_ids=...) sends.
        generation_id="{{ ti.xcom_pull(task_ids='submit', map_indexes=-1)['generation_id'] }}",
        poke_interval=POLL_INTERVAL, start_from_trigger=True, end_from_trigger=True)
    submit >> sensor
