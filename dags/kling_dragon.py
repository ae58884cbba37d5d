"""The second seed example as a DAG: an evil dragon (Kling v2.1 master, text-to-video).

Like the seed, only the prompt is given: the API's defaults choose ratio, duration and scale.
The video is downloaded in the same task with ``download_to``.
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG

from kling_provider.operators.kling import KlingTextToVideoOperator

# Real generations take 5-14 minutes. POLL_INTERVAL is the longest gap between two polls; the adaptive
# schedule places polls around the model's expected finish. `make demo` shortens it for the simulator.
POLL_INTERVAL = float(os.environ.get("KLING_POLL_INTERVAL", "60"))
# Downloads go under the Airflow Variable `kling_output_dir`, one folder per run.
OUTPUT_DIR = "{{ var.value.get('kling_output_dir', '/tmp/kling') }}"
RUN_FOLDER = "{{ run_id | replace(':', '_') | replace('+', '_') }}"

DRAGON = (
    "A menacing evil dragon appears in a distance above the tallest mountain, then rushes toward "
    "the camera with its jaws open, revealing massive fangs. We see it's coming."
)

with DAG(dag_id="kling_dragon", schedule=None, start_date=datetime(2026, 1, 1), catchup=False,
         tags=["kling", "example"], doc_md=__doc__):
    KlingTextToVideoOperator(
        task_id="generate",
        model="klingai/v2.1-master-text-to-video",
        prompt=DRAGON,
        poll_interval=POLL_INTERVAL,
        download_to=f"{OUTPUT_DIR}/dragon/{RUN_FOLDER}/",
    )
