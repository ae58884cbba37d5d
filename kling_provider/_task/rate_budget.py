"""The usage logs' rate limit, as one budget every recovery of a process draws from.

Used by the recovery's lookups (:func:`kling_provider._task.recovery.lookup_steps` reserves a
slot before each page) and by the hooks (``hooks/_base.py`` hands :data:`SHARED_LOGS_BUDGET` to
them); re-exported by :mod:`kling_provider._task.submission`. ``GET /v2/logs`` allows 200
requests per 60 s per key: many tasks recovering at once in one worker must wait their turn
rather than spend the key's limit (a 429 would slow every recovery and other callers of the
key alike).
"""

from __future__ import annotations

import threading

__all__ = ["LOGS_RATE_LIMIT", "SHARED_LOGS_BUDGET", "RateBudget"]

#: ``GET /v2/logs``: 200 requests per 60 s per key. Recoveries keep a margin for other callers.
LOGS_RATE_LIMIT = (180, 60.0)


class RateBudget:
    """A token bucket: ``limit`` requests per ``period`` seconds, shared by every lookup of a process.

    Pure arithmetic over the times it is given (no clock of its own), so tests drive it with a
    fake clock; the lock only makes the bookkeeping safe across worker threads.
    """

    def __init__(self, limit: int = LOGS_RATE_LIMIT[0], period: float = LOGS_RATE_LIMIT[1]) -> None:
        self.limit = limit
        self.period = period
        self._tokens = float(limit)
        self._at: float | None = None
        self._lock = threading.Lock()

    def reserve(self, now: float) -> float:
        """Take one request slot; return the seconds to wait before sending it (0: send now)."""
        with self._lock:
            rate = self.limit / self.period
            if self._at is not None:
                self._tokens = min(float(self.limit),
                                   self._tokens + max(0.0, now - self._at) * rate)
            self._at = now
            self._tokens -= 1.0
            return 0.0 if self._tokens >= 0 else -self._tokens / rate


#: The budget every recovery in this process draws from.
SHARED_LOGS_BUDGET = RateBudget()
