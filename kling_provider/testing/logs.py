"""The simulator's ``GET /v2/logs`` (usage logs), as the AI/ML API publishes it.

One row per create request, written once its video has *finished* (an async video is recorded
then, not when submitted); failed generations are listed with a zero cost. Query rules as
documented: ``period`` or ``start`` + ``end`` (never both, window at most 92 days), repeated
``model`` / ``status`` parameters (a comma is part of a name), ``limit`` 1-100, ``offset``,
newest first, 200 requests per 60 s per key.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kling_provider.testing.simulator import KlingSimulator, _Generation

RATE_LIMIT = 200
RATE_PERIOD = 60.0
MAX_WINDOW = timedelta(days=92)
#: What the service charges per credit in the simulator's world (usd = credits * this).
USD_PER_CREDIT = 0.0000021


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


def row(sim: KlingSimulator, generation: _Generation) -> dict[str, Any]:
    failed = generation.faults.error is not None
    credits = 0 if failed else (120000 if generation.duration >= 10 else 60000)
    created = datetime.fromtimestamp(generation.created_at, timezone.utc)
    return {
        "created": created.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "status": "failed" if failed else "succeeded",
        "origin": "api",
        "model": generation.model,
        "cost": {"usd": round(credits * USD_PER_CREDIT, 9), "credits": credits},
        "tokens": {"input": 0, "output": 0, "total": 0},
        "request_id": f"req-{generation.token[:12]}",
        "inference_id": generation.generation_id,
        "client_request_id": generation.client_request_id,
    }


def page(sim: KlingSimulator, generations: Iterable[_Generation],
         query: dict[str, list[str]]) -> dict[str, Any]:
    """The answer to one query (raises :class:`LogsQueryError` for a 400)."""
    begin, end = window(query, sim.wall_clock())
    statuses = query.get("status", [])
    if any(s not in ("succeeded", "failed") for s in statuses):
        raise LogsQueryError(f"Invalid 'status': {statuses!r}")
    models = query.get("model", [])
    if len(models) > 50:
        raise LogsQueryError("At most 50 'model' values")
    limit = _int(query, "limit", 50, 1, 100)
    offset = _int(query, "offset", 0, 0, None)
    rows = [row(sim, g) for g in generations
            if sim._finished(g) and begin <= g.created_at <= end
            and (not models or g.model in models)]
    rows = [r for r in rows if not statuses or r["status"] in statuses]
    rows.sort(key=lambda r: str(r["created"]), reverse=True)
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
