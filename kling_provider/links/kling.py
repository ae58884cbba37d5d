"""The "Kling video" extra link: a button in the task view that opens the generated video.

Built from the ``video_url`` XCom the generate operators and the sensor push on completion. In
Airflow 3 the worker evaluates ``get_link`` when the task finishes and stores the result under the
link's own XCom key; the API server only reads that, so the UI needs no connection or API call.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperatorLink
from airflow.sdk.execution_time.xcom import XCom

VIDEO_URL_XCOM_KEY = "video_url"


class KlingVideoLink(BaseOperatorLink):
    """Link to the MP4 of the task's generation; empty until the generation completed."""

    name = "Kling video"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        url = XCom.get_value(ti_key=ti_key, key=VIDEO_URL_XCOM_KEY)
        return url if isinstance(url, str) and url.startswith(("http://", "https://")) else ""
