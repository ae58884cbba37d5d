"""Benchmark: what importing a provider adds to a DAG file parse, after ``airflow.sdk``.

    .venv/bin/python benchmarks/parse_cost.py [runs] [--no-bytecode]

Each figure is the median of ``runs`` (default 9) fresh interpreters that import ``airflow.sdk``
and its ``DAG``, ``BaseOperator``, ``BaseSensorOperator``, ``Asset`` first (every DAG file pays
for those, and ``airflow.sdk`` loads them lazily), then time the import of the modules a DAG file
of that provider imports, plus building one operator when the provider validates literals at
parse time. Printed beside Airflow's HTTP provider when it is installed, and beside the standard
provider's deferrable time sensor (a trigger-backed sensor, always installed). Not asserted.
The "feeds cached" rows parse with two API base URLs' deprecation feeds in the cache directory
(a parse reads them: a withdrawn model fails there), the others with an empty one; run it with
``PYTHONPATH`` at another checkout to compare (the feed files are written with this one's
package, or not at all when it has none).

The ``ms`` column imports from bytecode, as a deployment does (``pip install`` compiles it, and
the DAG processor writes what is missing): one discarded interpreter per row first writes it to a
private ``PYTHONPYCACHEPREFIX``. ``--no-bytecode`` adds a column where every import compiles its
source again (``PYTHONDONTWRITEBYTECODE=1`` and a venv installed by uv without
``--compile-bytecode``, like this project's dev environment): that column counts the size of the
source each import reads, not what a deployed DAG processor spends.
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile

ARGS = [a for a in sys.argv[1:] if not a.startswith("--")]
RUNS = int(ARGS[0]) if ARGS else 9
NO_BYTECODE = "--no-bytecode" in sys.argv

#: Rows whose parse finds a deprecation feed cached (two API base URLs, 40 entries each, as a
#: task left them): the parse reads the files. Other rows run with an empty cache directory.
FEED_CACHED = "kling, feeds cached"

CASES: list[tuple[str, str, str]] = [
    ("kling: operators + sensor (import)", "",
     "import kling_provider.operators.kling, kling_provider.sensors.kling"),
    ("kling: + one operator (literals checked)", "",
     "from kling_provider.operators.kling import KlingTextToVideoOperator\n"
     "KlingTextToVideoOperator(task_id='t', prompt='p', duration=5)"),
    ("kling: + 20 operators (literals checked)", "",
     "from kling_provider.operators.kling import KlingTextToVideoOperator\n"
     "for n in range(20): KlingTextToVideoOperator(task_id=f't{n}', prompt='p', duration=5)"),
    (f"{FEED_CACHED}: + one operator", "",
     "from kling_provider.operators.kling import KlingTextToVideoOperator\n"
     "KlingTextToVideoOperator(task_id='t', prompt='p', duration=5)"),
    (f"{FEED_CACHED}: + 20 operators", "",
     "from kling_provider.operators.kling import KlingTextToVideoOperator\n"
     "for n in range(20): KlingTextToVideoOperator(task_id=f't{n}', prompt='p', duration=5)"),
    ("kling: trigger module (not needed to parse)", "", "import kling_provider.triggers.kling"),
    ("airflow.triggers.base alone", "", "import airflow.triggers.base"),
    ("http provider: HttpOperator + HttpSensor", "airflow.providers.http",
     "import airflow.providers.http.operators.http, airflow.providers.http.sensors.http"),
    ("standard: DateTimeSensorAsync module", "",
     "import airflow.providers.standard.sensors.date_time"),
]

#: What every DAG file imports anyway, so it is not counted against any provider.
TEMPLATE = """
import time, airflow.sdk
from airflow.sdk import DAG, Asset, BaseOperator, BaseSensorOperator, BaseOperatorLink
started = time.perf_counter()
{code}
print((time.perf_counter() - started) * 1000)
"""


def run_ms(code: str, env: dict[str, str]) -> float:
    done = subprocess.run([sys.executable, "-c", TEMPLATE.format(code=code)],
                          capture_output=True, text=True, check=True, env=env)
    return float(done.stdout.strip().splitlines()[-1])


def median_ms(code: str, env: dict[str, str]) -> float:
    return statistics.median(run_ms(code, env) for _ in range(RUNS))


def cache_feeds(directory: str) -> None:
    """Two API base URLs' feeds as tasks cache them, each 40 entries none of which the parsed
    model is (the parse reads them all and finds nothing)."""
    from pathlib import Path

    try:
        from kling_provider._models.feeds import Feed, FeedCache
        from kling_provider._models.retirement import Retirement
    except ImportError:  # an older checkout: it reads no feed at parse
        return
    for host in ("https://api.aimlapi.com", "https://staging.example.test"):
        FeedCache(Path(directory)).store(Feed(host, '"etag"', 0.0, tuple(
            Retirement(f"klingai/retired-{n}", (f"kling-retired-{n}",), "deprecated",
                       "2026-06-01", "2026-12-01", "klingai/v2.1-master-text-to-video")
            for n in range(40))))


def main() -> None:
    base = {k: v for k, v in os.environ.items()
            if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    print(f"\nParse cost after `import airflow.sdk` (DAG, BaseOperator, BaseSensorOperator, Asset "
          f"loaded), median of {RUNS} fresh interpreters")
    print(f"{'what a DAG file imports':<46}{'ms':>8}" + (f"{'no bytecode':>14}" if NO_BYTECODE
                                                         else ""))
    with tempfile.TemporaryDirectory(prefix="parse-cost-pyc-") as cache, \
            tempfile.TemporaryDirectory(prefix="parse-cost-feeds-") as feeds, \
            tempfile.TemporaryDirectory(prefix="parse-cost-no-feeds-") as no_feeds:
        cache_feeds(feeds)
        for label, needs, code in CASES:
            directory = feeds if label.startswith(FEED_CACHED) else no_feeds
            compiled = {**base, "PYTHONPYCACHEPREFIX": cache, "KLING_PROVIDER_CACHE_DIR": directory}
            uncompiled = {**base, "PYTHONDONTWRITEBYTECODE": "1",
                          "KLING_PROVIDER_CACHE_DIR": directory}
            if needs and importlib.util.find_spec(needs) is None:
                print(f"{label:<46}{'not installed':>14}")
                continue
            run_ms(code, compiled)  # writes the bytecode this row's imports need
            row = f"{label:<46}{median_ms(code, compiled):>8.1f}"
            if NO_BYTECODE:
                row += f"{median_ms(code, uncompiled):>14.1f}"
            print(row, flush=True)


if __name__ == "__main__":
    main()
