"""The rest of the simulator's world: the other callers that share its account.

Used by :class:`~kling_provider.testing.simulator.KlingSimulator` for its ``neighbours`` and
``mixed_logs`` knobs. A real key is shared by other tasks, other DAGs and other programs: the
usage logs a recovery searches hold their generations of the same model, started in the same
minute, and rows a recovery cannot use (no ``inference_id``, other models, failed requests).
Everything here is deterministic (seeded by the task's own generation id), so a failing test
replays the same world.
"""

from __future__ import annotations

import random
import re
from datetime import datetime, timezone
from typing import Any

__all__ = ["OTHER_MODEL", "log_time", "neighbour_ids", "neighbour_offsets", "refused_row",
           "unusable_rows"]

#: A model of another family, for rows a query filtered on a Kling model must not return.
OTHER_MODEL = "openai/gpt-5"
#: A client request id in the provider's shape: ``<task part>:<map index>.t<try>...``.
_INDEXED = re.compile(r"(?P<head>.*:)(?P<index>-?\d+)(?P<tail>\.t\d+.*)")


def log_time(epoch: float) -> str:
    """A usage-log ``created``: UTC, milliseconds, ``Z`` (as the published example)."""
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def neighbour_ids(own: str | None, count: int, seed: str) -> list[str | None]:
    """Client request ids of ``count`` other callers, around a task whose id is ``own``.

    In turn: another DAG's task, a caller that sends no id (``None``), and, when ``own`` has the
    provider's shape, a sibling whose map index starts with the task's own digits (index 1 and
    index 11: a prefix test takes one for the other).
    """
    rng = random.Random(seed)  # nosec B311  # simulated data, not a secret
    found = _INDEXED.fullmatch(own or "")
    ids: list[str | None] = []
    for i in range(count):
        kind = i % 3
        if kind == 1:
            ids.append(None)
        elif kind == 2 and found:
            index = found["index"].lstrip("-") or "0"
            ids.append(f"{found['head']}{index}{i}{found['tail']}")
        else:
            ids.append(f"kling:neighbour_{i}:scheduled__{rng.getrandbits(32):08x}:generate:-1.t1")
    return ids


def neighbour_offsets(count: int) -> list[float]:
    """Seconds between the task's create and each neighbour's, all within the same minute.

    Mostly after it: the logs list rows newest first, so these come before the task's own row.
    """
    return [(-1.0 if i % 4 == 3 else 1.0) * (1 + (i * 7) % 25) for i in range(count)]


def unusable_rows(model: str, own: str | None, created_at: float, count: int,
                  seed: str) -> list[dict[str, Any]]:
    """``count`` usage-log rows a recovery must read past, created just after ``created_at``.

    In turn: a refused request of the same model (no ``inference_id``, failed, zero cost), a row
    whose ``inference_id`` is ``null``, a request to another model, a row with an empty
    ``inference_id`` carrying the task's own client request id.
    """
    rng = random.Random(seed)  # nosec B311  # simulated data, not a secret
    rows = []
    for i in range(count):
        kind = i % 4
        row: dict[str, Any] = {
            "created": log_time(created_at + 1 + i % 29 + (i % 1000) / 1000),
            "status": "failed" if kind in (0, 3) else "succeeded",
            "origin": "api", "model": OTHER_MODEL if kind == 2 else model,
            "cost": {"usd": 0, "credits": 0} if kind in (0, 3) else {"usd": 0.001, "credits": 2000},
            "tokens": {"input": 0, "output": 0, "total": 0},
            "request_id": f"req-{rng.getrandbits(48):012x}",
            "client_request_id": own if kind == 3 else f"caller-{rng.getrandbits(32):08x}",
        }
        if kind == 1:
            row["inference_id"] = None
        elif kind == 2:
            row["inference_id"] = f"{rng.getrandbits(64):016x}"
        elif kind == 3:
            row["inference_id"] = ""
        rows.append(row)
    return rows


def refused_row(model: str, client_request_id: str | None, created_at: float) -> dict[str, Any]:
    """The row of a create the API refused: failed, free, and naming no inference."""
    return {"created": log_time(created_at), "status": "failed", "origin": "api", "model": model,
            "cost": {"usd": 0, "credits": 0}, "tokens": {"input": 0, "output": 0, "total": 0},
            "request_id": f"req-{random.getrandbits(48):012x}",  # nosec B311  # a fake id
            "inference_id": None,
            "client_request_id": client_request_id}
