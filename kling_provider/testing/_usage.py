"""The simulator's ``GET /v2/usage`` and ``GET /v2/usage/detail``: what a key spent over a window.

As the AI/ML API publishes them (the provider's budget reads the first, its spend report the
second):

- the window is ``period`` (``24h``, ``7d``: a positive integer and ``h`` or ``d``) or both
  ``start`` and ``end`` (ISO-8601, UTC when no offset is given), never both, at most 92 days;
  the answer echoes ``start`` and ``end`` in UTC;
- ``key_prefix`` (the first 8 characters of a key) omitted or the caller's own: the caller's
  spend; another key's: ``403`` unless the caller is a management key
  (:attr:`UsageBook.management_keys`);
- ``/v2/usage/detail`` adds ``models`` (highest spend first) and, with ``group_by`` (``day``,
  ``model``, ``day,model``), ``groups`` whose day boundary follows ``tz`` (a canonical IANA
  name, matched exactly); ``/v2/usage`` answers ``400`` to either;
- ``requests`` counts charged requests; a failed generation is billed nothing, so it shows in a
  group's ``requests.total`` and ``failed`` only.

What counts: the generations this server billed (an async video is billed once it completes,
when the simulator charges it to the balance), each on the key that created it, plus the spend
tests add for the same keys outside this server (:meth:`UsageBook.add_spend`: another
application sharing the key, a dashboard test).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from functools import cache
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo, available_timezones

from kling_provider import _endpoints
from kling_provider.testing._world import log_time

if TYPE_CHECKING:
    from kling_provider.testing.simulator import KlingSimulator

__all__ = ["PATHS", "Charge", "UsageBook", "answer", "key_prefix"]

USAGE_PATH = _endpoints.path("usage")
DETAIL_PATH = _endpoints.path("usage_detail")
PATHS = frozenset({USAGE_PATH, DETAIL_PATH})
#: The longest window the service reports on.
MAX_WINDOW = timedelta(days=92)
_PERIOD = re.compile(r"([1-9][0-9]{0,5})([hd])")
_GROUPINGS = {"day": ("day",), "model": ("model",), "day,model": ("day", "model")}
FORBIDDEN_MESSAGE = ("Reading the usage of another key requires a management key: omit "
                     "key_prefix to read your own key's usage.")


class UsageQueryError(ValueError):
    """A query the service answers with 400 (the message is the answer's)."""


def key_prefix(key: str) -> str:
    """A key's prefix as the dashboard shows it: its first 8 characters."""
    return key[:8]


def bearer(authorization: str) -> str:
    return authorization[7:].strip() if authorization.startswith("Bearer ") else ""


def caller_prefix(authorization: str) -> str:
    """The prefix of the key an ``Authorization`` header carries."""
    return key_prefix(bearer(authorization))


@dataclass(frozen=True)
class Charge:
    """One request on a key's bill: ``usd`` at service epoch ``at`` (``charged=False``: a failed
    request, billed nothing)."""

    at: float
    model: str
    usd: Decimal
    key_prefix: str
    charged: bool = True


@dataclass
class UsageBook:
    """Spend made outside this server and the keys allowed to read other keys' usage."""

    #: Keys that may read any key's usage (``key_prefix`` of another key).
    management_keys: set[str] = field(default_factory=set)
    outside: list[Charge] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_spend(self, usd: Decimal | float | str, *, key: str, model: str, at: float) -> None:
        """Bill ``usd`` to ``key`` for a request of ``model`` at service epoch ``at``, as another
        application using the same key would have been billed."""
        with self._lock:
            self.outside.append(Charge(at, model, Decimal(str(usd)), key_prefix(key)))


def charges(sim: KlingSimulator) -> list[Charge]:
    """Every request billed (or failed) so far: the server's generations and the outside spend."""
    found: list[Charge] = []
    with sim._lock:
        for generation in sim._generations.values():
            if generation.charged and generation.charged_at is not None:
                found.append(Charge(generation.charged_at, generation.model,
                                    Decimal(str(generation.usd)), generation.key_prefix))
            elif generation.faults.error is not None and sim._finished(generation):
                ended = generation.created_at + (
                    sim.queued_seconds + sim._generating(generation)) / sim.time_scale
                found.append(Charge(ended, generation.model, Decimal(0), generation.key_prefix,
                                    charged=False))
    with sim.usage._lock:
        found.extend(sim.usage.outside)
    return found


def _instant(raw: str, name: str) -> datetime:
    try:
        # Python 3.10's fromisoformat does not read a "Z" suffix, which clients send.
        moment = datetime.fromisoformat(raw[:-1] + "+00:00" if raw.endswith(("Z", "z")) else raw)
    except ValueError:
        raise UsageQueryError(f"{name} must be an ISO-8601 timestamp, got {raw!r}") from None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def window(params: Mapping[str, list[str]], now: float) -> tuple[float, float]:
    """The measured window of a query in epoch seconds: ``period`` back from ``now`` (exactly:
    a charge made at ``now`` is in it), or ``start``-``end``."""
    period, start, end = (params.get(k, [None])[0] for k in ("period", "start", "end"))
    if period is not None and (start is not None or end is not None):
        raise UsageQueryError("Provide either period or both start and end, not both")
    if period is not None:
        found = _PERIOD.fullmatch(period)
        if not found:
            raise UsageQueryError(f"period must be a positive integer followed by h or d "
                                  f"(24h, 7d), got {period!r}")
        amount = int(found[1])
        span = timedelta(hours=amount) if found[2] == "h" else timedelta(days=amount)
        if span > MAX_WINDOW:
            raise UsageQueryError("The window must not exceed 92 days")
        return now - span.total_seconds(), now
    elif start is not None and end is not None:
        since, until = _instant(start, "start"), _instant(end, "end")
        if until < since:
            raise UsageQueryError("end must not be earlier than start")
    else:
        raise UsageQueryError("Provide either period or both start and end")
    if until - since > MAX_WINDOW:
        raise UsageQueryError("The window must not exceed 92 days")
    return since.timestamp(), until.timestamp()


@cache
def _zones() -> frozenset[str]:
    return frozenset(available_timezones())


def _number(usd: Decimal) -> float:
    """A JSON number for an exact sum (its shortest float spells the same decimal)."""
    return float(round(usd, 9))


def _groups(billed: Iterable[Charge], keys: tuple[str, ...], zone: ZoneInfo
            ) -> list[dict[str, Any]]:
    buckets: dict[tuple[str, ...], dict[str, Any]] = {}
    for charge in billed:
        label = {"day": datetime.fromtimestamp(charge.at, zone).date().isoformat(),
                 "model": charge.model}
        bucket = buckets.setdefault(tuple(label[k] for k in keys), {
            **{k: label[k] for k in keys}, "spend": Decimal(0),
            "tokens": {"input": 0, "output": 0, "total": 0},
            "requests": {"total": 0, "charged": 0, "succeeded": 0, "failed": 0}})
        counts = bucket["requests"]
        counts["total"] += 1
        if charge.charged:
            bucket["spend"] += charge.usd
            counts["charged"] += 1
            counts["succeeded"] += 1
        else:
            counts["failed"] += 1
    ordered = sorted(buckets.items(), key=lambda kv: (kv[1].get("day", ""), -kv[1]["spend"],
                                                      kv[0]))
    return [{**bucket, "spend": _number(bucket["spend"])} for _, bucket in ordered]


def answer(sim: KlingSimulator, path: str, query: str, authorization: str
           ) -> tuple[int, Any]:
    """(status, body) of a usage request by an authorised caller; an error's body is its
    message."""
    params = parse_qs(query, keep_blank_values=True)
    detail = path == DETAIL_PATH
    allowed = {"period", "start", "end", "key_prefix"} | ({"group_by", "tz"} if detail else set())
    unknown = sorted(set(params) - allowed)
    if unknown:
        extra = " (group_by and tz are accepted on /v2/usage/detail only)" if set(
            unknown) & {"group_by", "tz"} else ""
        return 400, f"Unknown query parameter(s): {', '.join(unknown)}{extra}"
    key = bearer(authorization)
    asked = params.get("key_prefix", [None])[0]
    if asked is not None and asked != key_prefix(key) and key not in sim.usage.management_keys:
        return 403, FORBIDDEN_MESSAGE
    grouping = params.get("group_by", [None])[0]
    tz = params.get("tz", ["UTC"])[0] or ""
    if grouping is not None and grouping not in _GROUPINGS:
        return 400, f"group_by must be one of day, model, day,model; got {grouping!r}"
    if tz not in _zones():
        return 400, f"tz must be a canonical IANA time zone name (Europe/Berlin, UTC), got {tz!r}"
    try:
        since, until = window(params, sim.service_time())
    except UsageQueryError as exc:
        return 400, str(exc)
    prefix = asked if asked is not None else key_prefix(key)
    billed = [c for c in charges(sim) if c.key_prefix == prefix and since < c.at <= until]
    paid = [c for c in billed if c.charged]
    body: dict[str, Any] = {
        "api_key_prefix": asked, "start": log_time(since),
        "end": log_time(until), "spend": _number(sum((c.usd for c in paid),
                                                                 Decimal(0))),
        "currency": "USD", "requests": len(paid)}
    if detail:
        models = _groups(paid, ("model",), ZoneInfo("UTC"))
        body["models"] = [{"model": m["model"], "spend": m["spend"],
                           "requests": m["requests"]["charged"]}
                          for m in sorted(models, key=lambda m: (-m["spend"], m["model"]))]
        if grouping is not None:
            body["groups"] = _groups(billed, _GROUPINGS[grouping], ZoneInfo(tz))
    return 200, body
