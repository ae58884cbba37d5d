"""Benchmark: GETs per generation and detection lag, seed loop (fixed 10 s) against the schedules.

    .venv/bin/python benchmarks/polling.py [generations] [seed]

Runs the provider's own wait (``_waiting.wait_steps``, the generator every waiting path drives) on
a virtual clock: no server, no real waiting. Each simulated generation draws a model and a video
length, then a duration around the model page's documented time (80 % inside the documented
range, 10 % up to 20 % faster, 10 % up to 50 % slower) or, for 2 %, a fast failure (moderation,
a bad image) 8-30 s after submission. Detection lag = when the wait saw the end - when it
happened.

Rows: the seed loop of the docs (poll at once, then every 10 s), and the adaptive schedule with
the documented table only and with live ``/models/metrics`` figures (the metrics answer is built
from the same draws, as the live endpoint would report them). Columns besides GETs and lag:

- ``fail found``: the median seconds after submission at which 1,000 fast failures (8-30 s,
  drawn apart from the mix above) were seen;
- ``lockstep``: 1,000 generations of one model submitted in the same second (a mapped task):
  the largest number of their polls that fall in any one second of their wait.

Numbers are printed, not asserted.
"""

from __future__ import annotations

import collections
import logging
import random
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from kling_provider._api import protocol as _protocol
from kling_provider._wait import timings as _timings
from kling_provider._wait import waiting as _waiting
from kling_provider.exceptions import KlingGenerationFailedError

GENERATIONS = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
SEED = int(sys.argv[2]) if len(sys.argv) > 2 else 9
T0 = 1_800_000_000.0
#: The mix: half v2/v2.1 master (the seed's models, a third of them 10 s videos), half the others.
MASTER = ["klingai/v2-master-text-to-video", "klingai/v2.1-master-text-to-video",
          "klingai/v2.1-master-image-to-video"]


@dataclass
class Drawn:
    model: str
    duration: int
    ends_after: float
    fails: bool


def draw(rng: random.Random) -> Drawn:
    table = _timings._table()["models"]
    if rng.random() < 0.5:
        model, duration = rng.choice(MASTER), rng.choice([5, 5, 10])
    else:
        model, duration = rng.choice(sorted(m for m in table if m not in MASTER)), 5
    fastest, slowest = table[model].get(str(duration), table[model]["5"])
    roll = rng.random()
    if roll < 0.1:
        ends = rng.uniform(0.8 * fastest, fastest)
    elif roll < 0.2:
        ends = rng.uniform(slowest, 1.5 * slowest)
    else:
        ends = rng.uniform(fastest, slowest)
    fails = rng.random() < 0.02
    return Drawn(model, duration, rng.uniform(8.0, 30.0) if fails else ends, fails)


def metrics_body(drawn: list[Drawn]) -> dict[str, Any]:
    """``/models/metrics`` as the live endpoint would report these generations (5 s videos)."""
    models = []
    for model in sorted({d.model for d in drawn}):
        times = sorted(d.ends_after for d in drawn
                       if d.model == model and d.duration == 5 and not d.fails)
        if len(times) < 5:
            continue
        p = {q: times[min(len(times) - 1, int(len(times) * q / 100))] * 1000 for q in (50, 90, 99)}
        models.append({"alias": model, "endpoint": "/v2/video/generations",
                       "metrics": {"duration_ms": {"p50": p[50], "p75": p[50], "p90": p[90],
                                                   "p99": p[99]}}})
    return {"window_seconds": 300, "generated_at": "2026-11-22T00:00:00Z", "models": models}


def run_one(gen: Drawn, schedule: str, interval: float, metrics: dict[str, Any] | None,
            cache: _timings.MetricsCache, number: int = 0) -> list[float]:
    """Drive one wait on a virtual clock; return when it polled (seconds after submission)."""
    clock = [T0]
    gid = f"00000000-0000-4000-8000-{number:012d}:{_timings.generation_id_path(gen.model)}"

    def answer(request: _protocol.ApiRequest) -> httpx.Response:
        if request.operation == "metrics":
            return httpx.Response(200, json=metrics) if metrics else httpx.Response(404)
        done = clock[0] - T0 >= gen.ends_after
        if done and gen.fails:
            return httpx.Response(200, json={"id": gid, "status": "failed",
                                             "error": {"name": "ModerationError", "message": "x"}})
        if done:
            return httpx.Response(200, json={"id": gid, "status": "completed",
                                             "video": {"url": "https://cdn.test/v.mp4"}})
        return httpx.Response(200, json={"id": gid, "status": "generating"})

    steps = _waiting.wait_steps(
        "legacy", gid, poll_interval=interval, deadline=T0 + 3600, now=lambda: clock[0],
        policy=_protocol.RetryPolicy(), conn_id="bench", poll_schedule=schedule,  # type: ignore[arg-type]
        started_at=T0, model=gen.model, duration=gen.duration, timings=cache,
        live_timings=metrics is not None)
    polls: list[float] = []
    reply = None
    try:
        while True:
            step = steps.send(reply)
            if isinstance(step, _protocol.ApiRequest):
                if step.operation == "fetch":
                    polls.append(clock[0] - T0)
                reply = answer(step)
            else:
                clock[0] += step
                reply = None
    except StopIteration:
        pass
    except KlingGenerationFailedError:
        pass
    return polls


def lockstep(run: Callable[[Drawn, int], list[float]]) -> int:
    """The most polls in one second of 1,000 waits of one model submitted in the same second."""
    same = Drawn(MASTER[0], 5, 330.0, False)
    per_second = collections.Counter(int(t) for n in range(1000) for t in run(same, n))
    return max(per_second.values())


def main() -> None:
    logging.getLogger("kling_provider").setLevel(logging.WARNING)  # one line per status otherwise
    rng = random.Random(SEED)
    drawn = [draw(rng) for _ in range(GENERATIONS)]
    failing = [Drawn(MASTER[0], 5, rng.uniform(8.0, 30.0), True) for _ in range(1000)]
    live = metrics_body(drawn)
    documented, with_live = _timings.MetricsCache(), _timings.MetricsCache()
    rows: list[tuple[str, Callable[[Drawn, int], list[float]]]] = [
        ("seed loop: fixed, every 10 s", lambda g, n: run_one(g, "fixed", 10, None, documented, n)),
        ("adaptive, documented table",
         lambda g, n: run_one(g, "adaptive", 60, None, documented, n)),
        ("adaptive, live /models/metrics",
         lambda g, n: run_one(g, "adaptive", 60, live, with_live, n)),
    ]
    print(f"\n{GENERATIONS} simulated generations (seed {SEED}), virtual clock; "
          "lag = seconds from the end of a generation to the poll that saw it")
    print(f"{'schedule':<32}{'GETs/gen':>9}{'vs seed':>8}{'median lag':>11}{'p95 lag':>8}"
          f"{'vs seed':>8}{'max lag':>8}{'fail found':>11}{'lockstep':>9}")
    seed: dict[str, float] = {}
    for name, run in rows:
        polls = [run(g, n) for n, g in enumerate(drawn)]
        gets = statistics.mean(len(p) for p in polls)
        lags = sorted(p[-1] - g.ends_after for p, g in zip(polls, drawn, strict=True))
        p95 = lags[int(0.95 * len(lags))]
        found = statistics.median(run(g, n)[-1] for n, g in enumerate(failing))
        seed = seed or {"gets": gets, "p95": p95}
        print(f"{name:<32}{gets:>9.1f}{gets / seed['gets']:>8.0%}{statistics.median(lags):>11.1f}"
              f"{p95:>8.1f}{p95 / seed['p95']:>7.2f}x{lags[-1]:>8.1f}{found:>10.1f}s"
              f"{lockstep(run):>9}")


if __name__ == "__main__":
    main()
