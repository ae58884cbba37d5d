"""The simulator's ``GET /v2/logs`` (usage logs), as the AI/ML API publishes it.

One row per create request, written once its video has *finished* (an async video is recorded
then, not when submitted) and ``logs_lag`` more simulated seconds have passed (the analytics
pipeline's delay); failed generations are listed with a zero cost. Rows of no generation here
(``KlingSimulator.add_log_rows``: other callers, rows without ``inference_id``) are listed among
them, filtered by the same rules. Query rules as documented: ``period`` or ``start`` + ``end``
(never both, window at most 92 days), repeated ``model`` / ``status`` parameters (a comma is part
of a name), ``limit`` 1-100, ``offset`` (rows skipped, whatever they hold), newest first, 200
requests per 60 s per key; ``has_more`` is true while rows follow the page.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from kling_provider.testing._billing import CREDITS_PER_USD
from kling_provider.testing._world import log_time

if TYPE_CHECKING:
    from kling_provider.testing._service import Generation
    from kling_provider.testing.simulator import KlingSimulator

RATE_LIMIT = 200
RATE_PERIOD = 60.0
MAX_WINDOW = timedelta(days=92)


class LogsQueryError(ValueError):
    """A query the real endpoint answers 400 for; the message is the API's."""


def _parse_time(value: str, name: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise LogsQueryError(f"Invalid '{name}': {value!r} is not an ISO-8601 date") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def window(query: dict[str, list[str]], now: float) -> tuple[float, float]:
    """The query's time window as epoch seconds."""
    period = query.get("period", [None])[0]
    start, end = query.get("start", [None])[0], query.get("end", [None])[0]
    if period and (start or end):
        raise LogsQueryError("Provide either 'period' or both 'start' and 'end', never both")
    if period:
        found = re.fullmatch(r"([1-9]\d*)([hd])", period)
        if not found:
            raise LogsQueryError(f"Invalid 'period': {period!r}")
        hours = int(found[1]) * (24 if found[2] == "d" else 1)
        if timedelta(hours=hours) > MAX_WINDOW:
            raise LogsQueryError("The window must not exceed 92 days")
        return now - hours * 3600, now
    if not (start and end):
        raise LogsQueryError("Provide either 'period' or both 'start' and 'end'")
    begin, finish = _parse_time(start, "start"), _parse_time(end, "end")
    if finish < begin:
        raise LogsQueryError("'end' must not be earlier than 'start'")
    if finish - begin > MAX_WINDOW:
        raise LogsQueryError("The window must not exceed 92 days")
    return begin.timestamp(), finish.timestamp()


def _int(query: dict[str, list[str]], name: str, default: int, low: int, high: int | None) -> int:
    raw = query.get(name, [str(default)])[0]
    try:
        value = int(raw)
    except ValueError:
        raise LogsQueryError(f"Invalid '{name}': {raw!r}") from None
    if value < low or (high is not None and value > high):
        raise LogsQueryError(f"Invalid '{name}': {value} is out of range")
    return value


def parse_created(value: str) -> float:
    """A row's ``created`` as epoch seconds (0 when unreadable: such a row is never listed)."""
    try:
        return _parse_time(value, "created").timestamp()
    except LogsQueryError:
        return 0.0


def row(sim: KlingSimulator, generation: Generation) -> dict[str, Any]:
    failed = generation.faults.error is not None
    usd = 0.0 if failed else generation.usd
    return {
        "created": log_time(generation.created_at),
        "status": "failed" if failed else "succeeded",
        "origin": "api",
        "model": generation.model,
        "cost": {"usd": round(usd, 9), "credits": round(usd * CREDITS_PER_USD)},
        "tokens": {"input": 0, "output": 0, "total": 0},
        "request_id": f"req-{generation.token[:12]}",
        "inference_id": generation.generation_id,
        "client_request_id": generation.client_request_id,
    }


def page(sim: KlingSimulator, generations: Iterable[Generation],
         query: dict[str, list[str]]) -> dict[str, Any]:
    """The answer to one query (raises :class:`LogsQueryError` for a 400)."""
    begin, end = window(query, sim.service_time())
    statuses = query.get("status", [])
    if any(s not in ("succeeded", "failed") for s in statuses):
        raise LogsQueryError(f"Invalid 'status': {statuses!r}")
    models = query.get("model", [])
    if len(models) > 50:
        raise LogsQueryError("At most 50 'model' values")
    limit = _int(query, "limit", 50, 1, 100)
    offset = _int(query, "offset", 0, 0, None)
    listed = [(g.created_at, row(sim, g)) for g in generations if sim.logged(g)]
    listed += sim.extra_log_rows
    rows = [r for at, r in sorted(listed, key=lambda item: item[0], reverse=True)
            if begin <= at <= end and (not models or r.get("model") in models)
            and (not statuses or r.get("status") in statuses)]
    chunk = rows[offset:offset + limit]
    return {"data": chunk, "pagination": {"limit": limit, "offset": offset, "total": len(rows),
                                          "has_more": offset + len(chunk) < len(rows)}}


def over_limit(calls: list[float], now: float) -> bool:
    """Record one call at ``now`` (monotonic); True when it exceeds 200 per 60 s."""
    calls[:] = [t for t in calls if now - t < RATE_PERIOD]
    if len(calls) >= RATE_LIMIT:
        return True
    calls.append(now)
    return False
