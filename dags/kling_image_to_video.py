"""Image-to-video: animate a still picture given by URL (Kling v2.1 master, image-to-video).

The image URL comes from a DAG param, so a run can be triggered for any picture; it is validated
when the task runs, before the paid request.
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG, Param

from kling_provider.operators.kling import KlingDownloadVideoOperator, KlingImageToVideoOperator

# Real generations take 5-14 minutes. POLL_INTERVAL is the longest gap between two polls; the adaptive
# schedule places polls around the model's expected finish. `make demo` shortens it for the simulator.
POLL_INTERVAL = float(os.environ.get("KLING_POLL_INTERVAL", "60"))
# Downloads go under the Airflow Variable `kling_output_dir`, one folder per run.
OUTPUT_DIR = "{{ var.value.get('kling_output_dir', '/tmp/kling') }}"
RUN_FOLDER = "{{ run_id | replace(':', '_') | replace('+', '_') }}"

with DAG(dag_id="kling_image_to_video", schedule=None, start_date=datetime(2026, 1, 1), catchup=False,
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
