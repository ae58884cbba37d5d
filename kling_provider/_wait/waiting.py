"""Waiting for a generation: the I/O-free step generators behind every waiting path.

The trigger, the worker polling of ``deferrable=False`` and the sensor all run :func:`wait_steps`
through the hook's drivers, so they poll on the same schedule
(:class:`~kling_provider._wait.schedule.PollSchedule`) and treat answers the same way. How long to
expect comes from :func:`expectation_steps`: live ``/models/metrics`` figures cached per process,
else the documented table (:mod:`kling_provider._wait.timings`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from typing import Any

from kling_provider._api.protocol import (
    RetryPolicy,
    Step,
    api_request,
    exchange,
    fetch_steps,
    generation_failed,
    log,
    unless_transient,
)
from kling_provider._checks import wait_seconds
from kling_provider._wait import timings as _timings
from kling_provider._wait.schedule import PollSchedule, PollScheduleKind, phase_of
from kling_provider.exceptions import KlingError, KlingTimeoutError, KlingValidationError
from kling_provider.types import Generation, Stage

#: One attempt, no backoff: live timings only refine the schedule, the wait never waits for them.
METRICS_POLICY = RetryPolicy(max_attempts=1)


def expectation_steps(model: str | None, duration: int | None, cache: _timings.MetricsCache, *,
                      now: Callable[[], float], conn_id: str,
                      live: bool = True) -> Generator[Step, Any, _timings.Expectation]:
    """How long ``model`` should take: live ``/models/metrics`` (cached), else the documented figure.

    The cache entry is claimed before the request, so thousands of waits starting together in
    one triggerer send one request per model, and the others use the figures they already have.
    """
    if live and model and cache.due(model, now()):
        previous = cache.entries.get(model, (0.0, None))[1]
        cache.store(model, previous, now())
        request = api_request("metrics", "GET", "metrics", params={"aliases": model},
                              subject=model)
        try:
            body = yield from exchange(request, METRICS_POLICY, conn_id=conn_id)
        except KlingError as exc:
            log.info("Live timings of %s unavailable (%s); using the documented figures.",
                     model, type(exc).__name__)
        else:
            cache.store(model, _timings.live_expectation(body, model), now())
    return cache.expectation(model, duration)


def schedule_steps(kind: PollScheduleKind, generation_id: str, *, started_at: float,
                   poll_interval: float, model: str | None, duration: int | None,
                   timings: _timings.MetricsCache, now: Callable[[], float], conn_id: str,
                   live: bool = True) -> Generator[Step, Any, PollSchedule]:
    """The poll schedule of one wait, counted from ``started_at``: the one set-up of the
    trigger's, the worker's and the sensor's polls. An adaptive one is placed around when
    ``model`` (default: the one the generation id names) should finish and shifted by the
    generation's own phase; a fixed one needs no expectation (and asks for none)."""
    expectation = None
    if kind == "adaptive":
        expectation = yield from expectation_steps(
            model or _timings.model_from_generation_id(generation_id), duration, timings,
            now=now, conn_id=conn_id, live=live)
    return PollSchedule(kind, started_at, float(poll_interval), expectation,
                        phase_of(generation_id))


def wait_steps(family: str, generation_id: str, *, poll_interval: float, deadline: float,
               now: Callable[[], float], policy: RetryPolicy, conn_id: str,
               secrets: tuple[str, ...] = (), poll_schedule: PollScheduleKind = "adaptive",
               started_at: float | None = None, model: str | None = None,
               duration: int | None = None, timings: _timings.MetricsCache | None = None,
               live_timings: bool = True) -> Generator[Step, Any, Generation]:
    """Poll until the generation finishes or the absolute ``deadline`` (epoch seconds) passes.

    Polls follow :class:`~kling_provider._wait.schedule.PollSchedule` (``poll_interval`` is its longest
    gap), counted from ``started_at`` (the submission; default: now). ``model`` (default: the one
    the generation id names) and ``duration`` place the adaptive polls.

    Transient failures (network, 429, 5xx after a fetch's own retries) do not end the wait: a
    generation that was paid for keeps being polled until the deadline. Only a terminal answer,
    an auth/credit/404 error or the deadline end it. A completed generation without a video URL
    is not trusted as done yet (the URL can lag the status) and is polled again.
    """
    poll_interval = wait_seconds("poll_interval", poll_interval)
    if not isinstance(deadline, (int, float)) or not math.isfinite(deadline):
        raise KlingValidationError(
            f"Invalid parameter 'deadline'={deadline!r}: must be finite epoch seconds.")
    model = model or _timings.model_from_generation_id(generation_id)
    schedule = yield from schedule_steps(
        poll_schedule, generation_id, started_at=now() if started_at is None else started_at,
        poll_interval=poll_interval, model=model, duration=duration,
        timings=timings if timings is not None else _timings.MetricsCache(), now=now,
        conn_id=conn_id, live=live_timings)
    # Only for the progress lines of a fixed schedule, which places no poll from it (pure).
    expected = schedule.expectation or _timings.documented_expectation(model, duration)
    first = min(schedule.first_delay(now()), deadline - now())
    if first > 0:
        yield first
    polls = 0
    while True:
        polls += 1
        retry_soon = False
        status: str | None = None  # set when this poll's progress line is due
        generation = yield from unless_transient(
            fetch_steps(family, generation_id, policy, conn_id=conn_id, secrets=secrets),
            f"Poll {polls} of generation {generation_id}", "polling on")
        if generation is not None:
            stage = generation.stage
            if stage is Stage.DONE:
                return generation
            if stage is Stage.FAILED:
                raise generation_failed(generation)
            if stage is Stage.UNKNOWN:
                log.warning("Generation %s reports unknown status %r; polling on until the "
                            "deadline.", generation_id, generation.status)
            elif stage is Stage.AWAITING_URL:
                retry_soon = True
                log.warning("Generation %s is completed but has no video URL yet; polling on.",
                            generation_id)
            else:
                status = generation.status
            # Not kept across the sleep: a triggerer holds thousands of waits, and every object
            # they keep (the answer's whole body here) lengthens each full garbage collection.
            del generation
        remaining = deadline - now()
        if remaining <= 0:
            raise KlingTimeoutError(
                f"Generation {generation_id!r} did not finish before the deadline "
                f"({polls} polls). It may still complete and is not lost: wait for it with "
                "KlingGenerationSensor(generation_id=...) or a larger timeout."
            )
        delay = schedule.delay_after_poll(now())
        delay = min(min(delay, URL_LAG_RECHECK) if retry_soon else delay, remaining)
        if status is not None:
            log_progress(generation_id, status, polls=polls,
                         elapsed=now() - schedule.started_at, expected=expected,
                         next_poll=delay)
        yield delay


def log_progress(generation_id: str, status: str, *, polls: int, elapsed: float,
                 expected: _timings.Expectation, next_poll: float) -> None:
    """One info line per poll (never per unit of time): status, time since submission, the
    expected finish window and when the next poll is."""
    late = ": running late" if elapsed > expected.late else ""
    window = (f"expected done {seconds_text(expected.early)}-{seconds_text(expected.late)} in, "
              f"{expected.source} times{late}")
    log.info("Generation %s is %s (poll %d, %s in; %s; next poll in %s)", generation_id, status,
             polls, seconds_text(elapsed), window, seconds_text(next_poll))


def seconds_text(seconds: float) -> str:
    """``4 min 10 s``, ``45 s``: durations as a reader of the task log wants them."""
    whole = max(0, round(seconds))
    minutes, rest = divmod(whole, 60)
    if not minutes:
        return f"{rest} s"
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"


#: Seconds before looking again at a completed generation whose video URL is not there yet.
URL_LAG_RECHECK = 5.0
