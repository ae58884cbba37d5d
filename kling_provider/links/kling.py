"""The "Kling video" extra link: a button in the task view that opens the video in the gallery.

The gallery (the "Kling videos" page, ``kling_provider.gallery``) plays the stored copy and shows
the spend, inside Airflow's navigation; the CDN URL the API returns expires, so it is only the
fallback for a task that knows no generation id (a download given a bare ``video_url``). In
Airflow 3 the worker evaluates ``get_link`` whenever the task pauses or ends (at a deferral too)
and stores the result under the link's own XCom key; the API server only reads that. So a
deferred generate task's link already opens its generation's card, in flight.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from airflow.sdk import BaseOperatorLink
from airflow.sdk.execution_time.xcom import XCom

from kling_provider._task.result import GENERATION_ID_XCOM_KEY as GENERATION_ID_XCOM_KEY
from kling_provider._task.result import RESULT_XCOM_KEY
from kling_provider._task.result import VIDEO_URL_XCOM_KEY as VIDEO_URL_XCOM_KEY
from kling_provider.gallery import gallery_link


def _generation_id(ti_key: Any) -> str | None:
    pushed = XCom.get_value(ti_key=ti_key, key=GENERATION_ID_XCOM_KEY)
    if isinstance(pushed, str) and pushed:
        return pushed
    result = XCom.get_value(ti_key=ti_key, key=RESULT_XCOM_KEY)
    found = result.get("generation_id") if isinstance(result, Mapping) else None
    return found if isinstance(found, str) and found else None


class KlingVideoLink(BaseOperatorLink):
    """The gallery at the task's generation; empty until the task has submitted one."""

    name = "Kling video"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        # The tasks push the URL ("" while in flight) right after submitting: until then there
        # is nothing to open, and no other key is looked up (a missing one logs an error).
        url = XCom.get_value(ti_key=ti_key, key=VIDEO_URL_XCOM_KEY)
        if not isinstance(url, str):
            return ""
        generation_id = _generation_id(ti_key)
        if generation_id:
            return gallery_link(generation_id)  # in flight: its progress; done: its player
        return url if url.startswith(("http://", "https://")) else ""
