"""The version matrix `make test` runs after the main suite: each Airflow minor and Python we name.

The main suite (`.venv`, requirements/dev.lock: Airflow 3.3, the default ``python3``) runs
everything. Each entry below adds one venv, ``.venv-<name>``, built by tools/bootstrap.py from its
lock and kept between runs (a re-run only re-checks a stamp), and runs a part of the suite in it.
An entry whose Python is not on this machine is reported as not run; under CI (``CI`` set) that,
and a production-shaped test that skipped, fail the run, since the README claims them.

Prints one table: entry, the Airflow and Python really found in the venv, what ran, the result,
and the seconds spent setting up and testing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
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
    """One line of the printed table."""

    entry: str
    found: str
    ran: str
    result: str
    setup_s: float = 0.0
    tests_s: float = 0.0
    counts: tuple[int, int, int] = (0, 0, 0)


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


def run_entry(entry: Entry, strict: bool, junit_dir: Path | None = None) -> tuple[Row, bool]:
    venv = ROOT / f".venv-{entry.name}"
    python = find_python(entry.python)
    if python is None:
        why = (f"no Python {entry.python} here (put python{entry.python} on PATH or set "
               f"KLING_PYTHON_{entry.python.replace('.', '_')})")
        return Row(entry.name, "-", "-", ("FAILED: " if strict else "not run: ") + why), not strict
    started = time.monotonic()
    built = subprocess.run([sys.executable, str(ROOT / "tools" / "bootstrap.py"), "--venv", str(venv),
                            "--lock", str(ROOT / entry.lock), "--python", python], check=False)
    setup = time.monotonic() - started
    if built.returncode != 0:
        return Row(entry.name, "-", "-", "FAILED: venv set-up (see above)", setup), False
    found = subprocess.run(
        [str(venv / "bin" / "python"), "-c",
         "import sys, airflow; print(f'Airflow {airflow.__version__}, Python {sys.version.split()[0]}')"],
        capture_output=True, text=True, check=False).stdout.strip()
    ok, results, tests, counts = True, [], 0.0, [0, 0, 0]
    for label, selection in entry.runs:
        junit = (junit_dir or venv) / f"junit-{entry.name}-{label.split()[0]}.xml"
        junit.unlink(missing_ok=True)
        started = time.monotonic()
        print(f"\n== matrix {entry.name}: {label} ({found})", flush=True)
        done = subprocess.run([str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               f"--junitxml={junit}", *selection], cwd=ROOT, check=False)
        tests += time.monotonic() - started
        passed, failed, skipped, reasons = junit_summary(junit) if junit.exists() else (0, 0, 0, [])
        counts = [counts[0] + passed, counts[1] + failed, counts[2] + skipped]
        text = f"{label}: {passed} passed, {failed} failed, {skipped} skipped"
        if done.returncode != 0:
            ok, text = False, f"{text} (FAILED)"
        elif label == PRODUCTION[0] and (skipped or not passed):
            text += f" ({'; '.join(reasons) or 'nothing ran'})"
            ok = ok and not strict
        results.append(text)
    return Row(entry.name, found, " + ".join(label for label, _ in entry.runs), "; ".join(results),
               setup, tests, (counts[0], counts[1], counts[2])), ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the Airflow x Python matrix.")
    parser.add_argument("names", nargs="*", help="entries to run (default: all)")
    parser.add_argument("--junit-dir", type=Path, help="write each run's JUnit XML here "
                        "(tools/run_tests.py adds them to its closing count)")
    args = parser.parse_args(argv)
    if args.junit_dir:
        args.junit_dir.mkdir(parents=True, exist_ok=True)
    strict = bool(os.environ.get("CI"))
    entries = [e for e in ENTRIES if not args.names or e.name in args.names]
    rows, ok = [], True
    for entry in entries:
        row, entry_ok = run_entry(entry, strict, args.junit_dir)
        rows.append(row)
        ok = ok and entry_ok
    print("\nVersion matrix (the main suite above ran on .venv: requirements/dev.lock)")
    print(f"{'entry':<14} {'found in venv':<32} {'set-up s':>8} {'tests s':>8}  result")
    for row in rows:
        print(f"{row.entry:<14} {row.found:<32} {row.setup_s:>8.1f} {row.tests_s:>8.1f}  {row.result}")
    total = sum(r.setup_s + r.tests_s for r in rows)
    print(f"matrix total: {total:.1f} s; {'OK' if ok else 'FAILED'}")
    passed, failed, skipped = (sum(r.counts[i] for r in rows) for i in range(3))
    print(f"matrix: {passed} passed, {failed} failed, {skipped} skipped")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

