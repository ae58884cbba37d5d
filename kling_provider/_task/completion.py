"""Finishing a task with its completed generation: the one place that pushes, logs and counts.

Used by every path that ends a task with a video: the generate operators on a worker (after
polling there or resuming from the trigger), the sensor, and the trigger itself when it ends the
task in the triggerer (``end_from_trigger``). Each gives :func:`finish` its own way to push an
XCom (the worker's task instance, or the ``TaskSuccessEvent``'s dict) and its own clock, and
gets back the same result; so a video finished in the triggerer is logged, counted and returned
exactly like one finished on a worker, running total of the DAG run's spend included.

An execute-time module (metrics, spend, URL redaction): the trigger imports it off the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any, cast

from kling_provider import metrics
from kling_provider._api.network import redact_url
from kling_provider._money.spend import run_total, spend_summary
from kling_provider._task.result import (
    VIDEO_URL_XCOM_KEY,
    CompletedResult,
    Completion,
    generation_result,
)
from kling_provider.types import Generation

__all__ = ["Push", "finish"]

#: Pushes one XCom (key, value): ``ti.xcom_push`` on a worker, a dict's ``__setitem__`` in the
#: triggerer (the event carries them).
Push = Callable[[str, Any], None]


def finish(generation: Generation, completion: Completion, *, now: float, push: Push,
           log: logging.Logger | Any, others: Iterable[Any] | None = None,
           where: str = "") -> CompletedResult:
    """The task's result for a completed ``generation``; pushes the video URL XCom, and for a
    paying task logs the spend line (with the DAG run's running total when ``others``, the run's
    other generate results, could be read) and counts the completion in the metrics.

    ``where`` is appended to the completion line (" (task ended in the triggerer)").
    """
    result = cast(CompletedResult, generation_result(
        generation, model=completion.model, family=completion.endpoint_family,
        prompt=completion.prompt))
    seconds = None
    if completion.paying:
        if completion.submitted_at is not None:
            seconds = max(0.0, now - completion.submitted_at)
        result["generation_seconds"] = seconds
        result["estimated_usd"] = completion.estimated_usd
    push(VIDEO_URL_XCOM_KEY, generation.video_url)
    log.info("Generation %s completed: %s%s", generation.generation_id,
             redact_url(generation.video_url or ""), where)
    if completion.paying:
        log.info(spend_summary(
            generation.generation_id, credits_used=generation.credits_used,
            usd_spent=generation.usd_spent, generation_seconds=seconds,
            estimated_usd=completion.estimated_usd,
            run_so_far=None if others is None else run_total(
                others, generation.generation_id, generation.usd_spent)))
        metrics.generation_completed(completion.model, seconds=seconds,
                                     credits_used=generation.credits_used,
                                     usd_spent=generation.usd_spent)
    return result
