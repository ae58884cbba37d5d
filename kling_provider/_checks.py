"""Checks of task arguments that must pass before any request, above all before the paid POST.

Pure (no Airflow, no HTTP): the operators and the sensor call them at parse time and again at the
top of ``execute``, so a value changed after construction (mapped tasks, a mutated operator) is
still caught before paying. Each error names the parameter, the value and what is allowed.

Every check a DAG file parse runs is here rather than beside the rules it guards (the poll
schedule, the spend guard, durable submission): those modules are only needed once a task runs,
and importing them costs every parse (they re-export what they used to define).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal
from typing import Any, Literal

from kling_provider.exceptions import KlingValidationError

#: Longest wait accepted. A Kling generation takes minutes; a week leaves room for queues while
#: keeping ``now + timeout`` representable as the deferral's and the trigger's deadline.
MAX_WAIT_SECONDS = 7 * 24 * 3600.0

PollScheduleKind = Literal["adaptive", "fixed"]
POLL_SCHEDULES: tuple[PollScheduleKind, ...] = ("adaptive", "fixed")
#: The longest gap between two polls unless the user sets ``poll_interval``: the adaptive schedule
#: uses it only before and well after the expected finish, so it costs little detection lag.
DEFAULT_POLL_INTERVAL = 60.0

OnUncertainSubmission = Literal["fail", "resubmit"]
ON_UNCERTAIN_SUBMISSION = ("fail", "resubmit")

#: A budget's period -> the rolling window of ``GET /v2/usage`` (its ``period``) it is read over.
BUDGET_PERIODS = {"day": "24h", "week": "7d", "month": "30d"}
#: The largest budget accepted: beyond it, a typo (or an exponent) rather than a plan.
MAX_BUDGET_USD = Decimal(10**9)
#: What a task does when the key's spend (or this deployment's in-flight spend) cannot be read.
ON_UNKNOWN_SPEND = ("fail", "warn")


def wait_seconds(name: str, value: Any, *, task_id: str | None = None) -> float:
    """``value`` as seconds: a finite number (or ``timedelta``) above 0 and at most a week.

    Rejected: ``bool`` (a ``True`` meant as "yes" is not one second), strings (even numeric:
    a template was not rendered or a type is wrong), ``inf``/``nan`` (a deadline that never comes,
    or comparisons that are always false), and zero or negative values.
    """
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    # The range test also refuses inf and nan: every comparison with nan is false.
    valid = (isinstance(seconds, (int, float)) and not isinstance(seconds, bool)
             and 0 < seconds <= MAX_WAIT_SECONDS)
    if not valid:
        raise _invalid(task_id, name, value,
                       f"must be a finite number of seconds above 0 and at most "
                       f"{MAX_WAIT_SECONDS:.0f} (7 days), or a timedelta.")
    return float(seconds)


def _invalid(task_id: str | None, name: str, value: Any, allowed: str) -> KlingValidationError:
    """The one wording of these errors: task, parameter, value (and its type), what is allowed."""
    where = f"Task {task_id!r}: invalid" if task_id else "Invalid"
    return KlingValidationError(
        f"{where} parameter {name!r}={value!r} ({type(value).__name__}): {allowed}")


def check_destination(name: str, value: Any, *, task_id: str | None = None) -> None:
    """A download destination that can be written, checked without touching it.

    A path needs nothing more; a URI's filesystem must be installed and known (``s3://``
    without ``s3fs`` fails here, not after the video was paid for and waited on).
    """
    if isinstance(value, str):
        if not value.strip():
            raise _invalid(task_id, name, value, "a file path, a folder ending in '/', or a URI "
                           "such as 's3://bucket/videos/' is required.")
        scheme = value.split("://", 1)[0].lower() if "://" in value else ""
        if scheme and scheme not in ("file", "local"):
            # fsspec's registry: only a URI destination needs it
            import fsspec

            try:
                fsspec.get_filesystem_class(scheme)
            except (ImportError, ValueError) as exc:
                raise _invalid(task_id, name, value,
                               f"no filesystem for '{scheme}://' is available ({exc}). Install "
                               "the package or provider that supports it, or use another "
                               "destination.") from None
    elif not hasattr(value, "__fspath__") and not hasattr(value, "open"):
        raise _invalid(task_id, name, value,
                       "expected a path, a URI string or an ObjectStoragePath.")


#: A download's ``max_bytes`` when none is given: far above any Kling video (tens of MB), low
#: enough that a wrong or hostile URL cannot fill a worker's disk.
DEFAULT_MAX_BYTES = 4 * 1024**3


def check_max_bytes(value: Any, *, task_id: str | None = None) -> None:
    """``max_bytes`` is ``None`` (:data:`DEFAULT_MAX_BYTES`) or a whole number of bytes above 0."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise _invalid(task_id, "max_bytes", value,
                       "must be a whole number of bytes above 0, or None for the default "
                       f"({DEFAULT_MAX_BYTES // 1024**3} GiB).")


def check_poll_schedule(value: object, *, task_id: str | None = None) -> PollScheduleKind:
    """``value`` as a schedule kind (:mod:`kling_provider._wait.schedule`), or the error naming what
    is allowed."""
    if value not in POLL_SCHEDULES:
        raise _invalid(task_id, "poll_schedule", value,
                       f"allowed values are {', '.join(map(repr, POLL_SCHEDULES))}.")
    return value


def check_on_uncertain_submission(value: Any) -> OnUncertainSubmission:
    """Validate the ``on_uncertain_submission`` parameter (before any request)."""
    if value not in ON_UNCERTAIN_SUBMISSION:
        raise KlingValidationError(
            f"Invalid parameter 'on_uncertain_submission'={value!r}: allowed values are 'fail' "
            "(default: never risk a second payment) and 'resubmit' (submit a new generation when "
            "an earlier one cannot be found in the usage logs).")
    return value  # type: ignore[no-any-return]


def validate_max_cost(max_cost_usd: Any) -> float | None:
    """``max_cost_usd`` as a float; a clear error for anything but a positive number or ``None``."""
    if max_cost_usd is None:
        return None
    usd = float("nan")
    if isinstance(max_cost_usd, (int, float)) and not isinstance(max_cost_usd, bool):
        with contextlib.suppress(OverflowError):  # an int beyond any float stays NaN: refused
            usd = float(max_cost_usd)
    if not 0 < usd < float("inf"):  # NaN fails both comparisons
        raise KlingValidationError(
            f"Invalid parameter 'max_cost_usd'={max_cost_usd!r}: must be a finite number of US "
            "dollars above 0, or None for no limit.")
    return usd


def check_budget_usd(value: Any, *, name: str = "budget_usd", where: str = "parameter"
                     ) -> Decimal | None:
    """A budget in US dollars as an exact ``Decimal`` (``None``: no budget here).

    Numbers and their text are accepted (``12.5``, ``"12.5"``: a rendered template is text);
    ``bool``, ``0``, negatives, ``nan``/``inf`` and other text are refused. ``where`` names the
    place for the error (``"extra"`` of a connection, or a task's ``"parameter"``).
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    usd = None
    if isinstance(value, (int, float, Decimal, str)) and not isinstance(value, bool):
        with contextlib.suppress(ArithmeticError, ValueError):
            usd = Decimal(value.strip() if isinstance(value, str) else str(value))
    if usd is None or not usd.is_finite() or not 0 < usd <= MAX_BUDGET_USD:
        raise KlingValidationError(
            f"Invalid {where} {name!r}={value!r}: must be a number of US dollars above 0 and "
            "at most 1,000,000,000 (a number or its text, such as 12.5 or '12.5'), or empty for "
            "no budget.")
    return usd


def check_choice(value: Any, allowed: tuple[str, ...] | Mapping[str, Any], *, name: str,
                 where: str = "parameter") -> str:
    """``value`` (text, surrounding blanks and case ignored) as one of ``allowed``."""
    text = value.strip().lower() if isinstance(value, str) else None
    if text is None or text not in allowed:
        raise KlingValidationError(
            f"Invalid {where} {name!r}={value!r}: must be one of {', '.join(allowed)}.")
    return text


def check_budget_literals(values: Mapping[str, Any]) -> None:
    """At parse time: the budget arguments given as literal values (``budget_usd``,
    ``budget_period``, ``on_unknown_spend``); a template is checked once rendered, in execute."""
    for name, value in values.items():
        if value is None or hasattr(value, "resolve") or (
                isinstance(value, str) and ("{{" in value or "{%" in value)):
            continue
        if name == "budget_usd":
            check_budget_usd(value)
        else:
            check_choice(value, BUDGET_PERIODS if name == "budget_period" else ON_UNKNOWN_SPEND,
                         name=name)


def require_json(body: Mapping[str, Any], given: Mapping[str, Any]) -> None:
    """Refuse a body the create request could not carry, before any intent is written.

    JSON has no NaN or infinity (the HTTP client refuses to encode them), no dates or sets, and
    a lone surrogate cannot be sent as UTF-8. Found here, such a value is a clear error; found
    by the client, it would fail the task after its submission intent was written.
    """
    for name, value in body.items():
        found = _unsendable(value, name)
        if found is not None:
            path, bad, why = found
            source = "" if name in given or name == "model" else "extra_params."
            raise KlingValidationError(
                f"Invalid parameter {source + path!r}={bad!r}: {why}; the request body must be "
                "JSON (finite numbers, strings, booleans, lists and objects).")


def _unsendable(value: Any, path: str) -> tuple[str, Any, str] | None:
    """``(path, value, why)`` of the first part of ``value`` JSON cannot carry, else ``None``."""
    if value is None or isinstance(value, (bool, int)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, value, "not a finite number")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path, value, "not valid UTF-8 text"
        return None
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = _unsendable(item, f"{path}[{index}]")
            if found is not None:
                return found
        return None
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path}.{key!r}", key, "not a text key"
            found = _unsendable(item, f"{path}.{key}")
            if found is not None:
                return found
        return None
    return path, value, f"a {type(value).__name__}, which JSON cannot carry"
