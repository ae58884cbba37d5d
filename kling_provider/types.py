"""The API's data types: what a generation looks like once parsed, and how its status is read.

Used by the hook (parsing fetch responses), the trigger (classifying each poll), the operators
(XCom return values) and the simulator (the statuses it walks through). Everything here is pure
and JSON-serialisable, so a :class:`Generation` can travel through XCom and trigger events.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "FAILURE_STATUSES",
    "PENDING_STATUSES",
    "SUCCESS_STATUSES",
    "Generation",
    "StatusClass",
    "classify_status",
]

PENDING_STATUSES = frozenset({"queued", "waiting", "active", "generating", "processing"})
SUCCESS_STATUSES = frozenset({"completed"})
FAILURE_STATUSES = frozenset(
    {"error", "failed", "cancelled", "canceled", "aborted", "rejected", "expired"}
)


class StatusClass(str, enum.Enum):
    """Where a status leaves the waiting caller."""

    PENDING = "pending"
    SUCCESS = "success"
    FAILURE = "failure"
    #: A status this provider has never seen: keep polling (bounded by the deadline) and warn,
    #: because a new intermediate status must not fail paid generations.
    UNKNOWN = "unknown"


def classify_status(status: str | None) -> StatusClass:
    """Classify an API status string; case and surrounding blanks are ignored."""
    normalised = (status or "").strip().lower()
    if normalised in PENDING_STATUSES:
        return StatusClass.PENDING
    if normalised in SUCCESS_STATUSES:
        return StatusClass.SUCCESS
    if normalised in FAILURE_STATUSES:
        return StatusClass.FAILURE
    return StatusClass.UNKNOWN


@dataclass(frozen=True)
class Generation:
    """One generation as the fetch endpoint describes it.

    ``raw`` keeps the whole response body so fields this provider does not model yet are not lost.
    """

    generation_id: str
    status: str
    video_url: str | None = None
    content_type: str | None = None
    file_name: str | None = None
    file_size: int | None = None
    duration: float | None = None
    error_name: str | None = None
    error_message: str | None = None
    credits_used: float | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def status_class(self) -> StatusClass:
        return classify_status(self.status)

    @property
    def is_finished(self) -> bool:
        return self.status_class in (StatusClass.SUCCESS, StatusClass.FAILURE)

    @classmethod
    def from_api(cls, body: dict[str, Any], *, generation_id: str | None = None) -> Generation:
        """Parse a fetch (or create) response body.

        Tolerant by design: the legacy endpoint reports ``meta.usage.tokens_used``, the unified one
        ``meta.usage.credits_used``; ``error`` is a string on one and ``{name, message}`` on the
        other; ``video`` may be missing, null, or (on some models) a list.
        """
        video = body.get("video")
        if isinstance(video, list):
            video = video[0] if video else None
        if not isinstance(video, dict):
            video = {}
        error = body.get("error")
        error_name: str | None = None
        error_message: str | None = None
        if isinstance(error, dict):
            error_name = _str_or_none(error.get("name"))
            error_message = _str_or_none(error.get("message"))
        elif error:
            error_message = str(error)
        usage = (body.get("meta") or {}).get("usage") or {}
        credits = usage.get("credits_used", usage.get("tokens_used"))
        duration = video.get("duration", body.get("duration"))
        return cls(
            generation_id=str(body.get("id") or generation_id or ""),
            status=str(body.get("status") or ""),
            video_url=_str_or_none(video.get("url")),
            content_type=_str_or_none(video.get("content_type")),
            file_name=_str_or_none(video.get("file_name")),
            file_size=_int_or_none(video.get("file_size")),
            duration=_float_or_none(duration),
            error_name=error_name,
            error_message=error_message,
            credits_used=_float_or_none(credits),
            raw=body,
        )

    def to_dict(self, *, include_raw: bool = True) -> dict[str, Any]:
        """Plain JSON-able dict (the inverse of :meth:`from_dict`)."""
        data = asdict(self)
        if not include_raw:
            data.pop("raw")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Generation:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _int_or_none(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _float_or_none(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None
