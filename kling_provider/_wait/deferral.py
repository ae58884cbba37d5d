"""Handing a wait to the triggerer: the one builder of ``KlingGenerationTrigger``'s arguments.

The generate operators defer after submitting, the sensor after its first poke, and a sensor
started in the triggerer (``start_from_trigger``) names the trigger when its DAG file is parsed.
All three build the trigger's kwargs with :func:`wait_trigger_kwargs` and the deferral's timeout
with :func:`deferral_timeout`; the operators and the sensor then defer with
:func:`kling_provider.triggers.kling.defer_wait`.

Parsing a DAG file imports this module (the sensor's ``start_from_trigger``, and the operator
module's :data:`DEFERRAL_GRACE`), so it imports nothing of the trigger, the hook or Airflow.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from kling_provider._task.result import Completion

__all__ = ["DEFERRAL_GRACE", "RESUME_METHOD", "WAIT_TRIGGER", "deferral_timeout",
           "video_seconds", "wait_trigger_kwargs"]

#: The deferral outlives the trigger's own deadline by this much, so the trigger's clear timeout
#: event (naming the generation id) wins over Airflow's generic deferral timeout.
DEFERRAL_GRACE = timedelta(minutes=5)
#: The trigger's class path (what Airflow stores and imports in the triggerer).
WAIT_TRIGGER = "kling_provider.triggers.kling.KlingGenerationTrigger"
#: The task method a trigger event resumes (operators and sensor alike).
RESUME_METHOD = "execute_complete"


def video_seconds(duration: Any) -> int | None:
    """The length a prepared request asks for, as the poll schedule reads it; ``None`` for none.

    A catalogue model's duration is already the schema's integer; a model the catalogue lacks
    is sent as given, so anything but a finite positive number is no length here (the schedule
    then uses the documented default), never an error after paying.
    """
    if isinstance(duration, bool):
        return None
    try:
        seconds = float(duration)
    except (TypeError, ValueError, OverflowError):
        return None
    return round(seconds) if math.isfinite(seconds) and 0 < seconds < 3600 else None


def deferral_timeout(wait_seconds: float) -> timedelta:
    """Airflow's bound on a deferral waiting ``wait_seconds`` (the task's ``timeout``)."""
    return timedelta(seconds=wait_seconds) + DEFERRAL_GRACE


def wait_trigger_kwargs(*, kling_conn_id: str, generation_id: str, poll_interval: float,
                        endpoint_family: str | None, poll_schedule: str,
                        deadline: float | None = None, timeout: float | None = None,
                        submitted_at: float | None = None, model: str | None = None,
                        duration: int | None = None,
                        completion: Completion | None = None) -> dict[str, Any]:
    """``KlingGenerationTrigger``'s kwargs; ``completion`` when the task is to end in the
    triggerer on success (what its result takes from outside the generation)."""
    kwargs: dict[str, Any] = {
        "kling_conn_id": kling_conn_id, "generation_id": generation_id,
        "poll_interval": poll_interval, "endpoint_family": endpoint_family,
        "poll_schedule": poll_schedule, "submitted_at": submitted_at, "model": model,
        "duration": duration}
    if deadline is not None:
        kwargs["deadline"] = deadline
    else:
        kwargs["timeout"] = timeout  # counted from the trigger's start (no worker computed it)
    if completion is not None:
        kwargs.update(end_from_trigger=True, result_fields=completion.fields())
    return kwargs
