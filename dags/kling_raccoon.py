"""The first seed example as a DAG: a raccoon in a sequoia forest (Kling v2 master, text-to-video).

Submits the generation, waits in the triggerer (deferrable, no worker slot held), then downloads
the MP4 into ``<kling_output_dir>/raccoon/<run id>/``. ``make demo`` runs it.
"""

from __future__ import annotations

from _kling_example_settings import OUTPUT_DIR, POLL_INTERVAL, RUN_FOLDER, START
from airflow.sdk import DAG

from kling_provider.operators.kling import KlingDownloadVideoOperator, KlingTextToVideoOperator

with DAG(dag_id="kling_raccoon", schedule=None, start_date=START, catchup=False,
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
