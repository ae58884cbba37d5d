"""Image-to-video: animate a still picture given by URL (Kling v2.1 master, image-to-video).

The image URL comes from a DAG param, so a run can be triggered for any picture; it is validated
when the task runs, before the paid request.
"""

from __future__ import annotations

from _kling_example_settings import OUTPUT_DIR, POLL_INTERVAL, RUN_FOLDER, START
from airflow.sdk import DAG, Param

from kling_provider.operators.kling import KlingDownloadVideoOperator, KlingImageToVideoOperator

with DAG(dag_id="kling_image_to_video", schedule=None, start_date=START, catchup=False,
         tags=["kling", "example"], doc_md=__doc__,
         params={"image_url": Param("https://upload.wikimedia.org/wikipedia/commons/3/3a/Cat03.jpg",
                                    type="string", format="uri"),
                 "prompt": Param("The cat slowly turns its head and blinks", type="string")}):
    animate = KlingImageToVideoOperator(
        task_id="animate",
        image_url="{{ params.image_url }}",
        prompt="{{ params.prompt }}",
        duration=5,
        cfg_scale=0.5,
        poll_interval=POLL_INTERVAL,
    )
    KlingDownloadVideoOperator(
        task_id="download",
        generation=animate.output,
        destination=f"{OUTPUT_DIR}/image-to-video/{RUN_FOLDER}/",
    )
