"""What the wait trigger's events say: written by the trigger, read by whoever it resumes.

:class:`~kling_provider.triggers.kling.KlingGenerationTrigger` fires one event per wait: the
completed generation, or why the wait ended without one (:func:`error_event`). The generate
operators' and the sensor's ``execute_complete`` read it back with :func:`generation_from_event`,
the one validator. :func:`killed_message` is what a user reads after killing a waiting task.
Pure and light: the operators and the sensor import it when they resume, the trigger at its top.
"""

from __future__ import annotations

from typing import Any

from kling_provider.exceptions import (
    KlingError,
    KlingGenerationFailedError,
    KlingTimeoutError,
)
from kling_provider.types import Generation

__all__ = ["EVENT_STATUSES", "error_event", "generation_from_event", "killed_message"]

EVENT_STATUSES = ("success", "failure", "timeout", "error")


def error_event(base: dict[str, Any], exc: KlingError) -> dict[str, Any]:
    """The event of a wait that ended without a video: the generation failed (with the API's
    reason), the deadline passed, or an error that waiting longer cannot fix (auth, credits,
    unknown id, bad settings)."""
    if isinstance(exc, KlingGenerationFailedError):
        return {**base, "status": "failure", "message": str(exc),
                "error_name": exc.error_name, "error_message": exc.error_message}
    if isinstance(exc, KlingTimeoutError):
        return {**base, "status": "timeout", "message": str(exc)}
    return {**base, "status": "error", "message": str(exc)}


def killed_message(generation_id: str, *, kling_conn_id: str, endpoint_family: str | None,
                   task: Any = None) -> str:
    """What a user reads after killing a task that waited for ``generation_id``."""
    who = ""
    if task is not None and getattr(task, "task_id", None):
        index = getattr(task, "map_index", -1)
        who = (f" (DAG {getattr(task, 'dag_id', '?')!r}, run {getattr(task, 'run_id', '?')!r}, "
               f"task {task.task_id!r}{f', map index {index}' if index not in (-1, None) else ''})")
    family = f", endpoint_family={endpoint_family!r}" if endpoint_family else ""
    return (
        f"Task killed while waiting for Kling generation {generation_id!r}{who}. The AI/ML API "
        "cannot cancel a generation: it keeps running and is billed. Its video will be at the "
        f"URL the API reports when it completes: wait for it with KlingGenerationSensor("
        f"generation_id={generation_id!r}, kling_conn_id={kling_conn_id!r}{family}), download "
        f"it with KlingDownloadVideoOperator(generation_id={generation_id!r}, destination=...), "
        "or find it by this id in the AI/ML API dashboard."
    )


def generation_from_event(event: Any, *, expected_generation_id: str | None = None) -> Generation:
    """Validate a trigger event; return the completed generation or raise the matching error."""
    if not isinstance(event, dict) or event.get("status") not in EVENT_STATUSES:
        raise KlingError(f"Unexpected event from KlingGenerationTrigger: {event!r}")
    generation_id = event.get("generation_id")
    if expected_generation_id is not None and generation_id != expected_generation_id:
        raise KlingError(
            f"Trigger event is for generation {generation_id!r}, expected "
            f"{expected_generation_id!r}: {event!r}"
        )
    status = event["status"]
    message = str(event.get("message") or "")
    if status == "failure":
        raise KlingGenerationFailedError(message, generation_id=str(generation_id),
                                         error_name=event.get("error_name"),
                                         error_message=event.get("error_message"))
    if status == "timeout":
        raise KlingTimeoutError(message)
    if status == "error":
        raise KlingError(message)
    data = event.get("generation")
    if not isinstance(data, dict) or not data.get("video_url"):
        raise KlingError(f"Success event without a generation video URL: {event!r}")
    return Generation.from_dict(data)
