"""What a Kling task returns and where it is recorded: the one definition of the task's result.

The generate operators, the sensor and the trigger (when it ends a task itself) return a
:class:`GenerationResult`; the download operator returns a :class:`DownloadResult` and puts
:func:`asset_extra` on the ``kling://videos`` Asset event. The XCom keys, the Asset's name and URI
and the spend field names are a contract with the extra link (``links/``), the videos page
(``gallery/``) and users' DAGs, so they are written here once and read from here.

Parsing a DAG file imports this module (the operator module re-exports :func:`generation_result`
and :func:`asset_extra`), so it imports nothing but the standard library: the generation type is
only read by attribute. Finishing a task (XCom, spend line, metrics) is
:mod:`kling_provider._task.completion`, an execute-time module.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:  # read by attribute only: parsing a DAG file must not load the types module
    from kling_provider.types import Generation

__all__ = [
    "GENERATION_ID_XCOM_KEY",
    "RESULT_XCOM_KEY",
    "SPEND_FIELDS",
    "VIDEOS_ASSET_NAME",
    "VIDEOS_ASSET_URI",
    "VIDEO_URL_XCOM_KEY",
    "CompletedResult",
    "Completion",
    "DownloadResult",
    "GenerationResult",
    "asset_extra",
    "download_result",
    "generation_result",
]

#: XCom of the video URL ("" while in flight): the extra link reads it at every pause and end.
VIDEO_URL_XCOM_KEY = "video_url"
#: XCom of the generation id, pushed right after the create answer (the gallery's in-flight list).
GENERATION_ID_XCOM_KEY = "generation_id"
#: Airflow's key of a task's return value (the result dict below).
RESULT_XCOM_KEY = "return_value"
#: The default Asset the download operator updates (and the videos page reads).
VIDEOS_ASSET_NAME = "kling_videos"
VIDEOS_ASSET_URI = "kling://videos"

#: The spend fields of the generate operators' XCom dict and of the download operator's Asset
#: event extra. Names are a contract with the gallery page and with users' DAGs: keep them.
#: ``credits_used`` and ``usd_spent`` as the API reported them, ``generation_seconds`` from the
#: submission to the completed answer, ``estimated_usd`` the price estimated before the POST.
SPEND_FIELDS = ("credits_used", "usd_spent", "generation_seconds", "estimated_usd")


class GenerationResult(TypedDict):
    """What the generate operators and the sensor return (XCom ``return_value``): small JSON,
    never video bytes. Only a paying task's completion adds ``generation_seconds`` and
    ``estimated_usd``; only ``download_to`` adds ``uri``, ``size`` and ``downloaded``."""

    generation_id: str
    model: str | None
    status: str
    video_url: str | None
    file_name: str | None
    file_size: int | None
    content_type: str | None
    credits_used: float | None
    usd_spent: float | None
    duration: float | None
    endpoint_family: str | None
    prompt: str | None


class CompletedResult(GenerationResult, total=False):
    """A generate task's result once finished on its own (see :class:`GenerationResult`)."""

    generation_seconds: float | None
    estimated_usd: float | None
    uri: str
    size: int
    downloaded: bool


class DownloadResult(TypedDict):
    """What the download operator returns, and what ``download_to`` adds to a generate task's;
    the Asset event extra of either is :func:`asset_extra` of it."""

    uri: str
    size: int
    downloaded: bool
    generation_id: Any
    model: Any
    prompt: Any
    duration: Any
    credits_used: Any
    usd_spent: Any
    generation_seconds: Any
    estimated_usd: Any
    review: Any


@dataclass(frozen=True)
class Completion:
    """What finishing a task needs besides its generation: who asked for it and what it cost.

    ``paying`` is the generate operator (its completion logs the spend line and is counted in
    the metrics), not a sensor waiting on someone else's generation. ``run_tasks`` and
    ``mapped_run_tasks`` name the DAG run's generate tasks (unmapped, mapped) whose results make
    the spend line's running total (:mod:`kling_provider._task.run_results`). ``reservation``
    names the task's budget reservation (a hash, :mod:`kling_provider._task.reservations`), for
    the trigger to release when it ends the task. It travels to the trigger as :meth:`fields`
    (JSON) when the task is to end there.
    """

    model: str | None
    endpoint_family: str | None
    prompt: str | None = None
    paying: bool = False
    submitted_at: float | None = None
    estimated_usd: float | None = None
    run_tasks: tuple[str, ...] = ()
    mapped_run_tasks: tuple[str, ...] = ()
    reservation: str | None = None

    def fields(self) -> dict[str, Any]:
        """The trigger's ``result_fields``: what is not the trigger's own argument already."""
        if not self.paying:
            return {"model": self.model, "endpoint_family": self.endpoint_family}
        return {"model": self.model, "prompt": self.prompt, "paying": True,
                "estimated_usd": self.estimated_usd, "run_tasks": list(self.run_tasks),
                "mapped_run_tasks": list(self.mapped_run_tasks), "reservation": self.reservation}

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any] | None, *, endpoint_family: str | None,
                    submitted_at: float | None) -> Completion:
        """The inverse of :meth:`fields`, given the trigger's own family and submission time."""
        fields = given = fields or {}

        def names(key: str) -> tuple[str, ...]:
            found = given.get(key)
            return tuple(str(t) for t in found) if isinstance(found, list) else ()

        return cls(model=fields.get("model"),
                   endpoint_family=fields.get("endpoint_family", endpoint_family),
                   prompt=fields.get("prompt"), paying=fields.get("paying") is True,
                   submitted_at=submitted_at, estimated_usd=fields.get("estimated_usd"),
                   run_tasks=names("run_tasks"), mapped_run_tasks=names("mapped_run_tasks"),
                   reservation=reservation if isinstance(reservation := given.get("reservation"),
                                                         str) else None)


def stored_result(value: Any) -> Any:
    """A task's result as an XCom read gives it back: the dict itself or, decoded here, that
    dict as JSON text. Airflow 3.3.2 stores the XComs of a task that ended in the triggerer (its
    ``TaskSuccessEvent``'s) encoded twice, so a downstream task reads ``generate.output`` of an
    ``end_from_trigger`` task as text; every reader of a result (the download, the review, the
    spend line's running total) goes through this. Anything else comes back unchanged, for the
    caller to accept or refuse."""
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            decoded = json.loads(value)
        except ValueError:
            return value
        if isinstance(decoded, Mapping):
            return decoded
    return value


def generation_result(generation: Generation, *, model: str | None, family: str | None,
                      prompt: str | None = None) -> GenerationResult:
    """The small JSON dict operators and the sensor return (XCom). Never video bytes."""
    return {
        "generation_id": generation.generation_id,
        "model": model,
        "status": generation.status,
        "video_url": generation.video_url,
        "file_name": generation.file_name,
        "file_size": generation.file_size,
        "content_type": generation.content_type,
        "credits_used": generation.credits_used,
        "usd_spent": generation.usd_spent,
        "duration": generation.duration,
        "endpoint_family": family,
        "prompt": prompt,
    }


def download_result(info: Mapping[str, Any], *, uri: str, size: int,
                    downloaded: bool) -> DownloadResult:
    """The download operator's result: where the copy is, plus what ``info`` (the generation's
    result, or what is known of it) says about the video and its cost."""
    return {"uri": uri, "size": size, "downloaded": downloaded,
            "generation_id": info.get("generation_id"), "model": info.get("model"),
            "prompt": info.get("prompt"), "duration": info.get("duration"),
            "credits_used": info.get("credits_used"), "usd_spent": info.get("usd_spent"),
            "generation_seconds": info.get("generation_seconds"),
            "estimated_usd": info.get("estimated_usd"), "review": info.get("review")}


def asset_extra(result: Mapping[str, Any]) -> dict[str, Any]:
    """The download's Asset event extra: what the video is, where it is, what it cost, and
    who picked it (``review``: a :class:`~kling_provider.operators.review.KlingReviewOperator`
    result's record, when the download was given one).

    Unknown values are left out rather than shown as ``null`` so the extra reads well in the UI.
    """
    fields = ("generation_id", "model", "prompt", "uri", "size", "duration", *SPEND_FIELDS,
              "review")
    return {k: result[k] for k in fields if result.get(k) is not None}
