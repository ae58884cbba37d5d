"""The intent of one paid submission: its client request id and the record stored before paying.

Used by :mod:`kling_provider._task.submission` (which re-exports every name here), and through it
by the operators' submission and record steps (``operators/_submission.py``, ``_record.py``) and
the recovery (``operators/_recover.py``). The API has no idempotency key: what ties a POST to the
task that paid for it is the ``X-Client-Request-Id`` it carried, so that id is derived here,
stored in :class:`SubmissionRecord` in ``task_state_store`` *before* the POST, and read back
(never derived again) on a later try. Pure: no I/O, no clock, no HTTP stack.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kling_provider.exceptions import KlingValidationError

__all__ = ["NONCE_HEX", "SubmissionRecord", "client_request_id", "earlier_try",
           "next_client_request_id", "task_prefix"]

#: What the API accepts in the header; anything else is silently dropped (no correlation at all).
_VALID_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_INVALID_CHAR = re.compile(r"[^A-Za-z0-9._:-]")
#: Room left after the task part of an id for the intent suffix (``.t<try>r<n>.<random>``).
_PREFIX_MAX = 96
#: Hex digits of an id's random part: 48 bits, so deployments sharing a key never share an id.
NONCE_HEX = 12


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
