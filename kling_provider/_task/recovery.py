"""Recovering an uncertain submission: what a try does, and finding its generation in the logs.

Used by :mod:`kling_provider._task.submission` (which re-exports every name here), and through it
by the operators (``operators/_submission.py`` decides with :func:`decide`,
``operators/_recover.py`` runs the lookups) and the hook that drives them
(:class:`~kling_provider.hooks.kling.KlingHook`, with the same sync/async drivers as
:mod:`kling_provider._api.protocol`). A create whose answer was lost may have paid: the only
trace is its ``X-Client-Request-Id`` in ``GET /v2/logs``, beside the generation id
(``inference_id``), once the video has finished. So the decision table says when to look
instead of paying again, and the lookup pages through the logs as an I/O-free step generator,
within a window and a deadline that allow for clock skew and the logs' lag.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: the decision rules need no HTTP stack
    from kling_provider._api.protocol import ApiRequest, RetryPolicy, Step
    from kling_provider._task.intent import SubmissionRecord
    from kling_provider._task.rate_budget import RateBudget

__all__ = ["CLOCK_SKEW", "LOGS_LAG", "LOGS_PAGE_SIZE", "Action", "LogRow", "Match",
           "build_logs_request", "decide", "logs_window", "lookup_deadline", "lookup_steps",
           "parse_rows", "recover_steps"]

log = logging.getLogger("kling_provider")

#: Rows per logs page (the API's maximum).
LOGS_PAGE_SIZE = 100
#: Clock skew tolerated between this host and the API when filtering the logs by time.
CLOCK_SKEW = timedelta(minutes=5)
#: The logs come from an analytics pipeline: a finished video's row may lag its completion.
LOGS_LAG = timedelta(minutes=5)


# -- the decision -------------------------------------------------------------------------------

class Action(str, enum.Enum):
    """What a try does given the stored record."""

    SUBMIT = "submit"      #: nothing usable stored: write a new intent, then pay
    REATTACH = "reattach"  #: a generation id is stored: check it, wait for it or return it
    RECOVER = "recover"    #: an intent without a generation id: find it in the usage logs


def decide(record: SubmissionRecord | None, *, clear_number: int, now: float,
           wait_seconds: float) -> Action:
    """The decision table (README, "Never paying twice").

    ================================================  ===========================================
    stored record                                     this try
    ================================================  ===========================================
    none                                              SUBMIT
    intent the API refused (nothing created)          SUBMIT (with a new client request id)
    intent, no generation id                          RECOVER (logs lookup, then the policy)
    intent, no generation id, lookup window over,     SUBMIT (the user checked the dashboard and
    task cleared since                                cleared the task: their decision)
    generation id, task not delivered yet             REATTACH (a failed generation: SUBMIT anew)
    generation id, delivered, same clear number       REATTACH (its success was not recorded)
    generation id, delivered, task cleared since      SUBMIT (the user asked for the task again)
    ================================================  ===========================================
    """
    if record is None or record.refused:
        return Action.SUBMIT
    cleared = clear_number != record.clear_number
    if record.generation_id is None:
        if not record.client_request_id:
            return Action.SUBMIT
        expired = now >= lookup_deadline(record.intent_at, wait_seconds)
        return Action.SUBMIT if cleared and expired else Action.RECOVER
    if record.delivered and cleared:
        return Action.SUBMIT
    return Action.REATTACH


def lookup_deadline(intent_at: float, wait_seconds: float) -> float:
    """Until when an intent's generation may still appear in the logs.

    A generation's row is written once it finishes: as long as the task allows a generation to
    take (its ``timeout``), plus the logs' own lag.
    """
    return intent_at + wait_seconds + LOGS_LAG.total_seconds()


# -- the usage logs -----------------------------------------------------------------------------

@dataclass(frozen=True)
class LogRow:
    """One ``GET /v2/logs`` row, the fields recovery uses."""

    client_request_id: str | None
    generation_id: str
    status: str
    model: str
    created: str


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def logs_window(since: float, now: float) -> tuple[str, str]:
    """The ``start``/``end`` of a lookup: from just before the intent to just after now.

    The API refuses windows over 92 days; an intent older than that is searched in the last 92.
    """
    start = since - CLOCK_SKEW.total_seconds()
    end = now + CLOCK_SKEW.total_seconds()
    start = max(start, end - timedelta(days=92).total_seconds() + 60)
    return _iso(start), _iso(end)


def build_logs_request(*, model: str, since: float, now: float, offset: int) -> ApiRequest:
    start, end = logs_window(since, now)
    params = {"start": start, "end": end, "model": model, "limit": str(LOGS_PAGE_SIZE),
              "offset": str(offset)}
    from kling_provider._api.protocol import api_request  # httpx: the record rules need none

    return api_request("logs", "GET", "fetch", params=params, subject=f"usage logs of {model}")


def parse_rows(body: Mapping[str, Any]) -> tuple[list[LogRow], bool, int]:
    """The page's usable rows, whether another page follows, and how many rows it held.

    The next page starts after every row *read*, usable or not (rows without a generation id,
    refused requests, other shapes): counting only the kept rows would read pages that overlap.
    A field of an unexpected type reads as absent rather than failing the lookup.
    """
    data = body.get("data")
    items = data if isinstance(data, list) else []
    rows: list[LogRow] = []
    for item in items:
        if not isinstance(item, Mapping):
            continue
        generation_id = item.get("inference_id")
        if isinstance(generation_id, bool) or not isinstance(generation_id, (str, int)) \
                or not str(generation_id).strip():
            continue
        cri = item.get("client_request_id")
        rows.append(LogRow(client_request_id=cri if isinstance(cri, str) and cri else None,
                           generation_id=str(generation_id).strip(),
                           status=_text(item.get("status")), model=_text(item.get("model")),
                           created=_text(item.get("created"))))
    pagination = body.get("pagination")
    has_more = isinstance(pagination, Mapping) and pagination.get("has_more") is True
    return rows, has_more, len(items)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


Match = Callable[[LogRow], bool]


def lookup_steps(*, model: str, since: float, match: Match, now: Callable[[], float],
                 policy: RetryPolicy, conn_id: str, budget: RateBudget,
                 secrets: tuple[str, ...] = ()) -> Generator[Step, Any, LogRow | None]:
    """Page through the usage logs for ``model`` since ``since``; return the first matching row.

    Rows come newest first and the window starts just before the intent, so the pages read are
    bounded by the account's requests to that model since then.
    """
    offset = 0
    while True:
        wait = budget.reserve(now())
        if wait > 0:
            yield wait
        request = build_logs_request(model=model, since=since, now=now(), offset=offset)
        # the HTTP stack: the record and decision rules need none
        from kling_provider._api.protocol import exchange

        body = yield from exchange(request, policy, conn_id=conn_id, secrets=secrets)
        rows, has_more, read = parse_rows(body)
        for row in rows:
            if match(row):
                return row
        if not has_more:
            return None
        if not read:  # "more" after an empty page: no offset would ever move on
            log.warning("The usage logs answered an empty page at offset %d that claims more "
                        "rows; this lookup ends here.", offset)
            return None
        offset += read


def recover_steps(*, model: str, since: float, match: Match, deadline: float,
                  interval: float, now: Callable[[], float], policy: RetryPolicy, conn_id: str,
                  budget: RateBudget, secrets: tuple[str, ...] = ()
                  ) -> Generator[Step, Any, LogRow | None]:
    """Look the generation up until it shows (its row appears once it finished) or ``deadline``.

    Transient lookup failures (429, 5xx, network) do not end the search; anything else (bad key,
    a 400 from the logs endpoint) is raised, since waiting cannot fix it
    (:func:`~kling_provider._api.protocol.unless_transient`, the rule of the wait too).
    """
    from kling_provider._api.protocol import unless_transient  # httpx: the record rules need none

    lookups = 0
    while True:
        lookups += 1
        row = yield from unless_transient(
            lookup_steps(model=model, since=since, match=match, now=now, policy=policy,
                         conn_id=conn_id, budget=budget, secrets=secrets),
            f"Usage-logs lookup {lookups}", "looking on")
        if row is not None:
            return row
        remaining = deadline - now()
        if remaining <= 0:
            return None
        yield min(interval, remaining)
