"""The API's data types: what a generation looks like once parsed, and how its status is read.

Used by the hook (parsing fetch responses), the trigger (classifying each poll), the operators
(XCom return values) and the simulator (the statuses it walks through). Everything here is pure
and JSON-serialisable, so a :class:`Generation` can travel through XCom and trigger events.
"""

from __future__ import annotations

import enum
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "FAILURE_STATUSES",
    "PENDING_STATUSES",
    "SUCCESS_STATUSES",
    "Generation",
    "Stage",
    "StatusClass",
    "classify_status",
    "describe_error",
    "finite_number",
]

log = logging.getLogger("kling_provider")

PENDING_STATUSES = frozenset({"queued", "waiting", "active", "generating", "processing"})
#: ``succeeded``/``success`` are what other video models of the same service report when done.
SUCCESS_STATUSES = frozenset({"completed", "succeeded", "success"})
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


class Stage(str, enum.Enum):
    """What one answer about a generation means for the task waiting for it
    (:attr:`Generation.stage`)."""

    #: Completed, with its video URL: the task finishes with it.
    DONE = "done"
    #: Failed for good: the task fails with the API's reason.
    FAILED = "failed"
    #: A known in-progress status: wait.
    PENDING = "pending"
    #: Completed, but without its video URL yet (it can lag the status): look again soon.
    AWAITING_URL = "awaiting_url"
    #: A status never seen: wait (bounded by the deadline) and say so; a new intermediate status
    #: must not fail a paid generation.
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
    #: USD as the API reported it (``meta.usage.usd_spent`` or the ``x-aimlapi-usd-spent`` header).
    usd_spent: float | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def status_class(self) -> StatusClass:
        return classify_status(self.status)

    @property
    def stage(self) -> Stage:
        """Where this answer leaves whoever waits for the generation: the one done/failed/pending
        decision of the wait loop, the resume after submitting, the sensor's poke and the
        download. Done needs the video URL too: it can appear after the status says completed."""
        state = self.status_class
        if state is StatusClass.SUCCESS:
            return Stage.DONE if self.video_url else Stage.AWAITING_URL
        if state is StatusClass.FAILURE:
            return Stage.FAILED
        return Stage.UNKNOWN if state is StatusClass.UNKNOWN else Stage.PENDING

    @classmethod
    def from_api(cls, body: dict[str, Any], *, generation_id: str | None = None) -> Generation:
        """Parse a fetch (or create) response body.

        Tolerant by design: the legacy endpoint reports ``meta.usage.tokens_used``, the unified one
        ``meta.usage.credits_used``; ``error`` comes in every shape :func:`describe_error` reads;
        ``video`` may be missing, null, or (on some models) a list. A field of an unexpected type
        reads as absent: this runs on the answer to a paid POST, where raising would lose its id.
        """
        video = body.get("video")
        if isinstance(video, list):
            video = video[0] if video else None
        if not isinstance(video, dict):
            video = {}
        error_name, error_message = describe_error(body.get("error"))
        usage = _mapping(_mapping(body.get("meta")).get("usage"))
        the_id = str(body.get("id") or generation_id or "")

        def number(name: str, value: Any) -> float | None:
            """A number of the answer; one that is not finite is ignored, with a warning (this
            runs after paying: metrics, logs and XCom must not fail on it)."""
            found = finite_number(value)
            if found is None and value is not None:
                log.warning("Generation %s: the API reported %s=%r, not a finite number; "
                            "ignored.", the_id, name, value)
            return found

        credits = usage.get("credits_used", usage.get("tokens_used"))
        duration = video.get("duration", body.get("duration"))
        size = number("file_size", video.get("file_size"))
        return cls(
            generation_id=the_id,
            status=str(body.get("status") or ""),
            video_url=video.get("url") if isinstance(video.get("url"), str) else None,
            content_type=_str_or_none(video.get("content_type")),
            file_name=_str_or_none(video.get("file_name")),
            file_size=int(size) if size is not None and 0 <= size < 2**63 else None,
            duration=number("duration", duration),
            error_name=error_name,
            error_message=error_message,
            credits_used=number("credits_used", credits),
            usd_spent=number("usd_spent", usage.get("usd_spent")),
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


#: Longest error message kept: enough for every reason seen, short enough for a log line.
MAX_ERROR_CHARS = 2000


def describe_error(error: Any) -> tuple[str | None, str | None]:
    """``(name, message)`` of an API ``error`` in any shape the service was seen to use.

    Shapes: a string (legacy endpoint); ``{name, message}`` (unified endpoint);
    ``{"detail": [{"loc": [...], "msg": ..., "type": ...}]}`` (validation-style, e.g. "Could not
    detect face in the image"); lists and nestings of these. Each ``detail`` item reads
    ``"<msg> (field '<loc>')"`` so the user sees which input to change; its ``type`` becomes the
    name. Anything else is shown as compact JSON rather than dropped.
    """
    names: list[str] = []
    messages: list[str] = []
    _collect(error, names, messages, depth=0)
    name = ", ".join(dict.fromkeys(names)) or None
    message = "; ".join(dict.fromkeys(messages))[:MAX_ERROR_CHARS] or None
    return name, message


def _collect(error: Any, names: list[str], messages: list[str], *, depth: int) -> None:
    if error is None or error == "" or depth > 5:
        return
    if isinstance(error, str):
        messages.append(error.strip())
    elif isinstance(error, (list, tuple)):
        for item in error:
            _collect(item, names, messages, depth=depth + 1)
    elif isinstance(error, Mapping):
        _collect_mapping(error, names, messages, depth=depth)
    else:
        messages.append(str(error))


def _collect_mapping(error: Mapping[str, Any], names: list[str], messages: list[str], *,
                     depth: int) -> None:
    name = next((error[k] for k in ("name", "type", "code") if error.get(k)), None)
    if isinstance(name, (str, int)):
        names.append(str(name))
    if "msg" in error:  # one validation item: {loc, msg, type}
        field = _field_of(error.get("loc"))
        text = str(error.get("msg") or "").strip() or "invalid value"
        messages.append(f"{text} (field {field!r})" if field else text)
        return
    reason = next((error[k] for k in ("message", "detail", "error", "description", "reason")
                   if error.get(k) not in (None, "", [], {})), None)
    if reason is not None:
        _collect(reason, names, messages, depth=depth + 1)
    elif name is None and error:
        messages.append(json.dumps(error, sort_keys=True, default=str)[:MAX_ERROR_CHARS])


def _field_of(loc: Any) -> str | None:
    """``["body", "image_list", 0]`` -> ``"image_list[0]"``: the input the user named."""
    parts = list(loc) if isinstance(loc, (list, tuple)) else [loc] if loc else []
    if len(parts) > 1 and parts[0] in ("body", "query", "path"):
        parts = parts[1:]
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text or None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def finite_number(value: Any) -> float | None:
    """``value`` as a finite float (numbers and numeric text), else ``None``.

    NaN, infinities, ``1e400`` (infinite once read), ints beyond any float, booleans and
    anything not numeric are no number: every comparison with NaN is false and ``round`` of an
    infinity raises, so an answer's number is only used once it passed this.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None
