"""Mutation testing of the paid path (`make mutation`): how many deliberate bugs the unit suite catches.

Runs mutmut (pinned in the locks; shared settings in pyproject's ``[tool.mutmut]``) once per module
below, each time from a fresh ``mutants/`` directory, with the unit tests that exercise the module,
and prints one table: mutants, killed, timed out, survived, not reached by any test, and the kill
rate ((killed + timed out) / mutants). Exits non-zero when a module is under the floor (90 %) or a
run could not be measured. Each module's survivors (with their diffs) are written to
``build/mutation/<module>.txt``.

Why each run starts from nothing: mutmut keeps verdicts and the test-to-function map between runs
and re-runs only what it thinks changed, so a test added since a run can leave a mutant recorded
as surviving that the suite now kills. Every figure printed here comes from one fresh run.

Usage: ``python tools/mutation.py [MODULE ...] [--workers N]`` (modules as paths under
``kling_provider/``, e.g. ``_guard.py``; default: all of them).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLOOR = 0.90

# Module -> the unit test files that exercise it. mutmut runs, for each mutant, only the tests
# that called the mutated function in its first (stats) run over these files, so a wider list
# costs only that first run.
MODULES: dict[str, tuple[str, ...]] = {
    "_guard.py": ("tests/test_spend.py", "tests/test_paid_path_rules.py"),
    "_pricing.py": ("tests/test_spend.py", "tests/test_paid_path_rules.py"),
    "_schedule.py": ("tests/test_poll_schedule.py", "tests/test_hook_rules.py",
                     "tests/test_paid_path_rules.py"),
    "_submission.py": ("tests/test_submission.py", "tests/test_never_paying_twice.py",
                       "tests/test_terminal_answers.py", "tests/test_paid_path_rules.py"),
    "operators/_submission.py": ("tests/test_submission.py", "tests/test_never_paying_twice.py",
                                 "tests/test_checks_before_paying.py", "tests/test_spend.py",
                                 "tests/test_paid_path_rules.py"),
    "_download.py": ("tests/test_download.py", "tests/test_network_errors.py",
                     "tests/test_paid_path_rules.py"),
    "gallery/app.py": ("tests/test_gallery_rules.py",),
    "gallery/ranges.py": ("tests/test_gallery_rules.py", "tests/test_paid_path_rules.py"),
}

# mutmut's exit-code classes (mutmut.stats.status_by_exit_code), folded into our columns.
KILLED, TIMEOUT, SURVIVED, NO_TESTS = "killed", "timeout", "survived", "no tests"

# The child: mutmut's own run, with the module and its tests put into mutmut's loaded settings.
# Its command-line has no option for either, and one run per module needs both.
#
# Timeouts: mutmut stops a mutant's run at a CPU-time limit ((tests' time + timeout_constant) x
# timeout_multiplier x 2 CPU seconds: a mutated loop that never ends burns CPU and hits it in
# seconds) and at a wall-clock limit of half that. The wall-clock one counts time this process
# waited for a core, so on a loaded machine it stopped ordinary runs (an unreachable line's
# mutant "timed out"); it is widened here to a safety net for runs that hang without computing.
WALL_FACTOR = 10
_RUN = f"""
import dataclasses, sys
from mutmut import configuration
from mutmut.__main__ import _run
from mutmut.workers import isolation
register = isolation.register_timeout
isolation.register_timeout = lambda pid, timeout_s: register(pid, timeout_s * {WALL_FACTOR})
module, workers, tests = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
configuration._config = dataclasses.replace(
    configuration._load_config(), only_mutate=[module],
    pytest_add_cli_args_test_selection=tests)
_run((), workers)
"""


@dataclass
class Result:
    """One module's verdicts."""

    module: str
    counts: dict[str, int]
    survivors: list[str]
    seconds: float
    error: str = ""

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def rate(self) -> float:
        detected = self.counts.get(KILLED, 0) + self.counts.get(TIMEOUT, 0)
        return detected / self.total if self.total else 0.0


def _status(exit_code: int | None) -> str:
    from mutmut.stats import status_by_exit_code

    status = status_by_exit_code[exit_code]
    return status if status in (KILLED, TIMEOUT, SURVIVED, NO_TESTS) else "other"


def run_module(module: str, workers: int, out: Path) -> Result:
    path = f"kling_provider/{module}"
    tests = [t for t in MODULES[module] if (ROOT / t).exists()]
    shutil.rmtree(ROOT / "mutants", ignore_errors=True)
    start = time.monotonic()
    log = out / (module.replace("/", ".") + ".log")
    with log.open("w") as sink:
        code = subprocess.call([sys.executable, "-c", _RUN, path, str(workers), *tests],
                               cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT)
    seconds = time.monotonic() - start
    meta = ROOT / "mutants" / (path + ".meta")
    if code != 0 or not meta.exists():
        return Result(module, {}, [], seconds, f"mutmut exited {code}; see {log}")
    verdicts = json.loads(meta.read_text())["exit_code_by_key"]
    counts: dict[str, int] = {}
    for exit_code in verdicts.values():
        status = _status(exit_code)
        counts[status] = counts.get(status, 0) + 1
    survivors = sorted((name for name, c in verdicts.items() if _status(c) != KILLED
                        and _status(c) != TIMEOUT), key=_natural)
    _write_survivors(module, survivors, verdicts, out)
    return Result(module, counts, survivors, seconds)


def _natural(name: str) -> tuple[str, int]:
    head, _, number = name.rpartition("_")
    return (head, int(number) if number.isdigit() else 0)


def _write_survivors(module: str, survivors: list[str], verdicts: dict[str, int | None],
                     out: Path) -> None:
    mutmut = str(Path(sys.executable).with_name("mutmut"))
    parts = []
    for name in survivors:
        shown = subprocess.run([mutmut, "show", name], cwd=ROOT, capture_output=True, text=True)
        parts.append(shown.stdout or f"# {name}: {_status(verdicts[name])}\n")
    (out / (module.replace("/", ".") + ".txt")).write_text("\n".join(parts))


def table(results: list[Result]) -> str:
    head = (f"{'module':<26} {'mutants':>7} {'killed':>6} {'timeout':>7} {'survived':>8} "
            f"{'no tests':>8} {'other':>5} {'kill rate':>9} {'seconds':>7}")
    rows = [head, "-" * len(head)]
    for r in results:
        if r.error:
            rows.append(f"{r.module:<26} not measured: {r.error}")
            continue
        c = r.counts
        rows.append(f"{r.module:<26} {r.total:>7} {c.get(KILLED, 0):>6} {c.get(TIMEOUT, 0):>7} "
                    f"{c.get(SURVIVED, 0):>8} {c.get(NO_TESTS, 0):>8} {c.get('other', 0):>5} "
                    f"{r.rate:>8.1%} {r.seconds:>7.0f}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help="paths under kling_provider/ (default: all)")
    parser.add_argument("--workers", type=int, default=2, help="mutmut workers (default 2)")
    args = parser.parse_args(argv)
    modules = [m.removeprefix("kling_provider/") for m in args.modules] or list(MODULES)
    unknown = [m for m in modules if m not in MODULES]
    if unknown:
        parser.error(f"unknown module(s) {unknown}; known: {', '.join(MODULES)}")
    out = ROOT / "build" / "mutation"
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for module in modules:
        print(f"mutating kling_provider/{module} ...", flush=True)
        results.append(run_module(module, args.workers, out))
    print(table(results))
    failed = [r.module for r in results if r.error or r.rate < FLOOR]
    if failed:
        print(f"under the {FLOOR:.0%} floor or not measured: {', '.join(failed)} "
              f"(survivors: build/mutation/<module>.txt)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
