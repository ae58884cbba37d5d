"""How long a generation is expected to take: live ``/models/metrics`` or the documented table.

Pure data and functions (no I/O): the hook fetches ``GET /models/metrics`` through its drivers and
hands the body to :func:`live_expectation`; :class:`MetricsCache` decides when a model's
figures are due for a refresh. The documented table (``data/generation_times.json``, derived from
the model pages) is the fallback when the live figures are missing, unreachable or stale, so a
wait never depends on that endpoint.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache, lru_cache
from importlib import resources
from typing import Any

from kling_provider.catalogue import list_models

#: The model a generation id names is written path-style by the API
#: (``<uuid>:kling-video/v2/master/text-to-video`` for ``klingai/v2-master-text-to-video``).
_PATH_STYLE = re.compile(r"klingai/(v[\d.]+)-(master|pro|standard)-(.+)")
#: Live figures are reused this long per model and process: one request per model every ten
#: minutes, however many waits a triggerer runs.
METRICS_TTL = 600.0


@dataclass(frozen=True)
class Expectation:
    """When a generation should finish, in seconds after submission.

    ``[early, late]`` is where most generations finish (polls are dense there); ``tail`` is the
    slow end beyond which polls back off to the longest allowed gap.
    """

    early: float
    typical: float
    late: float
    tail: float
    source: str = field(default="documented", compare=False)

    def scaled(self, factor: float, source: str | None = None) -> Expectation:
        return Expectation(self.early * factor, self.typical * factor, self.late * factor,
                           self.tail * factor, source or self.source)

    @classmethod
    def from_range(cls, fastest: float, slowest: float, source: str) -> Expectation:
        spread = max(slowest - fastest, 0.1 * slowest)
        return cls(fastest, (fastest + slowest) / 2, slowest, slowest + spread, source)


@cache
def _table() -> dict[str, Any]:
    text = resources.files("kling_provider").joinpath("data/generation_times.json").read_text(
        "utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def generation_id_path(model: str) -> str:
    """The model part of a generation id, as the API writes it (``kling-video/v2/master/...``)."""
    found = _PATH_STYLE.fullmatch(model)
    if found:
        return f"kling-video/{found[1]}/{found[2]}/{found[3]}"
    return model.replace("klingai/", "kling-video/", 1)


@cache
def _models_by_path() -> dict[str, str]:
    return {generation_id_path(model): model for model in list_models()}


def model_from_generation_id(generation_id: str) -> str | None:
    """The catalogue model a generation id names, or ``None`` when it names none we know."""
    _, sep, path = generation_id.partition(":")
    if not sep:
        return None
    return _models_by_path().get(path) or (path if path in _table()["models"] else None)


@lru_cache(maxsize=256)
def documented_expectation(model: str | None, duration: int | None = None) -> Expectation:
    """The model page's figure for this video length (a generic one for undocumented models).

    Cached: the figure is fixed, and every wait of a triggerer holds one (a shared one).

    Pages that give no figure for a longer video are scaled like the ones that do (about 2x for
    10 s instead of 5 s).
    """
    known = (model or "") in _table()["models"]
    entry = _table()["models"].get(model or "", _table()["default"])
    column, factor = "5", 1.0
    if duration and duration > 5:
        if str(duration) in entry:
            column = str(duration)
        else:
            factor = float(_table()["ten_second_factor"]) * duration / 10
    fastest, slowest = entry[column]
    return Expectation.from_range(fastest, slowest,
                                  "documented" if known else "default").scaled(factor)


def live_expectation(body: Any, model: str) -> Expectation | None:
    """The live ``duration_ms`` percentiles of ``model`` from a ``/models/metrics`` answer.

    ``None`` when the model is absent (the API lists only models with successful requests in its
    window: absence means "no data", not "instant") or the answer is not the documented shape.
    The window mixes video lengths; it is read as the 5 s figure (the default length).
    """
    if not isinstance(body, Mapping) or not isinstance(body.get("models"), list):
        return None
    for entry in body["models"]:
        if not isinstance(entry, Mapping) or entry.get("alias") != model:
            continue
        metrics = entry.get("metrics")
        timing = metrics.get("duration_ms") if isinstance(metrics, Mapping) else None
        try:
            p50, p90, p99 = (float(timing[k]) / 1000 for k in ("p50", "p90", "p99"))  # type: ignore[index]
        except (TypeError, KeyError, ValueError):
            return None
        if not 0 < p50 <= p90 <= p99:
            return None
        return Expectation(max(p50 - (p90 - p50), p50 / 2), p50, p90, p99, "live")
    return None


@dataclass
class MetricsCache:
    """Per-process memory of live figures: ``{model: (fetched_at, expectation or None)}``.

    A failed or empty lookup is remembered too, so an unreachable metrics endpoint costs one
    request per model per :data:`METRICS_TTL`, not one per wait.
    """

    ttl: float = METRICS_TTL
    entries: dict[str, tuple[float, Expectation | None]] = field(default_factory=dict)

    def due(self, model: str, now: float) -> bool:
        entry = self.entries.get(model)
        return entry is None or now - entry[0] >= self.ttl

    def store(self, model: str, expectation: Expectation | None, now: float) -> None:
        self.entries[model] = (now, expectation)

    def expectation(self, model: str | None, duration: int | None) -> Expectation:
        """The live figure when one is cached, else the documented one; scaled for ``duration``.

        Live figures are scaled by the documented ratio between this length and 5 s (the model
        pages give 5-6 min against 11-14 min for the v2 masters).
        """
        entry = self.entries.get(model or "")
        live = entry[1] if entry else None
        documented = documented_expectation(model, duration)
        if live is None:
            return documented
        return live.scaled(documented.typical / documented_expectation(model, 5).typical)
