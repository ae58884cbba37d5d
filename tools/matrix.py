"""The version matrix `make test` runs beside the main suite: each Airflow minor and Python we name.

The main suite (`.venv`, requirements/dev.lock: Airflow 3.3, the default ``python3``) runs
everything. Each entry below adds one venv, ``.venv-<name>``, built by tools/bootstrap.py from its
lock and kept between runs (a re-run only re-checks a stamp), and runs a part of the suite in it.
An entry whose Python is not on this machine is reported as not run; under CI (``CI`` set) that,
and a production-shaped test that skipped, fail the run, since the README claims them.

Two sequences run side by side (:class:`Matrix`), because they use the machine differently: the
unit runs keep a core busy, while a production-shaped test mostly waits on its cluster. Each venv
is built by whichever sequence needs it first; each set-up's and run's output goes to
``<junit dir>/<entry>-<run>.log`` and is printed in entry order at the end, so nothing
interleaves. ``make test`` (tools/run_tests.py) runs the two sequences in different lanes.

Prints one table: entry, the Airflow and Python really found in the venv, what ran, the result,
and the seconds spent setting up and testing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UNIT = ("unit suite", ["-m", "not integration"])
PRODUCTION = ("production-shaped test", ["tests/test_production_cluster.py"])


@dataclass(frozen=True)
class Entry:
    """One venv of the matrix: a lock, a Python minor, and the test selections run in it."""

    name: str
    lock: str
    python: str
    runs: tuple[tuple[str, list[str]], ...]


ENTRIES = (
    Entry("af3.1-py3.10", "requirements/airflow-3.1.lock", "3.10", (UNIT,)),
    Entry("af3.2-py3.13", "requirements/airflow-3.2.lock", "3.13", (UNIT,)),
    Entry("af3.3-py3.10", "requirements/dev.lock", "3.10", (UNIT, PRODUCTION)),
    Entry("af3.3-py3.12", "requirements/dev.lock", "3.12", (UNIT, PRODUCTION)),
    Entry("af3.3-py3.13", "requirements/dev.lock", "3.13", (UNIT, PRODUCTION)),
)


def find_python(minor: str) -> str | None:
    """An interpreter of this minor: $KLING_PYTHON_3_10, python3.10 on PATH, or pyenv's install."""
    candidates = [os.environ.get(f"KLING_PYTHON_{minor.replace('.', '_')}", ""), f"python{minor}"]
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    if pyenv.is_dir():
        candidates += [str(p / "bin" / f"python{minor}")
                       for p in sorted(pyenv.glob(f"{minor}.*"), reverse=True)]
    for candidate in filter(None, candidates):
        try:
            done = subprocess.run(
                [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2]); "
                                  "print(sys.executable)"],
                capture_output=True, text=True, check=False, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        lines = done.stdout.split()
        if done.returncode == 0 and lines and lines[0] == minor:
            return lines[1]
    return None


@dataclass
class Row:
    """One line of the printed table; each run's outcome is kept under its label, since the unit
    run and the production-shaped test of one entry finish in different threads."""

    entry: str
    found: str = "-"
    failure: str = ""  # why nothing ran ("not run: ...", "FAILED: ...")
    ok: bool = True
    setup_s: float = 0.0
    runs: dict[str, tuple[str, float, tuple[int, int, int], bool]] = field(default_factory=dict)

    def ran(self, entry: Entry) -> str:
        return " + ".join(label for label, _ in entry.runs) if self.runs else "-"

    def result(self, entry: Entry) -> str:
        return self.failure or "; ".join(self.runs[label][0] for label, _ in entry.runs
                                         if label in self.runs)

    def tests_s(self) -> float:
        return sum(seconds for _, seconds, _, _ in self.runs.values())

    def counts(self) -> tuple[int, int, int]:
        passed = failed = skipped = 0
        for _, _, (p, f, s), _ in self.runs.values():
            passed, failed, skipped = passed + p, failed + f, skipped + s
        return passed, failed, skipped

    def passed(self) -> bool:
        return self.ok and all(run[3] for run in self.runs.values())


def junit_summary(junit: Path) -> tuple[int, int, int, list[str]]:
    """(passed, failed, skipped, skip reasons) from pytest's JUnit XML."""
    passed = failed = skipped = 0
    reasons: list[str] = []
    for case in ET.parse(junit).getroot().iter("testcase"):  # noqa: S314 (our own pytest's file)
        skip = case.find("skipped")
        if skip is not None:
            skipped += 1
            reasons.append(skip.get("message", ""))
        elif case.find("failure") is not None or case.find("error") is not None:
            failed += 1
        else:
            passed += 1
    return passed, failed, skipped, reasons


def set_up(entry: Entry, strict: bool, row: Row, out_dir: Path) -> bool:
    """Build the entry's venv (its output in ``<out_dir>/<entry>-setup.log``); False, with ``row``
    saying why, when its runs cannot start."""
    python = find_python(entry.python)
    if python is None:
        why = (f"no Python {entry.python} here (put python{entry.python} on PATH or set "
               f"KLING_PYTHON_{entry.python.replace('.', '_')})")
        row.failure, row.ok = ("FAILED: " if strict else "not run: ") + why, not strict
        return False
    venv = ROOT / f".venv-{entry.name}"
    started = time.monotonic()
    with (out_dir / f"{entry.name}-setup.log").open("w") as out:
        built = subprocess.run([sys.executable, str(ROOT / "tools" / "bootstrap.py"), "--venv",
                                str(venv), "--lock", str(ROOT / entry.lock), "--python", python],
                               stdout=out, stderr=subprocess.STDOUT, check=False)
    row.setup_s = time.monotonic() - started
    if built.returncode != 0:
        row.failure, row.ok = "FAILED: venv set-up (see its output above)", False
        return False
    row.found = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "import sys, airflow; print(f'Airflow {airflow.__version__}, Python {sys.version.split()[0]}')"],
        capture_output=True, text=True, check=False).stdout.strip()
    return True


def run_tests(entry: Entry, label: str, selection: list[str], row: Row, strict: bool,
              out_dir: Path) -> None:
    """One pytest run of ``selection`` in the entry's venv; its output goes to a log in ``out_dir``."""
    venv = ROOT / f".venv-{entry.name}"
    name = f"{entry.name}-{label.split()[0]}"
    junit = out_dir / f"junit-{name}.xml"
    junit.unlink(missing_ok=True)
    started = time.monotonic()
    with (out_dir / f"{name}.log").open("w") as out:
        out.write(f"\n== matrix {entry.name}: {label} ({row.found})\n")
        out.flush()
        done = subprocess.run([str(venv / "bin" / "python"), "-m", "pytest", "-q",
                               "-p", "no:cacheprovider", f"--junitxml={junit}", *selection],
                              cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, check=False)
    seconds = time.monotonic() - started
    passed, failed, skipped, reasons = junit_summary(junit) if junit.exists() else (0, 0, 0, [])
    text, ok = f"{label}: {passed} passed, {failed} failed, {skipped} skipped", True
    if done.returncode != 0:
        text, ok = f"{text} (FAILED)", False
    elif label == PRODUCTION[0] and (skipped or not passed):
        text += f" ({'; '.join(reasons) or 'nothing ran'})"
        ok = not strict
    row.runs[label] = (text, seconds, (passed, failed, skipped), ok)


class Matrix:
    """The entries' venvs and runs, taken by sequences that may run side by side (threads):
    :meth:`run_waiting` runs the production-shaped tests (they mostly wait on their cluster), then
    helps with the unit runs; :meth:`run_busy` takes unit runs (they keep a core busy) until none
    is left. Each venv is built once, by whichever sequence needs it first; :meth:`report` prints
    every output in entry order."""

    def __init__(self, entries: list[Entry], strict: bool, out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        for stale in (*out_dir.glob("junit-*.xml"), *out_dir.glob("*.log")):  # an earlier run's
            stale.unlink()
        self.entries, self.strict, self.out_dir = entries, strict, out_dir
        self.rows = {entry.name: Row(entry.name) for entry in entries}
        self._built: dict[str, bool] = {}
        self._locks = {entry.name: threading.Lock() for entry in entries}
        self._units = [(entry, label, selection) for entry in entries
                       for label, selection in entry.runs if label != PRODUCTION[0]]
        self._units_lock = threading.Lock()

    def _venv(self, entry: Entry) -> bool:
        with self._locks[entry.name]:
            if entry.name not in self._built:
                self._built[entry.name] = set_up(entry, self.strict, self.rows[entry.name],
                                                 self.out_dir)
            return self._built[entry.name]

    def _run(self, entry: Entry, label: str, selection: list[str]) -> None:
        if self._venv(entry):
            run_tests(entry, label, selection, self.rows[entry.name], self.strict, self.out_dir)

    def run_busy(self) -> None:
        """Take the next unit run until none is left."""
        while True:
            with self._units_lock:
                if not self._units:
                    return
                entry, label, selection = self._units.pop(0)
            self._run(entry, label, selection)

    def run_waiting(self) -> None:
        """The production-shaped tests one after the other, then unit runs that are left."""
        for entry in self.entries:
            for label, selection in entry.runs:
                if label == PRODUCTION[0]:
                    self._run(entry, label, selection)
        self.run_busy()

    def report(self) -> int:
        """Print each entry's set-up and run output, the table and the closing count; 0 if OK."""
        for entry in self.entries:
            for name in ("setup", *(label.split()[0] for label, _ in entry.runs)):
                log = self.out_dir / f"{entry.name}-{name}.log"
                if log.exists():
                    sys.stdout.write(log.read_text(errors="replace"))
        rows = [self.rows[entry.name] for entry in self.entries]
        print("\nVersion matrix (the main suite ran on .venv: requirements/dev.lock)")
        print(f"{'entry':<14} {'found in venv':<32} {'set-up s':>8} {'tests s':>8}  result")
        for entry, row in zip(self.entries, rows, strict=True):
            print(f"{row.entry:<14} {row.found:<32} {row.setup_s:>8.1f} {row.tests_s():>8.1f}  "
                  f"{row.result(entry)}")
        ok = all(row.passed() for row in rows)
        total = sum(r.setup_s + r.tests_s() for r in rows)
        print(f"matrix total: {total:.1f} s of set-up and tests (two sequences side by side); "
              f"{'OK' if ok else 'FAILED'}")
        passed, failed, skipped = (sum(r.counts()[i] for r in rows) for i in range(3))
        print(f"matrix: {passed} passed, {failed} failed, {skipped} skipped", flush=True)
        return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the Airflow x Python matrix.")
    parser.add_argument("names", nargs="*", help="entries to run (default: all)")
    parser.add_argument("--junit-dir", type=Path, default=ROOT / "test-artifacts" / "matrix-junit",
                        help="write each run's JUnit XML and output here")
    args = parser.parse_args(argv)
    matrix = Matrix([e for e in ENTRIES if not args.names or e.name in args.names],
                    bool(os.environ.get("CI")), args.junit_dir)
    threads = [threading.Thread(target=matrix.run_busy), threading.Thread(target=matrix.run_waiting)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return matrix.report()


if __name__ == "__main__":
    sys.exit(main())
