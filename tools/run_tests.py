"""What ``make test`` runs after setting up: lint and docs, the whole suite, and the version matrix.

Three lanes run side by side, sorted by how they use a 2-core machine:

- ``clusters``: the test files that start a whole real Airflow (:data:`CLUSTER_TESTS`), one after
  the other in ``.venv``. They mostly wait on Airflow's heartbeats and on generations at a fixed
  time scale, and they are the longest lane, so it starts at once and nothing else shares it;
- ``suite``: ``make lint docs``, then every other test file of the suite in ``.venv`` (unit tests
  and the integration tests that need no cluster: they keep a core busy), then unit runs of the
  version matrix (``tools/matrix.py``: one venv per Airflow minor and Python);
- ``matrix``: the production-shaped test (PostgreSQL, Celery, two triggerers: it waits on its
  cluster as the ``clusters`` lane does) in ``.venv`` and then in the matrix's venvs
  (:data:`MATRIX_LANE_TESTS`), then unit runs of the matrix. The two
  lanes take the matrix's unit runs from one list, each when it is free, so they end together.

The ``clusters`` lane prints as it goes; the others' output goes to ``test-artifacts/`` and is
printed when all have finished, so nothing interleaves. ``--workers N`` (or
``KLING_TEST_WORKERS``) spreads each pytest run of the main suite over pytest-xdist workers, each
test file whole in one worker; on 2 cores that overloads the machine and the real-Airflow tests'
deadlines (measured: 3 workers under load timed out 5 of 57 integration tests), so it is for
bigger machines.

Prints each lane's wall time and one closing line over all: ``tests: N passed, N failed, N
skipped``. Exits non-zero when any lane failed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: tools/ is this project's, not an installed package
from tools.matrix import ENTRIES, Matrix, junit_summary  # noqa: E402

ARTIFACTS = ROOT / "test-artifacts"
BIN = Path(sys.executable).parent
#: The suite's files that start a whole real Airflow (api-server, scheduler, dag-processor,
#: triggerer; tests/test_cluster_lane.py checks that every file starting one is named here).
CLUSTER_TESTS = (
    "tests/test_real_airflow.py",
    "tests/test_worker_starts.py",
    "tests/test_run_total_airflow.py",
    "tests/test_budget_airflow.py",
    "tests/test_delivery_real_airflow.py",
    "tests/test_review_real_airflow.py",
    "tests/test_gallery_browser.py",
    "tests/test_production_cluster.py",
    "tests/test_chaos.py",
    "tests/test_local_airflow.py",
)
#: The one of them that runs in the ``matrix`` lane, before the matrix's own runs of it: the
#: ``clusters`` lane is the longest, and this moves ~150 s of it where the lanes even out.
MATRIX_LANE_TESTS = ("tests/test_production_cluster.py",)


@dataclass
class Lane:
    """Commands one after the other, the first failing one ending them; then ``after`` (the
    matrix's part of the lane), which runs whatever the commands returned."""

    name: str
    commands: list[list[str]]
    log: Path | None = None  # None: the lane's output goes to this terminal as it comes
    after: Callable[[], None] | None = None
    returncode: int = 0
    seconds: float = 0.0
    failed_command: list[str] = field(default_factory=list)

    def run(self) -> None:
        started = time.monotonic()
        out = self.log.open("wb") if self.log else None
        try:
            for command in self.commands:
                done = subprocess.run(command, cwd=ROOT, stdout=out,
                                      stderr=subprocess.STDOUT if out else None, check=False)
                if done.returncode != 0:
                    self.returncode, self.failed_command = done.returncode, command
                    break
        finally:
            if out:
                out.close()
            try:
                if self.after:
                    self.after()
            finally:
                self.seconds = time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default=os.environ.get("KLING_TEST_WORKERS", "0"),
                        help="pytest-xdist workers for the main suite (default 0: serially)")
    args = parser.parse_args(argv)
    ARTIFACTS.mkdir(exist_ok=True)
    junits = {name: ARTIFACTS / f"junit-{name}.xml" for name in ("clusters", "suite", "matrix")}
    for junit in junits.values():
        junit.unlink(missing_ok=True)
    make = os.environ.get("MAKE", "make")
    pytest = [str(BIN / "pytest")]
    if args.workers != "0":
        pytest += ["-n", args.workers, "--dist", "loadfile"]
    matrix = Matrix(list(ENTRIES), bool(os.environ.get("CI")), ARTIFACTS / "matrix-junit")
    lanes = [
        Lane("clusters", [[*pytest, f"--junitxml={junits['clusters']}",
                           *(path for path in CLUSTER_TESTS if path not in MATRIX_LANE_TESTS)]]),
        Lane("suite", [[make, "--no-print-directory", "lint", "docs"],
                       [*pytest, f"--junitxml={junits['suite']}",
                        *(f"--ignore={path}" for path in CLUSTER_TESTS)]],
             log=ARTIFACTS / "suite.log", after=matrix.run_busy),
        Lane("matrix", [[*pytest, f"--junitxml={junits['matrix']}", *MATRIX_LANE_TESTS]],
             log=ARTIFACTS / "matrix-lane.log", after=matrix.run_waiting),
    ]
    threads = [threading.Thread(target=lane.run, name=lane.name) for lane in lanes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    for lane, what in ((lanes[1], "lint, docs and the rest of the suite"),
                       (lanes[2], f"{' '.join(MATRIX_LANE_TESTS)} in .venv")):
        print(f"\n== {what} (ran beside the clusters; {lane.log})", flush=True)
        assert lane.log is not None
        sys.stdout.write(lane.log.read_text(errors="replace"))
    print(f"\n== version matrix (ran beside the suite; {matrix.out_dir})", flush=True)
    matrix_returncode = matrix.report()
    files = [*junits.values(), *sorted(matrix.out_dir.glob("junit-*.xml"))]
    counts = [junit_summary(path)[:3] for path in files if path.exists()]
    passed, failed, skipped = (sum(c[i] for c in counts) for i in range(3))
    print("\nmake test lanes (wall time, side by side):")
    for lane in lanes:
        state = "ok" if lane.returncode == 0 else f"FAILED ({' '.join(lane.failed_command)})"
        print(f"  {lane.name:<8} {lane.seconds:7.1f} s  {state}")
    print(f"tests: {passed} passed, {failed} failed, {skipped} skipped", flush=True)
    return 0 if all(lane.returncode == 0 for lane in lanes) and matrix_returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
