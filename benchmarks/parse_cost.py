"""Benchmark: what importing a provider adds to a DAG file parse, after ``airflow.sdk``.

    .venv/bin/python benchmarks/parse_cost.py [runs]

Each figure is the median of ``runs`` (default 9) fresh interpreters that import ``airflow.sdk``
and its ``DAG``, ``BaseOperator``, ``BaseSensorOperator``, ``Asset`` first (every DAG file pays
for those, and ``airflow.sdk`` loads them lazily), then time the import of the modules a DAG file
of that provider imports, plus building one operator when the provider validates literals at
parse time. Printed beside Airflow's HTTP provider when it is installed, and beside the standard
provider's deferrable time sensor (a trigger-backed sensor, always installed). Not asserted.
"""

from __future__ import annotations

import importlib.util
import statistics
import subprocess
import sys

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 9

CASES: list[tuple[str, str, str]] = [
    ("kling: operators + sensor (import)", "",
     "import kling_provider.operators.kling, kling_provider.sensors.kling"),
    ("kling: + one operator (literals checked)", "",
     "from kling_provider.operators.kling import KlingTextToVideoOperator\n"
     "KlingTextToVideoOperator(task_id='t', prompt='p', duration=5)"),
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


def median_ms(code: str) -> float:
    samples = []
    for _ in range(RUNS):
        done = subprocess.run([sys.executable, "-c", TEMPLATE.format(code=code)],
                              capture_output=True, text=True, check=True)
        samples.append(float(done.stdout.strip().splitlines()[-1]))
    return statistics.median(samples)


def main() -> None:
    print(f"\nParse cost after `import airflow.sdk` (DAG, BaseOperator, BaseSensorOperator, Asset "
          f"loaded), median of {RUNS} fresh interpreters")
    print(f"{'what a DAG file imports':<46}{'ms':>8}")
    for label, needs, code in CASES:
        if needs and importlib.util.find_spec(needs) is None:
            print(f"{label:<46}{'not installed':>14}")
            continue
        print(f"{label:<46}{median_ms(code):>8.1f}")


if __name__ == "__main__":
    main()
