"""Exactly one paid generation per task: submission intent and recovery, as pure rules.

The API has no idempotency key, no list endpoint and no cancel. What it has: every request may
carry ``X-Client-Request-Id``, and ``GET /v2/logs`` lists requests with that id and the
generation id (``inference_id``) once an async video has finished. So a task

1. writes an *intent* (client request id, model, family, time) to ``task_state_store`` before it
   pays, and sends the POST with that id;
2. writes the generation id into the same record first thing after the answer;
3. on a later try (or after an uncertain answer in the same try) finds an intent without a
   generation id and looks the generation up in the logs instead of paying again.

Everything here is I/O free: the record format, the id derivation, the decision table, the logs
query and its paging as a step generator (driven by :class:`~kling_provider.hooks.kling.KlingHook`
with the same sync/async drivers as :mod:`kling_provider._api.protocol`), and the rate budget all
recoveries of one process share.
"""

from __future__ import annotations

import enum
import hashlib
import logging
import re
import secrets
import threading
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

# Defined where a DAG file parse finds them without loading these rules (parse cost).
from kling_provider import STATE_KEY as STATE_KEY
from kling_provider._checks import ON_UNCERTAIN_SUBMISSION as ON_UNCERTAIN_SUBMISSION
from kling_provider._checks import OnUncertainSubmission as OnUncertainSubmission
from kling_provider._checks import check_on_uncertain_submission as check_on_uncertain_submission
from kling_provider.exceptions import KlingValidationError

if TYPE_CHECKING:  # imported where used: the record and decision rules need no HTTP stack
    from kling_provider._api.protocol import ApiRequest, RetryPolicy, Step

log = logging.getLogger("kling_provider")

#: What the API accepts in the header; anything else is silently dropped (no correlation at all).
_VALID_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_INVALID_CHAR = re.compile(r"[^A-Za-z0-9._:-]")
#: Room left after the task part of an id for the intent suffix (``.t<try>r<n>.<random>``).
_PREFIX_MAX = 96
#: Hex digits of an id's random part: 48 bits, so deployments sharing a key never share an id.
NONCE_HEX = 12
#: ``GET /v2/logs``: 200 requests per 60 s per key. Recoveries keep a margin for other callers.
LOGS_RATE_LIMIT = (180, 60.0)
#: Rows per logs page (the API's maximum).
LOGS_PAGE_SIZE = 100
#: Clock skew tolerated between this host and the API when filtering the logs by time.
CLOCK_SKEW = timedelta(minutes=5)
#: The logs come from an analytics pipeline: a finished video's row may lag its completion.
LOGS_LAG = timedelta(minutes=5)


# -- client request ids -------------------------------------------------------------------------

def task_prefix(dag_id: str, run_id: str, task_id: str, map_index: int | None) -> str:
    """The part of every client request id that names the task instance.

    Readable (``kling:<dag>:<run>:<task>:<map index>``) so a user can search for it in the
    dashboard's logs, and valid for the header whatever the ids contain: characters outside
    ``A-Za-z0-9._:-`` become ``_``, and when that changed anything, or the result is too long,
    it is cut in the middle (the task id and map index stay readable) and a hash of the exact
    ids appended, so two task instances never share a prefix.
    """
    index = -1 if map_index is None else int(map_index)
    raw = f"kling:{dag_id}:{run_id}:{task_id}:{index}"
    clean = _INVALID_CHAR.sub("_", raw)
    if clean == raw and len(raw) <= _PREFIX_MAX:
        return raw
    digest = hashlib.sha256(raw.encode()).hexdigest()[:16]
    room = _PREFIX_MAX - 17
    if len(clean) > room:  # cut in the middle (the run id): the task id and map index stay
        head = room // 3
        clean = f"{clean[:head]}.{clean[len(clean) - (room - head - 1):]}"
    return f"{clean}-{digest}"


def client_request_id(prefix: str, try_number: int, attempt: int = 0, nonce: str = "") -> str:
    """The id of one submission intent: the task prefix, the try, the intent within the try,
    and a random part.

    A new intent always gets a new id (a generation resubmitted after a failure, or after a clear
    that dropped the stored record, is told apart from the earlier one); the same intent keeps
    its id across tries because it is read back from the record, not derived again. The random
    part tells apart two Airflow deployments sharing one key whose DAG, run and task ids are the
    same: it is stored with the intent before the POST, so a recovery still matches it exactly.
    """
    suffix = f".t{int(try_number)}" + (f"r{attempt}" if attempt else "")
    value = prefix + suffix + (f".{nonce}" if nonce else "")
    if not _VALID_ID.fullmatch(value):  # only reachable with a hand-made prefix
        raise KlingValidationError(f"Invalid client request id {value!r}")
    return value


def earlier_try(prefix: str, client_id: str | None, try_number: int) -> bool:
    """Whether ``client_id`` is an intent of this task instance made by a try before this one."""
    if not client_id or not client_id.startswith(prefix + ".t"):
        return False
    found = re.fullmatch(r"(\d+)(?:r\d+)?(?:\.[0-9a-z]+)?", client_id[len(prefix) + 2:])
    return bool(found) and int(found[1]) < try_number  # type: ignore[index]


# -- the record ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class SubmissionRecord:
    """What ``task_state_store`` holds for a task across its tries (JSON, one key)."""

    client_request_id: str | None
    model: str
    endpoint_family: str | None
    intent_at: float
    generation_id: str | None = None
    submitted_at: float | None = None
    #: ``dag_run.clear_number`` when the intent was made: tells a retry from a clear.
    clear_number: int = 0
    #: The task succeeded with this generation (set just before it returns).
    delivered: bool = False
    #: The API refused the create outright: nothing was created, the intent is closed.
    refused: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"client_request_id": self.client_request_id, "model": self.model,
                "endpoint_family": self.endpoint_family, "intent_at": self.intent_at,
                "generation_id": self.generation_id, "submitted_at": self.submitted_at,
                "clear_number": self.clear_number, "delivered": self.delivered,
                "refused": self.refused}

    @classmethod
    def from_json(cls, value: Any) -> SubmissionRecord | None:
        """Read a stored record; ``None`` for nothing usable. A stored generation id is read
        whatever else is missing: it is the trace of a payment."""
        if not isinstance(value, Mapping):
            return None
        cri = value.get("client_request_id")
        generation_id = value.get("generation_id")
        if not cri and not generation_id:
            return None
        intent_at = value.get("intent_at") or 0.0
        return cls(client_request_id=str(cri) if cri else None, model=str(value.get("model") or ""),
                   endpoint_family=value.get("endpoint_family"), intent_at=float(intent_at),
                   generation_id=str(generation_id) if generation_id else None,
                   submitted_at=(float(value["submitted_at"]) if value.get("submitted_at")
                                 else None),
                   clear_number=int(value.get("clear_number") or 0),
                   delivered=bool(value.get("delivered")),
                   refused=bool(value.get("refused")) and not generation_id)

    def with_generation(self, generation_id: str, now: float) -> SubmissionRecord:
        return SubmissionRecord(self.client_request_id, self.model, self.endpoint_family,
                                self.intent_at, generation_id, now, self.clear_number)

    def refused_now(self) -> SubmissionRecord:
        """This intent, closed: the API refused its create, so there is nothing to look up."""
        return SubmissionRecord(self.client_request_id, self.model, self.endpoint_family,
                                self.intent_at, None, None, self.clear_number, refused=True)


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


def next_client_request_id(prefix: str, try_number: int, previous: SubmissionRecord | None,
                           nonce: str | None = None) -> str:
    """The id of a new intent: a later intent of the same try than the stored one, if any, with
    a fresh random part (``nonce``: tests pass their own)."""
    stored = previous.client_request_id if previous is not None else None
    mine = f"{prefix}.t{int(try_number)}"
    found = (re.fullmatch(re.escape(mine) + r"(?:r(\d+))?(?:\.[0-9a-z]+)?", stored)
             if stored else None)
    attempt = int(found[1] or 0) + 1 if found else 0
    return client_request_id(prefix, try_number, attempt,
                             secrets.token_hex(NONCE_HEX // 2) if nonce is None else nonce)


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


def lookup_deadline(intent_at: float, wait_seconds: float) -> float:
    """Until when an intent's generation may still appear in the logs.

    A generation's row is written once it finishes: as long as the task allows a generation to
    take (its ``timeout``), plus the logs' own lag.
    """
    return intent_at + wait_seconds + LOGS_LAG.total_seconds()
