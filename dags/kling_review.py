"""A human pick before publishing: three variants -> review -> download the chosen one -> poster.

Each run generates three variants of one prompt (the ``prompt`` param, one deferrable generation
per variant), then waits for a reviewer in Airflow's required actions (``KlingReviewOperator``:
no worker slot while it waits). The request links to the Kling videos page's review page, where
the three videos play side by side with their prompts, models and costs.

- The reviewer picks one: it is downloaded under ``<kling_output_dir>/published/<day>/`` (its
  ``kling://videos`` Asset event records who picked it, when, and the note), then given a
  poster frame with ffmpeg (skipped, saying why, without ffmpeg).
- The reviewer picks none, with a note: publishing is skipped and this DAG runs again with the
  note as its prompt (``TriggerDagRunOperator``); an empty note keeps the prompt.
- Nobody answers within a day: nothing is published (``on_timeout="skip"``).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.providers.common.compat.sdk import AirflowSkipException
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, Param, task

from kling_provider.media import MediaToolMissingError, local_path, thumbnail
from kling_provider.operators.kling import (
    KlingDownloadVideoOperator,
    KlingReviewOperator,
    KlingTextToVideoOperator,
)

POLL_INTERVAL = float(os.environ.get("KLING_POLL_INTERVAL", "60"))
OUTPUT_DIR = "{{ var.value.get('kling_output_dir', '/tmp/kling') }}"
DAY = "{{ dag_run.run_after | ds }}"
#: The three takes of one prompt the reviewer chooses between.
STYLES = ("cinematic wide shot", "close-up, shallow depth of field", "handheld, golden hour")
#: The reviewer's note, read by the re-run (an empty note keeps the prompt).
NOTE = "ti.xcom_pull(task_ids='review', key='kling_review')['note']"

with DAG(dag_id="kling_review", schedule=None, start_date=datetime(2026, 1, 1), catchup=False,
         tags=["kling", "example", "review"], doc_md=__doc__,
         params={"prompt": Param("A raccoon surfing a wave at sunset", type="string",
                                 minLength=1, description="What the three variants show")}):

    @task
    def variants(prompt: str) -> list[str]:
        """One prompt per style: what the reviewer compares."""
        return [f"{prompt}, {style}" for style in STYLES]

    generate = KlingTextToVideoOperator.partial(
        task_id="generate", duration=5, poll_interval=POLL_INTERVAL,
    ).expand(prompt=variants("{{ params.prompt }}"))

    review = KlingReviewOperator(
        task_id="review", generations=generate.output,
        subject="Which take of '{{ params.prompt }}' do we publish?",
        body="Run `{{ run_id }}`: three takes, one style each.",
        response_timeout=timedelta(days=1), on_timeout="skip",
        none_task_ids="generate_again")

    publish = KlingDownloadVideoOperator(
        task_id="publish", generation=review.output,
        destination=f"{OUTPUT_DIR}/published/{DAY}/")

    generate_again = TriggerDagRunOperator(
        task_id="generate_again", trigger_dag_id="kling_review",
        conf={"prompt": "{{ " + NOTE + " or params.prompt }}"})

    @task
    def poster(published: Any) -> dict[str, Any]:
        """The published video's poster frame, beside it (``published``: the download's
        result, ``uri`` and ``review`` included)."""
        if (path := local_path(str(published["uri"]))) is None:
            raise AirflowSkipException(f"{published['uri']} is not a local file: no poster.")
        try:
            return {**published, "poster": str(thumbnail(path))}
        except MediaToolMissingError as exc:  # no ffmpeg on this worker
            raise AirflowSkipException(str(exc)) from exc

    review >> [publish, generate_again]
    poster(publish.output)
