"""When to poll a generation: the adaptive schedule (default) and the fixed one. Pure, no I/O.

A Kling generation takes minutes, and the API documents (and measures live) how many. Polling
every 10 s from the first second, like the docs' example loop, spends most GETs on answers that
cannot have changed. The adaptive schedule polls:

1. twice early (:data:`PROBES`): moderation refusals and bad images fail 8-30 s after
   submission, and should not wait for the expected duration;
2. evenly, at most ``max_gap`` apart, until shortly before the expected finish window
   (:data:`LEAD`; a tenth of generations finish up to a fifth early);
3. every :data:`SPARSE_GAP` seconds up to the last :data:`DENSE_SPAN` seconds of the window
   ``[early, late]`` of the :class:`~kling_provider._wait.timings.Expectation`, then every
   :data:`DENSE_GAP`: a generation still running there is the likeliest to finish within the
   next seconds (its chance grows towards the window's end), so that is where polls pay most;
4. past the window, with gaps growing by :data:`BACKOFF` up to :data:`TAIL_GAP` until the slow
   tail ends, then up to ``max_gap``.

``max_gap`` is the user's ``poll_interval``: no two polls are ever further apart, so a DAG that
asked for 10 s keeps that promise. Each generation's polls are shifted by its own fraction
(:func:`phase_of`, from the generation id) of the gap to the next poll, at most
:data:`JITTER_SPAN` seconds: a thousand mapped generations submitted in one second poll spread
over each gap instead of in lockstep, and gaps stay between their neighbours' (never above
``max_gap``). The schedule is a function of the time since ``started_at`` and the generation id
only, so a trigger handed to another triggerer resumes exactly where it was. The caller never
polls beyond its deadline (``_waiting.wait_steps`` caps every sleep at the time left).
``benchmarks/polling.py`` measures the figures behind these constants.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Generator, Iterator
from dataclasses import dataclass

# Defined with the parse-time checks (a DAG file parse needs them, not this module).
from kling_provider._checks import DEFAULT_POLL_INTERVAL as DEFAULT_POLL_INTERVAL
from kling_provider._checks import POLL_SCHEDULES as POLL_SCHEDULES
from kling_provider._checks import PollScheduleKind as PollScheduleKind
from kling_provider._checks import check_poll_schedule as check_poll_schedule
from kling_provider._wait.timings import Expectation

#: Seconds after submission of the early probes (before jitter): immediate failures.
PROBES = (6.0, 16.0)
#: Share of the expected earliest finish before it where the approach gives way to SPARSE_GAP.
LEAD = 0.1
#: Gap from shortly before the window to its dense end.
SPARSE_GAP = 18.0
#: The last seconds of the expected window, polled every DENSE_GAP.
DENSE_SPAN, DENSE_GAP = 45.0, 6.0
#: The longest gap while the slow tail lasts, and the growth of the gap per poll past the window.
TAIL_GAP, BACKOFF = 15.0, 1.3
#: The largest shift of one generation's polls (a fraction of each gap, from its id).
JITTER_SPAN = 10.0
#: Never poll twice within this many seconds (a poll delayed by retries may overrun the plan).
MIN_GAP = 1.0


def phase_of(generation_id: str) -> float:
    """A fraction in ``[0, 1)`` fixed by ``generation_id``: the same in every process and run."""
    digest = hashlib.blake2b(generation_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass(frozen=True)
class PollSchedule:
    """When to poll one generation.

    :param kind: ``adaptive`` (placed from ``expectation``) or ``fixed`` (every ``max_gap``).
    :param started_at: epoch seconds the generation was submitted (or the wait began).
    :param max_gap: the longest gap between two polls (the user's ``poll_interval``).
    :param expectation: when the generation should finish (adaptive only).
    :param phase: this generation's share of each gap its polls are shifted by
        (:func:`phase_of`; adaptive only).
    """

    kind: PollScheduleKind
    started_at: float
    max_gap: float
    expectation: Expectation | None = None
    phase: float = 0.0

    def first_delay(self, now: float) -> float:
        """Seconds from ``now`` (the wait's start) to its first poll."""
        if self.kind == "fixed":
            return 0.0  # like the seed loop: look right away, then every max_gap
        return self._next_offset(now - self.started_at, min_gap=0.0) - (now - self.started_at)

    def delay_after_poll(self, now: float) -> float:
        """Seconds from a poll that ended at ``now`` to the next one."""
        if self.kind == "fixed":
            return self.max_gap
        elapsed = now - self.started_at
        return min(self.max_gap, self._next_offset(elapsed, min_gap=MIN_GAP) - elapsed)

    def _next_offset(self, elapsed: float, *, min_gap: float) -> float:
        # offsets() is infinite and increasing, so next() always finds one: no fallback line.
        return next(offset for offset in self.offsets() if offset >= elapsed + min_gap)

    def offsets(self) -> Iterator[float]:
        """Poll times in seconds after ``started_at``: an infinite, increasing sequence."""
        if self.kind == "fixed" or self.expectation is None:
            return (k * self.max_gap for k in itertools.count())
        return self._jittered(self.expectation)

    def _jittered(self, expected: Expectation) -> Iterator[float]:
        previous = 0.0
        for at, following in itertools.pairwise(self._planned(expected)):
            # Capped so that the first poll, too, comes within max_gap of the one before.
            previous = min(at + self.phase * min(following - at, JITTER_SPAN),
                           previous + self.max_gap)
            yield previous

    def _planned(self, expected: Expectation) -> Iterator[float]:
        """The offsets before jitter."""
        max_gap = self.max_gap
        at = 0.0
        for probe in PROBES:
            at = min(probe, at + max_gap)
            yield at
        at = yield from _evenly(at, max(expected.early * (1 - LEAD), at), max_gap)
        dense = max(expected.late - DENSE_SPAN, at)
        at = yield from _evenly(at, dense, min(SPARSE_GAP, max_gap))
        at = yield from _evenly(at, max(expected.late, at), min(DENSE_GAP, max_gap))
        gap = min(DENSE_GAP, max_gap)
        while True:  # the tail: back off, gently while slow generations still finish
            gap = min(gap * BACKOFF, TAIL_GAP if at < expected.tail else max_gap, max_gap)
            at += gap
            yield at


def _evenly(start: float, end: float, gap: float) -> Generator[float, None, float]:
    """Offsets after ``start`` up to ``end``, evenly, at most ``gap`` apart; returns the last."""
    steps = math.ceil((end - start) / gap - 1e-9)
    for i in range(1, steps + 1):
        yield start + i * (end - start) / steps
    return end if steps else start
