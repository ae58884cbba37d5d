"""The simulator's model deprecation feed, and retiring a model on command.

``GET /v1/models/deprecations`` (also ``/models/deprecations``), no key, as the AI/ML API
publishes it: ``{"object": "list", "generated_at", "data": [...]}``, newest first (by
``shutdown_at``, else ``deprecated_at``), then by ``id``; a weak ``ETag`` over ``data`` only
(``generated_at`` changes on every call) and ``Cache-Control: public, max-age=300``;
``If-None-Match`` with the tag gets ``304`` and no body. ``?status=`` (case-insensitive, comma
separated or repeated) and ``?since=YYYY-MM-DD`` filter; unknown values are ignored, never a 400.

A test retires a model with :meth:`Retirements.retire` (``sim.retirements.retire(...)``) or
``POST /_simulator/retire`` with the same fields as JSON. A withdrawn model's creates are then
answered ``404``, as the real API does; deprecated and superseded ones still run.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs

from kling_provider import _endpoints
from kling_provider.testing._billing import _etag

#: The feed's path and the alias the real API also answers on.
FEED_PATHS = frozenset({_endpoints.path("deprecations"), "/models/deprecations"})
CONTROL_PATH = "/_simulator/retire"
STATUSES = ("deprecated", "superseded", "withdrawn")
REASONS = ("provider_delisted", "consolidated", "unknown", None)
CACHE_CONTROL = "public, max-age=300"


class RetireError(ValueError):
    """A retirement the published feed could not hold (the control endpoint's 400)."""


def _day(value: Any, name: str) -> str | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(str(value)).isoformat()
    except ValueError:
        raise RetireError(f"{name}: {value!r} is not a YYYY-MM-DD date") from None


class Retirements:
    """The feed's entries, one per model; ``today`` gives the service's date (epoch seconds)."""

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self._entries: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        #: Statuses the next feed requests get instead of the feed (a test's outage), in turn.
        self.failures: list[int] = []

    def today(self) -> date:
        return datetime.fromtimestamp(self._now(), timezone.utc).date()

    def retire(self, model: str, status: str = "withdrawn", *, aliases: list[str] | None = None,
               deprecated_at: str | None = None, shutdown_at: str | None = None,
               replaced_by: str | None = None, reason: str | None = "provider_delisted"
               ) -> dict[str, Any]:
        """List ``model`` in the feed (replacing its entry); return the entry as served.

        Dates default to what the service would publish: ``deprecated_at`` today; a withdrawn
        model's ``shutdown_at`` today, a deprecated one's in 30 days; a superseded one has none.
        """
        if not isinstance(model, str) or not model.strip():
            raise RetireError(f"model: {model!r} is not a model id")
        if status not in STATUSES:
            raise RetireError(f"status: {status!r} is not one of {', '.join(STATUSES)}")
        if reason not in REASONS:
            raise RetireError(f"reason: {reason!r} is not one of {REASONS}")
        if status == "superseded" and shutdown_at is not None:
            raise RetireError("shutdown_at: a superseded model has none (it keeps resolving)")
        today = self.today()
        default_shutdown = {"withdrawn": today, "deprecated": today + timedelta(days=30)}
        entry: dict[str, Any] = {
            "id": model.strip(), "aliases": [str(a) for a in aliases or []], "status": status,
            "deprecated_at": _day(deprecated_at, "deprecated_at") or today.isoformat(),
            "shutdown_at": _day(shutdown_at, "shutdown_at") or (
                d.isoformat() if (d := default_shutdown.get(status)) else None),
            "replaced_by": replaced_by, "reason": reason,
        }
        with self._lock:
            self._entries[entry["id"]] = entry
        return dict(entry)

    def restore(self, model: str) -> None:
        """Take ``model`` out of the feed again."""
        with self._lock:
            self._entries.pop(model, None)

    def withdrawn(self, model: Any) -> dict[str, Any] | None:
        """The withdrawn entry ``model`` names (by id or alias), if any: its creates get 404."""
        with self._lock:
            for entry in self._entries.values():
                if entry["status"] == "withdrawn" and model in (entry["id"], *entry["aliases"]):
                    return dict(entry)
        return None

    def answer(self, query: str, if_none_match: str | None) -> tuple[int, bytes, dict[str, str]]:
        """(status, body, headers) of ``GET /v1/models/deprecations?<query>``."""
        with self._lock:
            failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            return failure, json.dumps({"message": "Service unavailable",
                                        "statusCode": failure}).encode(), {}
        params = parse_qs(query)
        wanted = {v.strip().lower() for raw in params.get("status", []) for v in raw.split(",")}
        wanted &= set(STATUSES)
        since = None
        for raw in params.get("since", []):
            try:
                since = date.fromisoformat(raw.strip()).isoformat()
            except ValueError:
                continue  # fails open: an unreadable date filters nothing
        with self._lock:
            data = [dict(e) for e in self._entries.values()]
        data = [e for e in data if (not wanted or e["status"] in wanted) and (
            since is None or any(e[k] and e[k] >= since for k in ("deprecated_at", "shutdown_at")))]
        data.sort(key=lambda e: e["id"])
        data.sort(key=lambda e: e["shutdown_at"] or e["deprecated_at"] or "", reverse=True)
        etag = _etag(json.dumps(data, sort_keys=True).encode())
        headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
        if if_none_match and etag in [t.strip() for t in if_none_match.split(",")]:
            return 304, b"", headers
        generated = datetime.fromtimestamp(self._now(), timezone.utc)
        body = {"object": "list",
                "generated_at": generated.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "data": data}
        return 200, json.dumps(body).encode(), headers

    def control(self, body: Any) -> dict[str, Any]:
        """``POST /_simulator/retire``: ``{"model": ..., "status": ..., ...}`` (``retire``'s
        arguments); ``{"model": ..., "restore": true}`` takes it out of the feed again."""
        if not isinstance(body, Mapping):
            raise RetireError("the body must be a JSON object with at least 'model'")
        fields = dict(body)
        if fields.pop("restore", False):
            self.restore(str(fields.get("model")))
            return {"restored": fields.get("model")}
        try:
            return self.retire(**fields)
        except TypeError as exc:
            raise RetireError(str(exc)) from None


def withdrawn_message(entry: Mapping[str, Any]) -> str:
    """The 404 body's message for a create of a withdrawn model."""
    return f"Model '{entry['id']}' not found"
