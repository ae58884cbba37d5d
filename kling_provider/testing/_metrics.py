"""The simulator's ``GET /models/metrics`` (live model timings), as the AI/ML API publishes it.

Used by the simulator's HTTP handler: ``duration_ms`` percentiles of the generations that
completed successfully in the last :data:`METRICS_WINDOW` seconds, per model; a model without
one is absent (no data), not zero.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from kling_provider.catalogue import endpoint_path

if TYPE_CHECKING:
    from kling_provider.testing._service import Generation
    from kling_provider.testing.simulator import KlingSimulator

__all__ = ["METRICS_WINDOW", "answer"]

#: The sliding window of ``/models/metrics``, in seconds (the published example's).
METRICS_WINDOW = 300


def seconds_to_finish(sim: KlingSimulator, generation: Generation) -> float:
    """Real seconds from creation to completion (what the live metrics measure)."""
    generating = sim.generating_seconds * (2 if generation.duration >= 10 else 1)
    return (sim.queued_seconds + generating) / sim.time_scale


def answer(sim: KlingSimulator, aliases: list[str] | None) -> dict[str, Any]:
    """The answer to ``GET /models/metrics`` (``aliases``: the models asked for, or all)."""
    now = sim.clock()
    finished: dict[str, list[float]] = {}
    with sim._lock:
        for g in sim._generations.values():
            took = seconds_to_finish(sim, g)
            if g.faults.error is None and now - METRICS_WINDOW <= g.created + took <= now:
                finished.setdefault(g.model, []).append(took * 1000)
    models = []
    for model, times in sorted(finished.items()):
        if aliases is not None and model not in aliases:
            continue
        times.sort()
        percentiles = {f"p{q}": round(times[min(len(times) - 1, len(times) * q // 100)])
                       for q in (50, 75, 90, 99)}
        models.append({"alias": model, "endpoint": endpoint_path(sim._family_of(model)),
                       "metrics": {"duration_ms": percentiles}})
    return {"window_seconds": METRICS_WINDOW,
            "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S.000Z",
                                          time.gmtime(sim.service_time())),
            "models": models}
