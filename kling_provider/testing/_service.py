"""What the simulated service knows and does behind its HTTP origins: generations and their lives.

:class:`SimulatedService` is the base of :class:`~kling_provider.testing.simulator.KlingSimulator`,
which owns the servers, the knobs (its ``__init__`` sets every attribute declared here) and the
lifecycle. This half holds the state the routes (``_serve_*`` modules), the usage logs
(``logs``) and the live metrics (``_metrics``) read: a generation is created, walks queued ->
generating -> completed on the simulator's clock, is charged once when a poll first sees it
completed, and is served by the CDN origin. Split from the servers so each can be read in one
sitting; every method here takes the lock itself or is called with it held.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from kling_provider._wait.timings import generation_id_path
from kling_provider.catalogue import ENDPOINT_FAMILIES
from kling_provider.testing import _contract, _media, _world, logs
from kling_provider.testing._billing import CREDITS_PER_USD
from kling_provider.testing._media import IDENTITY_BOX_SIZE
from kling_provider.testing.records import Faults

__all__ = ["Generation", "SimulatedService"]


@dataclass
class Generation:
    """One generation the service started: what it was asked, when, and how it will fail."""

    generation_id: str
    model: str
    family: str
    created: float
    duration: int
    faults: Faults
    token: str
    #: The price charged to the balance when the generation completes (see ``_billing``).
    usd: float = 0.0
    charged: bool = False
    #: Wall-clock epoch seconds of the POST (the logs' ``created``).
    created_at: float = 0.0
    #: The ``X-Client-Request-Id`` the POST carried, when valid (the API drops invalid ones).
    client_request_id: str | None = None
    #: Started by another caller of the account (``neighbours``), not through this server.
    neighbour: bool = False
    #: The creating key's prefix, and when the charge landed: ``GET /v2/usage`` (``_usage``).
    key_prefix: str = ""
    charged_at: float | None = None


class SimulatedService:
    """The service's state and rules; :class:`~kling_provider.testing.simulator.KlingSimulator`
    sets the attributes (see its parameters) and adds the servers."""

    time_scale: float
    queued_seconds: float
    generating_seconds: float
    accept_unknown_models: bool
    clock: Callable[[], float]
    wall_clock: Callable[[], float]
    neighbours: int
    logs_lag: float
    mixed_logs: int
    skew: float
    balance_usd: float
    video: bytes
    extra_log_rows: list[tuple[float, dict[str, Any]]]
    _generations: dict[str, Generation]
    _lock: threading.RLock

    @property
    def cdn_url(self) -> str:
        """The video origin's URL (the poll answers' ``video.url``); the subclass serves it."""
        raise NotImplementedError

    def set_faults(self, generation_id: str, faults: Faults) -> None:
        with self._lock:
            self._generations[generation_id].faults = faults

    def generation_ids(self, *, include_neighbours: bool = False) -> list[str]:
        """Ids of the generations created through this server (and neighbours' when asked)."""
        with self._lock:
            return [g.generation_id for g in self._generations.values()
                    if include_neighbours or not g.neighbour]

    def service_time(self) -> float:
        """The service's epoch clock: the wall clock shifted by ``skew``."""
        return self.wall_clock() + self.skew

    def _create(self, model: str, family: str, duration: int, faults: Faults,
                client_request_id: str | None = None) -> Generation:
        generation = Generation(
            generation_id=f"{uuid.uuid4()}:{generation_id_path(model)}", model=model,
            family=family, created=self.clock(), duration=duration, faults=faults,
            token=uuid.uuid4().hex, created_at=self.service_time(),
            client_request_id=client_request_id)
        with self._lock:
            self._generations[generation.generation_id] = generation
        return generation

    def add_neighbour(self, model: str, *, client_request_id: str | None, offset: float = 0.0,
                      failed: bool = False, duration: int = 5) -> str:
        """Start a generation of ``model`` for another caller of the account; return its id.

        It starts ``offset`` seconds after now on the service's clock (its logs ``created``),
        finishes as a generation started now would, and is never polled (so never charged).
        """
        error = {"name": "NeighbourFailed", "message": "a neighbour's generation failed"}
        generation = self._create(model, self._family_of(model), duration,
                                  Faults(error=error if failed else None), client_request_id)
        generation.neighbour = True
        generation.created_at += offset
        return generation.generation_id

    def _surround(self, generation: Generation) -> None:
        """The rest of the world around a create: ``neighbours`` and ``mixed_logs`` rows."""
        seed = generation.generation_id
        ids = _world.neighbour_ids(generation.client_request_id, self.neighbours, seed)
        offsets = _world.neighbour_offsets(len(ids))
        for i, (cri, offset) in enumerate(zip(ids, offsets, strict=True)):
            self.add_neighbour(generation.model, client_request_id=cri, offset=offset,
                               failed=i % 5 == 4, duration=generation.duration)
        rows = _world.unusable_rows(generation.model, generation.client_request_id,
                                    generation.created_at, self.mixed_logs, seed)
        self.add_log_rows(rows)

    def _refuse(self, client_request_id: str | None, model: Any) -> None:
        """A refused create: with ``mixed_logs``, its failed row (no ``inference_id``) is logged."""
        if self.mixed_logs and isinstance(model, str):
            self.add_log_rows([_world.refused_row(model, client_request_id, self.service_time())])

    def add_log_rows(self, rows: list[dict[str, Any]]) -> None:
        """Add usage-log rows of no generation here; each shows from now on, filtered by its
        ``created``, ``model`` and ``status`` like any row."""
        with self._lock:
            self.extra_log_rows.extend(
                (logs.parse_created(str(row.get("created") or "")), row) for row in rows)

    def _video_size(self, generation: Generation) -> int:
        return max(generation.faults.video_size or 0, len(self.video) + IDENTITY_BOX_SIZE)

    def _finished(self, generation: Generation, lag: float = 0.0) -> bool:
        """Whether the generation has reached its terminal status ``lag`` simulated seconds ago."""
        elapsed = (self.clock() - generation.created) * self.time_scale
        return elapsed >= self.queued_seconds + self._generating(generation) + lag

    def logged(self, generation: Generation) -> bool:
        """Whether the generation's usage-logs row exists: finished, ``logs_lag`` ago."""
        return self._finished(generation, self.logs_lag)

    def _generating(self, generation: Generation) -> float:
        return self.generating_seconds * (2 if generation.duration >= 10 else 1)

    def generations_by_client_request_id(self, *, include_neighbours: bool = False
                                         ) -> dict[str | None, list[str]]:
        """Generation ids per client request id: what a test counts to prove one payment."""
        found: dict[str | None, list[str]] = {}
        with self._lock:
            for generation in self._generations.values():
                if generation.neighbour and not include_neighbours:
                    continue
                found.setdefault(generation.client_request_id, []).append(
                    generation.generation_id)
        return found

    def _state(self, generation: Generation) -> dict[str, Any]:
        elapsed = (self.clock() - generation.created) * self.time_scale
        generating = self._generating(generation)
        body: dict[str, Any] = {"id": generation.generation_id}
        faults = generation.faults
        if faults.unknown_status_polls > 0:
            faults.unknown_status_polls -= 1
            return {**body, "status": faults.unknown_status}
        if elapsed < self.queued_seconds:
            return {**body, "status": "queued"}
        if elapsed < self.queued_seconds + generating:
            return {**body, "status": "generating"}
        if faults.error is not None:
            return {**body, "status": "error", "error": faults.error, "video": None}
        if faults.completed_without_url > 0:
            faults.completed_without_url -= 1
            return {**body, "status": "completed", "video": None}
        if not generation.charged:  # the charge lands once the generation is completed
            generation.charged, generation.charged_at = True, self.service_time()
            self.balance_usd -= generation.usd
        credits = round(generation.usd * CREDITS_PER_USD)
        usage: dict[str, Any] = ({"tokens_used": credits} if generation.family == "legacy"
                                 else {"credits_used": credits, "usd_spent": generation.usd})
        return {**body, "status": "completed",
                "video": {"url": f"{self.cdn_url}/files/{generation.token}/output.mp4",
                          "content_type": "video/mp4", "file_name": "output.mp4",
                          "file_size": self._video_size(generation), "duration": generation.duration},
                "meta": {"usage": usage}}

    def _family_of(self, model: str) -> str:
        return next((f for f in ENDPOINT_FAMILIES if model in _contract.create_schemas(f)),
                    "unified")

    def _by_token(self, token: str) -> Generation | None:
        with self._lock:
            return next((g for g in self._generations.values() if g.token == token), None)

    def _accept(self, family: str, body: Any) -> tuple[str, dict[str, Any]]:
        """The model and the request as the service runs it, or ``ContractError`` (a 400)."""
        request = _contract.accepted(family, body, allow_unknown_model=self.accept_unknown_models)
        return str(request["model"]), request

    def video_of(self, generation_id: str) -> bytes:
        """The whole video the CDN serves for ``generation_id`` (for tests comparing files)."""
        with self._lock:
            generation = self._generations[generation_id]
        return b"".join(self.video_bytes(generation))

    def video_bytes(self, generation: Generation) -> Iterator[bytes]:
        """What the CDN serves for ``generation``, in chunks (see :func:`_media.video_bytes`)."""
        return _media.video_bytes(self.video, generation.generation_id,
                                  self._video_size(generation))
