"""The chaos DAG of the production-cluster test (issue 7's acceptance): mapped generations with
``retries=3``, each index with its own create fault, then a download of every video.

Index ``i`` gets ``FAULTS[i % 6]``: the create answer lost after creating, a 502 after creating,
two 429s before creating, a 5xx burst on its polls, nothing, or a definite refusal of its first
create (403, out of credits: nothing created); index ``IN_FLIGHT_INDEX`` answers its create late,
so the test can SIGKILL the Celery worker while that request is in flight. Every ``generate``
task's ``duration`` is a template (``{{ params.duration }}``: 10). ``generate_timeout`` fails on
purpose (its 5 s timeout is shorter than the generation), so the test can clear a *failed* task
whose generation still runs. ``kling_chaos_neighbour`` is another DAG generating the same model
at the same time, so recoveries search usage logs holding strangers' rows.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG

from kling_provider.operators.kling import KlingDownloadVideoOperator, KlingTextToVideoOperator

TASKS = int(os.environ.get("KLING_CHAOS_TASKS", "24"))
IN_FLIGHT_INDEX = 4
IN_FLIGHT_SECONDS = float(os.environ.get("KLING_CHAOS_IN_FLIGHT", "25"))
FAULTS: list[dict[str, Any]] = [
    {"create_drop": True},
    {"create_status": 502},
    {"refuse_before_create": 2},
    {"statuses": [500, 502, 503, 504]},
    {},
    {"refusals": [403]},
]
NEIGHBOURS = int(os.environ.get("KLING_CHAOS_NEIGHBOURS", "6"))


def faults(index: int) -> dict[str, Any]:
    if index == IN_FLIGHT_INDEX:
        return {"create_delay": IN_FLIGHT_SECONDS}
    return FAULTS[index % len(FAULTS)]


with DAG(dag_id="kling_chaos", schedule=None, start_date=datetime(2026, 1, 1), catchup=False,
         max_active_tasks=32, params={"duration": 10},
         default_args={"retries": 3, "retry_delay": timedelta(seconds=2)}):
    videos = KlingTextToVideoOperator.partial(
        task_id="generate", model="klingai/v2-master-text-to-video",
        duration="{{ params.duration }}",
        poll_interval=float(os.environ.get("KLING_POLL_INTERVAL", "10")), timeout=600,
    ).expand_kwargs([
        {"prompt": f"A raccoon, take {i}", "extra_params": {"simulator_faults": faults(i)}}
        for i in range(TASKS)])
    KlingTextToVideoOperator(
        task_id="generate_timeout", model="klingai/v2-master-text-to-video",
        prompt="A raccoon, waited for too briefly", poll_interval=1, timeout=5, retries=0)
    KlingDownloadVideoOperator.partial(
        task_id="download",
        destination="{{ var.value.get('kling_output_dir', '/tmp/kling') }}/chaos/",
    ).expand(generation=videos.output)

with DAG(dag_id="kling_chaos_neighbour", schedule=None, start_date=datetime(2026, 1, 1),
         catchup=False, max_active_tasks=16, default_args={"retries": 3}):
    KlingTextToVideoOperator.partial(
        task_id="generate", model="klingai/v2-master-text-to-video",
        poll_interval=float(os.environ.get("KLING_POLL_INTERVAL", "10")), timeout=600,
    ).expand(prompt=[f"A neighbour's fox, take {i}" for i in range(NEIGHBOURS)])
