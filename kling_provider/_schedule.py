"""When to poll a generation: the adaptive schedule (default) and the fixed one. Pure, no I/O.

A Kling generation takes minutes, and the API documents (and measures live) how many. Polling
every 10 s from the first second, like the docs' example loop, spends most GETs on answers that
cannot have changed. The adaptive schedule polls:

1. once early (:data:`EARLY_POLL` after submission, or ``max_gap`` if shorter): moderation
   refusals and bad images fail within seconds, and should not wait for the expected duration;
2. evenly, at most ``max_gap`` apart, until the expected finish window opens;
3. densely across the window ``[early, late]`` of the :class:`~kling_provider._timings.Expectation`
   (where most generations finish, so detection lag stays small);
4. with gaps growing by :data:`BACKOFF` beyond it, up to ``max_gap``.

``max_gap`` is the user's ``poll_interval``: no two polls are ever further apart, so a DAG that
asked for 10 s keeps that promise. The schedule is a function of the time since ``started_at``
only, so a trigger handed to another triggerer resumes exactly where it was. The caller never
polls beyond its deadline (``_waiting.wait_steps`` caps every sleep at the time left).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

# Defined with the parse-time checks (a DAG file parse needs them, not this module).
from kling_provider._checks import DEFAULT_POLL_INTERVAL as DEFAULT_POLL_INTERVAL
from kling_provider._checks import POLL_SCHEDULES as POLL_SCHEDULES
from kling_provider._checks import PollScheduleKind as PollScheduleKind
from kling_provider._checks import check_poll_schedule as check_poll_schedule
from kling_provider._timings import Expectation

#: Seconds after submission of the first adaptive poll (immediate failures).
EARLY_POLL = 10.0
#: Polls spread across the expected finish window.
WINDOW_POLLS = 8
#: Gap bounds inside the window: fine enough for a few seconds' lag, coarse enough to be cheap.
WINDOW_GAP_MIN, WINDOW_GAP_MAX = 3.0, 9.0
#: Growth of the gap per poll past the window.
BACKOFF = 1.3
#: Never poll twice within this many seconds (a poll delayed by retries may overrun the plan).
MIN_GAP = 1.0


@dataclass(frozen=True)
class PollSchedule:
    """When to poll one generation.

    :param kind: ``adaptive`` (placed from ``expectation``) or ``fixed`` (every ``max_gap``).
    :param started_at: epoch seconds the generation was submitted (or the wait began).
    :param max_gap: the longest gap between two polls (the user's ``poll_interval``).
    :param expectation: when the generation should finish (adaptive only).
    """

    kind: PollScheduleKind
    started_at: float
    max_gap: float
    expectation: Expectation | None = None

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
        for offset in self.offsets():
            if offset >= elapsed + min_gap:
                return offset
        raise AssertionError("offsets() is infinite")  # pragma: no cover

    def offsets(self) -> Iterator[float]:
        """Poll times in seconds after ``started_at``: an infinite, increasing sequence."""
        expected = self.expectation
        if self.kind == "fixed" or expected is None:
            k = 0
            while True:
                yield k * self.max_gap
                k += 1
        early = min(EARLY_POLL, self.max_gap)
        yield early
        opens = max(expected.early, early)
        closes = max(expected.late, opens)
        steps = math.ceil((opens - early) / self.max_gap)
        for i in range(1, steps + 1):  # approach: even, within max_gap
            yield early + i * (opens - early) / steps
        gap = min(max((closes - opens) / WINDOW_POLLS, WINDOW_GAP_MIN), WINDOW_GAP_MAX,
                  self.max_gap)
        at = opens
        while at + gap <= closes + gap / 2:  # the window, evenly, ending at or just past `late`
            at += gap
            yield at
        while True:  # the tail: back off to max_gap
            gap = min(gap * BACKOFF, self.max_gap)
            at += gap
            yield at
