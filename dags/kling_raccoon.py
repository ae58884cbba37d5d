"""The first seed example as a DAG: a raccoon in a sequoia forest (Kling v2 master, text-to-video).

Submits the generation, waits in the triggerer (deferrable, no worker slot held), then downloads
the MP4 into ``<kling_output_dir>/raccoon/<run id>/``. ``make demo`` runs it.
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG

from kling_provider.operators.kling import KlingDownloadVideoOperator, KlingTextToVideoOperator

# Real generations take 5-14 minutes. POLL_INTERVAL is the longest gap between two polls; the adaptive
# schedule places polls around the model's expected finish. `make demo` shortens it for the simulator.
POLL_INTERVAL = float(os.environ.get("KLING_POLL_INTERVAL", "60"))
# Downloads go under the Airflow Variable `kling_output_dir`, one folder per run.
OUTPUT_DIR = "{{ var.value.get('kling_output_dir', '/tmp/kling') }}"
RUN_FOLDER = "{{ run_id | replace(':', '_') | replace('+', '_') }}"

with DAG(dag_id="kling_raccoon", schedule=None, start_date=datetime(2026, 1, 1), catchup=False,
         tags=["kling", "example"], doc_md=__doc__):
    generate = KlingTextToVideoOperator(
        task_id="generate",
        model="klingai/v2-master-text-to-video",
        prompt="A cheerful white raccoon running through a sequoia forest",
        aspect_ratio="16:9",
        duration=5,
        cfg_scale=0.9,
        poll_interval=POLL_INTERVAL,
    )
    KlingDownloadVideoOperator(
        task_id="download",
        generation=generate.output,
        destination=f"{OUTPUT_DIR}/raccoon/{RUN_FOLDER}/",
    )
