"""Mutation testing of the paid path (`make mutation`): how many deliberate bugs the unit suite catches.

Runs mutmut (pinned in the locks; shared settings in pyproject's ``[tool.mutmut]``) once per module
below, each time from a fresh ``mutants/`` directory, with the unit tests that exercise the module,
and prints one table: mutants, killed, timed out (split by what stopped the run: its CPU limit,
or a hang), survived, not reached by any test, other, and the kill rate ((killed + timed out) /
mutants). Exits non-zero when a module is under the floor (90 %) or a run could not be measured.
While a module runs, a progress line every 30 s says its phase, the verdicts so far and the
mutants running with their wall, CPU and blocked seconds. Each module's survivors (with their
diffs) and timeouts (with their seconds and where each one was stopped) are written to
``build/mutation/<module>.txt``; mutmut's own output to ``build/mutation/<module>.log``.

Why each run starts from nothing: mutmut keeps verdicts and the test-to-function map between runs
and re-runs only what it thinks changed, so a test added since a run can leave a mutant recorded
as surviving that the suite now kills. Every figure printed here comes from one fresh run.

Why a timeout is a kill here: mutmut's own wall-clock limit counts time spent waiting for a core
(a false kill under ``nice``), so ``tools/mutation_child.py`` replaces it by a watchdog that
counts only the time a mutant's processes were blocked; see that module.

Usage: ``python tools/mutation.py [MODULE ...] [--workers N]`` (modules as paths under
``kling_provider/``, e.g. ``_money/guard.py``; default: all of them).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FLOOR = 0.90

# Module -> the unit test files that exercise it. mutmut runs, for each mutant, only the tests
# that called the mutated function in its first (stats) run over these files, so a wider list
# costs only that first run.
#: The tests of the operators' runtime side of paying once (submit, recover, the record).
_PAYING_ONCE_ON_AIRFLOW = ("tests/test_durable_submission.py", "tests/test_airflow_layer.py",
                           "tests/test_submission.py", "tests/test_never_paying_twice.py",
                           "tests/test_checks_before_paying.py", "tests/test_spend.py",
                           "tests/test_paid_path_rules.py",
                           "tests/test_submission_recovery_paths.py")
#: The tests of the pure rules of paying once (the intent, the recovery, the logs' rate budget).
_PAYING_ONCE_RULES = ("tests/test_submission.py", "tests/test_submission_rules.py",
                      "tests/test_logs_lookup.py", "tests/test_never_paying_twice.py",
                      "tests/test_terminal_answers.py", "tests/test_paid_path_rules.py")

MODULES: dict[str, tuple[str, ...]] = {
    "_money/guard.py": ("tests/test_spend.py", "tests/test_paid_path_rules.py"),
    # The balance read (moved out of _money/guard.py), the price list and estimate, the
    # deprecation feed, the key's spend (budgets), the probe.
    "_api/service.py": ("tests/test_service_reads.py", "tests/test_spend.py",
                        "tests/test_paid_path_rules.py", "tests/test_hook_rules.py",
                        "tests/test_airflow_layer.py", "tests/test_network_errors.py",
                        "tests/test_secrets_everywhere.py", "tests/test_retirement_feed.py",
                        "tests/test_retirement_rules.py", "tests/test_budget.py",
                        "tests/test_simulator_usage.py", "tests/test_spend_report.py",
                        "tests/test_usage_reads.py", "tests/test_retirement_steps.py",
                        "tests/test_retirement_tasks.py"),
    "_money/pricing.py": ("tests/test_spend.py", "tests/test_paid_path_rules.py"),
    "_wait/schedule.py": ("tests/test_poll_schedule.py", "tests/test_hook_rules.py",
                     "tests/test_paid_path_rules.py"),
    # _task/submission.py split by concern (issue 19); it only re-exports these three now.
    "_task/intent.py": _PAYING_ONCE_RULES,
    "_task/recovery.py": _PAYING_ONCE_RULES,
    "_task/rate_budget.py": _PAYING_ONCE_RULES,
    "operators/_submission.py": _PAYING_ONCE_ON_AIRFLOW,
    # Split out of operators/_submission.py (issue 19): the usage-logs lookups, the record.
    "operators/_recover.py": _PAYING_ONCE_ON_AIRFLOW,
    "operators/_record.py": _PAYING_ONCE_ON_AIRFLOW,
    # Budgets across runs (the rule, and the operators' reserve/read/decide/release), model
    # retirement's rules, the download's threaded hash: paid-path modules added since issue 19.
    "_money/budget.py": ("tests/test_budget.py", "tests/test_spend.py"),
    "operators/_budget.py": ("tests/test_budget.py",),
    "_models/retirement.py": ("tests/test_retirement_rules.py", "tests/test_retirement_feed.py",
                              "tests/test_retirement_steps.py", "tests/test_retirement_tasks.py"),
    "_storage/hashing.py": ("tests/test_download_hashing.py", "tests/test_download_body.py",
                            "tests/test_download.py", "tests/test_download_race.py"),
    "_storage/download.py": ("tests/test_download.py", "tests/test_download_attempts.py",
                     "tests/test_download_lines.py",
                     "tests/test_download_rules.py",
                     "tests/test_download_race.py", "tests/test_network_errors.py",
                     "tests/test_paid_path_rules.py"),
    # The routes' tests run the plugin's app under a real auth manager on a migrated metadata DB.
    "gallery/app.py": ("tests/test_gallery_app.py", "tests/test_gallery_routes.py",
                       "tests/test_gallery_queries.py", "tests/test_gallery_hostile.py",
                       "tests/test_gallery_rules.py", "tests/test_gallery_budgets.py"),
    # What tasks record of budgets and spend reports, and the page's reading of it (issue 20).
    "_money/readings.py": ("tests/test_budget_readings.py", "tests/test_gallery_budgets.py"),
    "gallery/budgets.py": ("tests/test_gallery_budgets.py", "tests/test_budget_readings.py"),
    "gallery/ranges.py": ("tests/test_gallery_rules.py", "tests/test_gallery_app.py"),
}

# The child (tools/mutation_child.py) runs mutmut with the module and its tests, and replaces
# mutmut's wall-clock timeout by a watchdog that counts only time the mutant's processes were
# blocked (not running, not waiting for a core): see that module for why.
CHILD = ROOT / "tools" / "mutation_child.py"
#: Seconds between progress lines while a module runs.
PROGRESS_SECONDS = 30.0
#: The log lines mutmut starts each phase with, and what a progress line calls them.
PHASES = (("Generating mutants", "generating mutants"), ("Running stats", "stats run"),
          ("Running clean tests", "clean tests"), ("Running forced fail", "forced-fail test"),
          ("Running mutation testing", "mutants"))

# mutmut's exit-code classes (mutmut.stats.status_by_exit_code), folded into our columns. A
# timeout is split by what stopped it (the watchdog's record): "cpu" (it computed past its CPU
# limit: a loop) or "hang" (it was blocked, neither running nor waiting for a core, for the
# whole budget). One stopped by the wall-clock net only ("wall") proves nothing: not a kill.
KILLED, SURVIVED, NO_TESTS = "killed", "survived", "no tests"
CPU, HANG, OTHER = "timeout cpu", "timeout hang", "other"
DETECTED = (KILLED, CPU, HANG)
COLUMNS = (KILLED, CPU, HANG, SURVIVED, NO_TESTS, OTHER)


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
        detected = sum(self.counts.get(status, 0) for status in DETECTED)
        return detected / self.total if self.total else 0.0


def _status(exit_code: int | None, run: dict[str, Any] | None = None) -> str:
    from mutmut.stats import status_by_exit_code

    status = status_by_exit_code[exit_code]
    if status == "timeout":
        cause = (run or {}).get("cause")
        return {None: CPU, "cpu": CPU, "blocked": HANG}.get(cause, OTHER)  # None: the rlimit
    return status if status in (KILLED, SURVIVED, NO_TESTS) else OTHER


def _stem(module: str) -> str:
    return module.replace("/", ".")


def _progress(module: str, log: Path, meta: Path, running: Path, elapsed: float) -> str:
    """One line: the phase mutmut is in, the verdicts so far and the mutants running now."""
    text = log.read_text(errors="replace") if log.exists() else ""
    phase = next((name for marker, name in reversed(PHASES) if marker in text), "starting")
    line = f"  {module}: {elapsed:.0f} s, {phase}"
    if phase == "mutants" and meta.exists():
        try:
            verdicts = json.loads(meta.read_text())["exit_code_by_key"]
        except (ValueError, KeyError):
            return line
        done = [c for c in verdicts.values() if c is not None]
        from mutmut.stats import status_by_exit_code

        counts: dict[str, int] = {}
        for exit_code in done:
            status = status_by_exit_code[exit_code]
            counts[status] = counts.get(status, 0) + 1
        line += f" {len(done)}/{len(verdicts)} (" + ", ".join(
            f"{n} {status}" for status, n in sorted(counts.items())) + ")"
        try:
            now = json.loads(running.read_text()) if running.exists() else []
        except ValueError:
            now = []
        line += "".join(f"; {r['mutant'].rpartition('.')[2]} {r['wall']:.0f} s wall, "
                        f"{r['cpu']:.1f} s cpu, {r['blocked']:.0f}/{r['blocked_limit']:.0f} s blocked"
                        for r in now)
    return line


def migrated_db(out: Path) -> Path:
    """An Airflow metadata DB migrated now, by this venv's Airflow, for the tests to copy.

    Each mutant's tests are a pytest session of their own: without this (``KLING_TEST_AIRFLOW_DB``,
    tests/conftest.py) every mutant of a gallery module would first migrate a DB (10-30 s).
    """
    home = out / "airflow-home"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}"}
    subprocess.run([str(Path(sys.executable).with_name("airflow")), "db", "migrate"], env=env,
                   check=True, capture_output=True, timeout=600)
    return home / "airflow.db"


def run_module(module: str, workers: int, out: Path, env: dict[str, str]) -> Result:
    path = f"kling_provider/{module}"
    tests = [t for t in MODULES[module] if (ROOT / t).exists()]
    shutil.rmtree(ROOT / "mutants", ignore_errors=True)
    shutil.rmtree(out / f"{_stem(module)}.stacks", ignore_errors=True)
    (out / f"{_stem(module)}.running.json").unlink(missing_ok=True)  # a stopped run's
    start = time.monotonic()
    log = out / f"{_stem(module)}.log"
    meta = ROOT / "mutants" / (path + ".meta")
    with log.open("w") as sink:
        child = subprocess.Popen([sys.executable, str(CHILD), path, str(workers), str(out), *tests],
                                 cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, env=env)
        while True:
            try:
                code = child.wait(PROGRESS_SECONDS)
                break
            except subprocess.TimeoutExpired:
                print(_progress(module, log, meta, out / f"{_stem(module)}.running.json",
                                time.monotonic() - start), flush=True)
    seconds = time.monotonic() - start
    if code != 0 or not meta.exists():
        return Result(module, {}, [], seconds, f"mutmut exited {code}; see {log}")
    verdicts = json.loads(meta.read_text())["exit_code_by_key"]
    runs_file = out / f"{_stem(module)}.runs.jsonl"
    runs = {r["mutant"]: r for r in map(json.loads, runs_file.read_text().splitlines())}
    statuses = {name: _status(c, runs.get(name)) for name, c in verdicts.items()}
    counts: dict[str, int] = {}
    for status in statuses.values():
        counts[status] = counts.get(status, 0) + 1
    survivors = sorted((n for n, s in statuses.items() if s not in DETECTED), key=_natural)
    timeouts = sorted((n for n, s in statuses.items() if s in (CPU, HANG)), key=_natural)
    _write_survivors(module, survivors, statuses, timeouts, runs, out)
    return Result(module, counts, survivors, seconds)


def _natural(name: str) -> tuple[str, int]:
    head, _, number = name.rpartition("_")
    return (head, int(number) if number.isdigit() else 0)


def _where(stack: Path) -> str:
    """The innermost frame of the provider or its tests in a stopped mutant's stack."""
    frames = [line.strip() for line in stack.read_text().splitlines()
              if line.strip().startswith("File ")] if stack.exists() else []
    ours = [f for f in frames if "/kling_provider/" in f or "/tests/" in f]
    return (ours or frames or ["no stack"])[0]


def _write_survivors(module: str, survivors: list[str], statuses: dict[str, str],
                     timeouts: list[str], runs: dict[str, dict[str, Any]], out: Path) -> None:
    """Survivors with their diffs, then each timeout with what stopped it and where it was."""
    mutmut = str(Path(sys.executable).with_name("mutmut"))
    parts = []
    for name in survivors:
        shown = subprocess.run([mutmut, "show", name], cwd=ROOT, capture_output=True, text=True)
        parts.append(shown.stdout or f"# {name}: {statuses[name]}\n")
    parts.append("# timeouts: what stopped each (seconds of its run) and where it was\n")
    for name in timeouts:
        run = runs.get(name, {})
        figures = ", ".join(f"{k} {run[k]}" for k in ("wall", "cpu", "wait", "blocked") if k in run)
        where = _where(out / f"{_stem(module)}.stacks" / f"{name}.txt")
        parts.append(f"{name}: {statuses[name]} ({figures}) at {where}")
    (out / f"{_stem(module)}.txt").write_text("\n".join(parts) + "\n")


def table(results: list[Result]) -> str:
    head = (f"{'module':<26} {'mutants':>7} {'killed':>6} {'t/o cpu':>7} {'t/o hang':>8} "
            f"{'survived':>8} {'no tests':>8} {'other':>5} {'kill rate':>9} {'seconds':>7}")
    rows = [head, "-" * len(head)]
    for r in results:
        if r.error:
            rows.append(f"{r.module:<26} not measured: {r.error}")
            continue
        c = r.counts
        rows.append(f"{r.module:<26} {r.total:>7} {c.get(KILLED, 0):>6} {c.get(CPU, 0):>7} "
                    f"{c.get(HANG, 0):>8} {c.get(SURVIVED, 0):>8} {c.get(NO_TESTS, 0):>8} "
                    f"{c.get(OTHER, 0):>5} {r.rate:>8.1%} {r.seconds:>7.0f}")
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
    env = dict(os.environ)
    if any(m.startswith("gallery/") for m in modules):
        env["KLING_TEST_AIRFLOW_DB"] = str(migrated_db(out))
    results = []
    for module in modules:
        print(f"mutating kling_provider/{module} ...", flush=True)
        results.append(run_module(module, args.workers, out, env))
    print(table(results))
    failed = [r.module for r in results if r.error or r.rate < FLOOR]
    if failed:
        print(f"under the {FLOOR:.0%} floor or not measured: {', '.join(failed)} "
              f"(survivors: build/mutation/<module>.txt)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
