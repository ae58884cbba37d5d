"""This deployment's generations in flight, for budgets: one Airflow Variable per paying task.

Why: the service bills an async video only once it completes, so ``GET /v2/usage`` does not show
what is still generating; a budget must add it. Why Variables: a task in Airflow 3 reaches no
metadata table directly (the Task SDK talks to the execution API), and of what it can write
there, Variables alone can be listed by prefix (``Variable.keys``, Airflow 3.3+), by any task of
any DAG, from a worker or the triggerer. One Variable per task, written and deleted on its own,
so concurrent tasks never overwrite each other (no read-modify-write).

The key says everything a budget needs, so counting is one listing, not one read per task:
``kling_inflight.<key id>.<task id>.<expires at>.<micro-USD>``:

- ``key id``: a hash of the API key (tasks of every connection sharing a key share its bill;
  the key itself never appears);
- ``task id``: a hash of (DAG, run, task, map index): the task's retries replace their own
  reservation, and any path that ends the task can release it;
- ``expires at``: epoch seconds after which the generation has ended for sure (the task's
  timeout plus :data:`GRACE`): a task killed before releasing stops counting then;
- ``micro-USD``: the estimate, rounded up to a millionth of a dollar (unknown: 0).

Order (:func:`kling_provider.operators._budget.guard_budget`): write the reservation, then read
the listing and the key's spend, then decide; a refusal deletes it again. Of two tasks deciding
at once, the later writer's read therefore sees both: concurrent tasks of one deployment cannot
together pass the budget through each other (they may both refuse). The value holds the task's
DAG, run, task and model for people (the videos page).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from typing import Any, Protocol

__all__ = ["GRACE", "PREFIX", "STORE", "InFlight", "Reservation", "VariableStore", "in_flight",
           "in_flight_of", "key_id", "release_quietly", "task_token"]

log = logging.getLogger("kling_provider")

PREFIX = "kling_inflight"
#: How long after its task's timeout a reservation still counts: a generation the task stopped
#: waiting for may still complete, and be billed, after the timeout.
GRACE = 3600.0
_MICRO = Decimal("0.000001")


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def key_id(api_key: str) -> str:
    """The API key's reservations' prefix part: a hash, never the key."""
    return _digest("kling-budget", api_key)


def task_token(task_prefix: str) -> str:
    """A task instance's part of a reservation's name, from its client request id prefix
    (:func:`kling_provider._task.intent.task_prefix`: unique per task instance), hashed."""
    return _digest(task_prefix)


@dataclass(frozen=True)
class Reservation:
    """One paying task's generation, counted until released or expired."""

    key: str
    task: str
    expires_at: int
    micro_usd: int

    @classmethod
    def of(cls, api_key: str, task: str, *, expires_at: float, usd: Decimal | None
           ) -> Reservation:
        micro = 0 if usd is None else int((usd / _MICRO).to_integral_value(ROUND_CEILING))
        return cls(key_id(api_key), task, math.ceil(expires_at), max(0, micro))

    @property
    def name(self) -> str:
        """The Variable's key."""
        return f"{PREFIX}.{self.key}.{self.task}.{self.expires_at}.{self.micro_usd}"

    @property
    def usd(self) -> Decimal:
        return Decimal(self.micro_usd) * _MICRO

    @classmethod
    def parse(cls, name: str) -> Reservation | None:
        """The reservation a Variable key names; ``None`` for any other key."""
        parts = name.split(".")
        if len(parts) != 5 or parts[0] != PREFIX or not all(p.isdigit() for p in parts[3:]):
            return None
        return cls(parts[1], parts[2], int(parts[3]), int(parts[4]))


def key_prefix(api_key: str) -> str:
    """Every reservation of ``api_key`` starts with this."""
    return f"{PREFIX}.{key_id(api_key)}."


@dataclass(frozen=True)
class InFlight:
    """What a listing adds up to: the total, how many, and the expired names to delete."""

    usd: Decimal
    count: int
    expired: tuple[str, ...]


def in_flight(names: Iterable[str], api_key: str, *, now: float, own_task: str = ""
              ) -> InFlight:
    """The unexpired reservations of ``api_key`` among ``names``, ``own_task``'s left out."""
    return in_flight_of(names, key_id(api_key), now=now, own_task=own_task)


def in_flight_of(names: Iterable[str], key: str, *, now: float, own_task: str = ""
                 ) -> InFlight:
    """:func:`in_flight` by the key's hash (the videos page knows no key, only its hash)."""
    total, count, expired = Decimal(0), 0, []
    for name in names:
        found = Reservation.parse(name)
        if found is None or found.key != key or found.task == own_task:
            continue
        if found.expires_at <= now:
            expired.append(name)
            continue
        total += found.usd
        count += 1
    return InFlight(total, count, tuple(expired))


class Store(Protocol):
    """What reservations need of Airflow's Variables (tests pass a dict-backed one)."""

    def keys(self, prefix: str) -> list[str]: ...
    def set(self, name: str, value: str) -> None: ...
    def delete(self, name: str) -> None: ...


class VariableStore:
    """Airflow's Variables through the Task SDK (a worker's or the triggerer's supervisor).

    ``keys`` needs Airflow 3.3+ (``Variable.keys``); on older versions it raises
    ``AttributeError``, which the budget treats as "in flight unknown".
    """

    def keys(self, prefix: str) -> list[str]:
        from airflow.sdk import Variable  # a running task's SDK (parse cost)

        return list(Variable.keys(prefix=prefix))  # type: ignore[attr-defined,unused-ignore]

    def set(self, name: str, value: str) -> None:
        from airflow.sdk import Variable  # a running task's SDK (parse cost)

        Variable.set(name, value, description="A Kling generation in flight (budget)")

    def delete(self, name: str) -> None:
        from airflow.sdk import Variable  # a running task's SDK (parse cost)

        Variable.delete(name)


#: Where reservations live, for the worker's budget and the triggerer's release alike: Airflow's
#: Variables (tests swap in their own store). Assigned below, once its class is defined.
STORE: Store


def release(store: Store, api_key: str, task: str) -> int:
    """Delete every reservation of ``task``; how many there were."""
    names = store.keys(f"{key_prefix(api_key)}{task}.")
    for name in names:
        store.delete(name)
    return len(names)


def reserve(store: Store, reservation: Reservation, api_key: str, about: dict[str, Any]) -> None:
    """Replace ``reservation.task``'s reservations (an earlier try's) with ``reservation``."""
    release(store, api_key, reservation.task)
    store.set(reservation.name, json.dumps(about, sort_keys=True))


def release_quietly(store: Store, api_key: str, task: str) -> None:
    """:func:`release`, best effort: a reservation that cannot be deleted stops counting when it
    expires, and a paid, finished generation must not fail over it."""
    try:
        release(store, api_key, task)
    except Exception as exc:  # the reservation then expires on its own
        log.warning(
            "Could not release the budget reservation of this task (%s); it stops counting "
            "when it expires.", type(exc).__name__)


STORE = VariableStore()
