"""What ``make test`` runs after setting up: lint and docs, the whole suite, and the version matrix.

Two lanes run side by side, because each keeps about one core busy: the main suite's integration
tests mostly wait on real Airflow processes (heartbeats, a simulator at a fixed time scale), and
the matrix is one pytest process at a time plus its production-shaped clusters. On a 2-core
machine the two lanes take about as long as the longer one; one after the other they took
30 minutes.

- lane ``suite``: ``make lint docs``, then the whole suite in ``.venv``, serially by default.
  ``--workers N`` (or ``KLING_TEST_WORKERS``) spreads it over pytest-xdist workers, each test file
  whole in one worker; on 2 cores with the matrix beside it that overloads the machine and the
  real-Airflow tests' deadlines (measured: 3 workers under load timed out 5 of 57 integration
  tests), so it is for bigger machines;
- lane ``matrix``: ``tools/matrix.py`` (its output goes to ``test-artifacts/matrix.log`` and is
  printed when the suite lane has finished, so the two never interleave).

Prints each lane's wall time and one closing line over both: ``tests: N passed, N failed, N
skipped``. Exits non-zero when either lane failed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: tools/ is this project's, not an installed package
from tools.matrix import junit_summary  # noqa: E402

ARTIFACTS = ROOT / "test-artifacts"
BIN = Path(sys.executable).parent


@dataclass
class Lane:
    """One sequence of commands; the first failing command ends the lane."""

    name: str
    commands: list[list[str]]
    log: Path | None = None  # None: the lane's output goes to this terminal as it comes
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
                    return
        finally:
            self.seconds = time.monotonic() - started
            if out:
                out.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default=os.environ.get("KLING_TEST_WORKERS", "0"),
                        help="pytest-xdist workers for the main suite (default 0: serially)")
    args = parser.parse_args(argv)
    ARTIFACTS.mkdir(exist_ok=True)
    suite_junit = ARTIFACTS / "junit-suite.xml"
    matrix_junits = ARTIFACTS / "matrix-junit"
    suite_junit.unlink(missing_ok=True)
    make = os.environ.get("MAKE", "make")
    pytest = [str(BIN / "pytest"), f"--junitxml={suite_junit}"]
    if args.workers != "0":
        pytest += ["-n", args.workers, "--dist", "loadfile"]
    suite = Lane("suite", [[make, "--no-print-directory", "lint", "docs"], pytest])
    matrix = Lane("matrix", [[str(BIN / "python"), "tools/matrix.py", "--junit-dir", str(matrix_junits)]],
                  log=ARTIFACTS / "matrix.log")
    threads = [threading.Thread(target=lane.run, name=lane.name) for lane in (suite, matrix)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    print(f"\n== version matrix (ran beside the suite; {matrix.log})", flush=True)
    assert matrix.log is not None
    sys.stdout.write(matrix.log.read_text(errors="replace"))
    junits = [suite_junit, *sorted(matrix_junits.glob("*.xml"))]
    counts = [junit_summary(path)[:3] for path in junits if path.exists()]
    passed, failed, skipped = (sum(c[i] for c in counts) for i in range(3))
    print("\nmake test lanes (wall time, side by side):")
    for lane in (suite, matrix):
        state = "ok" if lane.returncode == 0 else f"FAILED ({' '.join(lane.failed_command)})"
        print(f"  {lane.name:<7} {lane.seconds:7.1f} s  {state}")
    print(f"tests: {passed} passed, {failed} failed, {skipped} skipped", flush=True)
    return 0 if suite.returncode == 0 and matrix.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
