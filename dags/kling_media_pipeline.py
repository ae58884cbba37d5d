"""A scheduled media pipeline: prompts -> Kling videos -> downloads -> probe + thumbnail.

Every day it reads the prompts (the Airflow Variable ``kling_prompts``, a JSON list, or else
``kling_prompts.txt`` beside this file), maps one deferrable generation per prompt, downloads
each MP4 into ``<kling_output_dir>/pipeline/<day>/<generation uuid>.mp4`` (each download updates
the ``kling://videos`` Asset, which schedules ``kling_video_catalog``), then probes every video
with ffprobe and extracts a thumbnail with ffmpeg. Without ffmpeg the probe task skips, saying why.

The day is ``dag_run.run_after``, which every run has, so a run triggered through the REST API or
by hand (no logical date, no ``{{ ds }}`` in Airflow 3) stores its videos like a scheduled one;
files named after their generation never collide, however many runs share the day.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from airflow.providers.common.compat.sdk import AirflowSkipException
from airflow.sdk import DAG, Variable, task

from kling_provider.media import MediaToolMissingError, local_path, probe_video, thumbnail
from kling_provider.operators.kling import KlingDownloadVideoOperator, KlingTextToVideoOperator

# Real generations take 5-14 minutes. POLL_INTERVAL is the longest gap between two polls; the adaptive
# schedule places polls around the model's expected finish. `make demo` shortens it for the simulator.
POLL_INTERVAL = float(os.environ.get("KLING_POLL_INTERVAL", "60"))
# Downloads go under the Airflow Variable `kling_output_dir`, one folder per day.
OUTPUT_DIR = "{{ var.value.get('kling_output_dir', '/tmp/kling') }}"
DAY = "{{ dag_run.run_after | ds }}"
PROMPTS_FILE = Path(__file__).with_name("kling_prompts.txt")

with DAG(dag_id="kling_media_pipeline", schedule="@daily", start_date=datetime(2026, 1, 1),
         catchup=False, max_active_runs=1, tags=["kling", "example", "media"], doc_md=__doc__):

    @task
    def load_prompts() -> list[str]:
        """Prompts from the Variable if set, else from the file beside the DAG."""
        configured = Variable.get("kling_prompts", default=None)
        if configured:
            prompts = json.loads(configured)
        else:
            lines = PROMPTS_FILE.read_text().splitlines()
            prompts = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
        if not prompts:
            raise AirflowSkipException("No prompts configured: nothing to generate today.")
        return [str(p) for p in prompts]

    generate = KlingTextToVideoOperator.partial(
        task_id="generate", duration=5, poll_interval=POLL_INTERVAL,
    ).expand(prompt=load_prompts())

    download = KlingDownloadVideoOperator.partial(
        task_id="download",
        destination=f"{OUTPUT_DIR}/pipeline/{DAY}/",
    ).expand(generation=generate.output)

    @task
    def probe(downloaded: dict[str, Any]) -> dict[str, Any]:
        """ffprobe (duration, resolution, codec) and a thumbnail, stored beside the video."""
        path = local_path(str(downloaded["uri"]))
        if path is None:
            raise AirflowSkipException(f"{downloaded['uri']} is not a local file: not probed.")
        try:
            info = probe_video(path)
            info["thumbnail"] = str(thumbnail(path))
        except MediaToolMissingError as exc:
            raise AirflowSkipException(str(exc)) from exc
        info.update(uri=downloaded["uri"], generation_id=downloaded.get("generation_id"))
        path.with_suffix(".probe.json").write_text(json.dumps(info, indent=2))
        return info

    probe.expand(downloaded=download.output)
