"""What the download operator does on a worker, and the one way a task stores a video.

:class:`~kling_provider.operators.kling.KlingDownloadVideoOperator`'s entry point imports this
module on first use (never while a DAG file is parsed). :func:`store_video` is also the
generate operators' ``download_to`` (:mod:`._generate`): both emit the Asset event, so the
videos page lists a video stored by either.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from kling_provider._checks import check_destination, check_max_bytes
from kling_provider._storage.lineage import operator_lineage
from kling_provider._task.result import (
    VIDEO_URL_XCOM_KEY,
    asset_extra,
    download_result,
    generation_result,
    stored_result,
)
from kling_provider.exceptions import KlingError, KlingValidationError
from kling_provider.types import Stage

if TYPE_CHECKING:
    from airflow.sdk import Asset, Context

    from kling_provider._task.result import DownloadResult
    from kling_provider.hooks.kling import KlingHook
    from kling_provider.operators.kling import KlingDownloadVideoOperator

__all__ = ["execute", "lineage", "store_video"]


def store_video(context: Context, hook: KlingHook, info: Mapping[str, Any], destination: Any, *,
                asset: Asset | None, overwrite: bool = False,
                max_bytes: int | None = None) -> DownloadResult:
    """Download the video ``info`` (a generation's result) names into ``destination`` and put the
    copy on ``asset``'s event: the one path of the download operator and of ``download_to``, so
    the videos page lists a video stored by either as stored (it serves only an event's file)."""
    stored = hook.download_video(str(info["video_url"]), destination,
                                 expected_size=info.get("file_size"),
                                 file_name=info.get("file_name"),
                                 generation_id=info.get("generation_id"),
                                 overwrite=overwrite, max_bytes=max_bytes)
    result = download_result(info, uri=stored.uri, size=stored.size, downloaded=stored.downloaded)
    if asset is not None:
        context["outlet_events"][asset].extra = asset_extra(result)
    return result


def execute(task: KlingDownloadVideoOperator, context: Context) -> dict[str, Any]:
    check_max_bytes(task.max_bytes, task_id=task.task_id)
    check_destination("destination", task.destination, task_id=task.task_id)
    hook = task.hook
    info = _source(task, hook)
    if not info.get("video_url"):
        raise KlingError(f"Task {task.task_id!r}: no video URL to download in {info!r}.")
    result = store_video(context, hook, info, task.destination, asset=task.asset,
                         overwrite=task.overwrite, max_bytes=task.max_bytes)
    context["ti"].xcom_push(key=VIDEO_URL_XCOM_KEY, value=info["video_url"])
    task._lineage = ([str(info["video_url"])], [result["uri"]])
    return dict(result)


def lineage(task: KlingDownloadVideoOperator) -> Any:
    """OpenLineage facets: the video URL in, the stored copy out."""
    inputs, outputs = task._lineage
    return operator_lineage(inputs, outputs)


def _source(task: KlingDownloadVideoOperator, hook: KlingHook) -> dict[str, Any]:
    if task.generation is not None:
        generation = stored_result(task.generation)
        if not isinstance(generation, Mapping):
            raise KlingValidationError(
                f"Invalid parameter 'generation'={task.generation!r}: expected the dict a "
                "Kling generate operator or sensor returns.")
        return dict(generation)
    if task.generation_id is not None:
        generation = hook.get_generation(task.generation_id,
                                         endpoint_family=task.endpoint_family)
        # A completed answer still without its URL is refused below, naming that.
        if generation.stage not in (Stage.DONE, Stage.AWAITING_URL):
            raise KlingError(f"Generation {task.generation_id!r} is {generation.status!r}, "
                             "not completed: nothing to download yet.")
        return dict(generation_result(generation, model=None, family=task.endpoint_family))
    return {"video_url": task.video_url}
