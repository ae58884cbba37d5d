"""What the simulator is told to break (:class:`Faults`) and what it saw (:class:`Ledger`).

Public parts of the simulator, used by tests to inject failures and to count requests.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["Faults", "Ledger", "LedgerEntry"]


@dataclass
class Faults:
    """Failures to inject. Counters are consumed one request at a time.

    Global faults (``KlingSimulator.faults``) apply to every API request, including the create
    POST; per-generation faults apply to that generation's polls and download.
    """

    #: HTTP statuses to answer the next requests with, in order (e.g. ``[429, 503]``).
    statuses: list[int] = field(default_factory=list)
    #: ``Retry-After`` header sent with injected 429/503 answers.
    retry_after: float | None = None
    #: Close the connection without answering the next N requests to the generation endpoint
    #: (global: creates and polls; per generation: its polls). On a POST the generation is
    #: created first: the "paid but the answer was lost" case.
    drop_connections: int = 0
    #: Answer the next N requests with a body that is not JSON.
    malformed_json: int = 0
    #: Seconds to wait before every answer.
    delay: float = 0.0
    #: End the generation with status ``error`` and this ``{"name", "message"}``.
    error: dict[str, str] | None = None
    #: Report this status instead of the real one for ``unknown_status_polls`` polls.
    unknown_status: str = "mystery"
    unknown_status_polls: int = 0
    #: Report ``completed`` without a video URL for N polls once complete.
    completed_without_url: int = 0
    #: Send half the video, then close the connection (Content-Length announces all of it).
    truncate_download: bool = False
    #: Reset the connection after this many bytes of the video (a mid-stream drop).
    drop_download_after: int | None = None
    #: Announce and send 100 bytes fewer than the API's ``file_size``.
    wrong_content_length: bool = False
    #: Pad the served video to this many bytes (a valid MP4 ``free`` box), for big-file tests.
    video_size: int | None = None
    #: Create faults, for a request body's ``simulator_faults``: refuse the first N POSTs of
    #: this ``X-Client-Request-Id`` with 429 before creating anything (safe to resend) ...
    refuse_before_create: int = 0
    #: ... or create the generation, then wait this long before answering (a request in flight)
    create_delay: float = 0.0
    #: ... then close the connection without answering ("created, then the answer is lost")
    create_drop: bool = False
    #: ... or answer this status instead of the id ("created, then 502").
    create_status: int | None = None
    #: ... or answer 200 with an HTML page instead of the id ("created, then unreadable").
    create_garbled: bool = False
    #: Answer creates with these definite refusals, in order, creating nothing: 400 (body
    #: validation), 401 (bad key), 403 (out of credits), 404, each in the API's error body with
    #: its documented message. Global: the next create POSTs, whatever they ask. In a request
    #: body's ``simulator_faults``: the first creates of that same body (whatever their client
    #: request id), so a task's retries meet them in turn.
    refusals: list[int] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Faults:
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown fault(s) {sorted(unknown)}; known: {sorted(names)}")
        return cls(**data)


@dataclass
class LedgerEntry:
    method: str
    path: str
    status: int | None  #: None while the answer is pending, 0 for a dropped connection
    generation_id: str | None
    origin: str  #: "api", "cdn" or "admin"
    headers: dict[str, str]
    query: str = ""  #: as sent (``generation_id=...``), for tests of what a request asked for


class Ledger:
    """Every request the simulator saw, with its answer status; thread-safe."""

    def __init__(self) -> None:
        self._entries: list[LedgerEntry] = []
        self._lock = threading.Lock()

    def record(self, entry: LedgerEntry) -> None:
        with self._lock:
            self._entries.append(entry)

    def entries(self, *, method: str | None = None, origin: str | None = None,
                generation_id: str | None = None, path: str | None = None) -> list[LedgerEntry]:
        with self._lock:
            return [e for e in self._entries
                    if (method is None or e.method == method)
                    and (origin is None or e.origin == origin)
                    and (generation_id is None or e.generation_id == generation_id)
                    and (path is None or e.path == path)]

    def count(self, **criteria: Any) -> int:
        return len(self.entries(**criteria))

    def summary(self) -> dict[str, Any]:
        """Counts per path and per generation id (what the admin endpoint returns)."""
        by_path: dict[str, int] = {}
        by_generation: dict[str, dict[str, int]] = {}
        for e in self.entries():
            by_path[f"{e.method} {e.path}"] = by_path.get(f"{e.method} {e.path}", 0) + 1
            if e.generation_id:
                slot = by_generation.setdefault(e.generation_id, {})
                slot[f"{e.origin} {e.method}"] = slot.get(f"{e.origin} {e.method}", 0) + 1
        return {"by_path": by_path, "by_generation": by_generation,
                "posts": self.count(method="POST", origin="api")}

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
