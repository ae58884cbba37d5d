"""The second seed example as a DAG: an evil dragon (Kling v2.1 master, text-to-video).

Like the seed, only the prompt is given: the API's defaults choose ratio, duration and scale.
The video is downloaded in the same task with ``download_to``.
"""

from __future__ import annotations

from _kling_example_settings import OUTPUT_DIR, POLL_INTERVAL, RUN_FOLDER, START
from airflow.sdk import DAG

from kling_provider.operators.kling import KlingTextToVideoOperator

DRAGON = (
    "A menacing evil dragon appears in a distance above the tallest mountain, then rushes toward "
    "the camera with its jaws open, revealing massive fangs. We see it's coming."
)

with DAG(dag_id="kling_dragon", schedule=None, start_date=START, catchup=False,
         tags=["kling", "example"], doc_md=__doc__):
    KlingTextToVideoOperator(
        task_id="generate",
        model="klingai/v2.1-master-text-to-video",
        prompt=DRAGON,
        poll_interval=POLL_INTERVAL,
        download_to=f"{OUTPUT_DIR}/dragon/{RUN_FOLDER}/",
    )
