"""Airflow metrics of Kling generations, sent through Airflow's own ``Stats``.

Because they go through ``Stats``, whatever the deployment configured receives them: StatsD
(``[metrics] statsd_on``; tags as InfluxDB-style name suffixes with ``statsd_influxdb_enabled``),
Datadog, or OpenTelemetry (``otel_on``, tags as attributes). Names get Airflow's
``statsd_prefix`` / ``otel_prefix`` (``airflow.`` by default). Every metric is tagged ``model``.

=================================  =========  ====================================================
metric                             type       meaning
=================================  =========  ====================================================
``kling.generation.submitted``     counter    a create request was accepted (one paid generation)
``kling.generation.completed``     counter    a generation finished with a video
``kling.generation.failed``        counter    a generation failed or its wait timed out (tag
                                              ``reason``: ``failed`` / ``timeout``)
``kling.generation.duration``      timer      submission to completion (only when known)
``kling.credits_used``             counter    credits the API reported for completed generations
``kling.usd_spent``                counter    USD the API reported for completed generations
``kling.model.retiring``           counter    a task checked a model the deprecation feed lists
                                              (tag ``status``: ``deprecated`` / ``superseded``
                                              / ``withdrawn``), before paying
=================================  =========  ====================================================

Metrics never fail a task: an error while sending one is logged and dropped.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from kling_provider.exceptions import KlingGenerationFailedError, KlingTimeoutError
from kling_provider.types import finite_number

__all__ = ["CREDITS_USED", "DURATION", "GENERATION_COMPLETED", "GENERATION_FAILED",
           "GENERATION_SUBMITTED", "MODEL_RETIRING", "USD_SPENT", "counting_failures",
           "generation_completed", "generation_failed", "generation_submitted", "model_retiring"]

log = logging.getLogger(__name__)

GENERATION_SUBMITTED = "kling.generation.submitted"
GENERATION_COMPLETED = "kling.generation.completed"
GENERATION_FAILED = "kling.generation.failed"
DURATION = "kling.generation.duration"
CREDITS_USED = "kling.credits_used"
USD_SPENT = "kling.usd_spent"
MODEL_RETIRING = "kling.model.retiring"
#: Longer than any wait can be, shorter than ``timedelta`` can hold.
MAX_TIMING_SECONDS = 10 * 365 * 86400.0

#: Where ``Stats`` lives: the Task SDK's (3.2+, initialised by the task runner), then core's.
_STATS_MODULES = ("airflow.sdk.observability.stats", "airflow.observability.stats",
                  "airflow.stats")


def _stats() -> Any:
    for name in _STATS_MODULES:
        try:
            return importlib.import_module(name).Stats
        except (ImportError, AttributeError):
            continue
    return None


def _emit(kind: str, stat: str, value: Any, tags: dict[str, str]) -> None:
    try:
        stats = _stats()
        if stats is None:
            return
        if kind == "timing":
            stats.timing(stat, value, tags=tags)
        else:
            stats.incr(stat, value, tags=tags)
    except Exception:  # a metrics backend must never fail a paid generation's task
        log.debug("Could not send metric %s", stat, exc_info=True)


def _tags(model: str | None, **more: str) -> dict[str, str]:
    return {"model": model or "unknown", **more}


def generation_submitted(model: str | None) -> None:
    _emit("incr", GENERATION_SUBMITTED, 1, _tags(model))


def generation_completed(model: str | None, *, seconds: float | None, credits_used: float | None,
                         usd_spent: float | None) -> None:
    """Count a completed generation; a figure that is not a finite number is left out (it runs
    after paying, in workers and in the triggerer: ``round(inf)`` must not fail the task)."""
    tags = _tags(model)
    _emit("incr", GENERATION_COMPLETED, 1, tags)
    seconds, credits_used, usd_spent = map(finite_number, (seconds, credits_used, usd_spent))
    if seconds is not None and abs(seconds) < MAX_TIMING_SECONDS:
        _emit("timing", DURATION, timedelta(seconds=seconds), tags)
    if credits_used is not None:
        _emit("incr", CREDITS_USED, round(credits_used), tags)
    if usd_spent is not None:
        _emit("incr", USD_SPENT, usd_spent, tags)


def model_retiring(model: str | None, status: str) -> None:
    """Count a model the deprecation feed lists, checked before paying: a dashboard then shows
    the tasks to move before the shutdown date."""
    _emit("incr", MODEL_RETIRING, 1, _tags(model, status=status))


def generation_failed(model: str | None, reason: str) -> None:
    _emit("incr", GENERATION_FAILED, 1, _tags(model, reason=reason))


@contextmanager
def counting_failures(model: str | None) -> Iterator[None]:
    """Count a generation that fails or times out inside the block, then let the error go on."""
    try:
        yield
    except KlingGenerationFailedError:
        generation_failed(model, "failed")
        raise
    except KlingTimeoutError:
        generation_failed(model, "timeout")
        raise
