"""The child of ``tools/mutation.py``: one mutmut run of one module, with honest timeouts.

Run as ``python tools/mutation_child.py MODULE WORKERS OUT_DIR TEST ...`` by ``tools/mutation.py``
only. It puts the module and its tests into mutmut's loaded settings (its command line has no
option for either) and replaces mutmut's wall-clock timeout with a watchdog that tells a hang
from a starved run:

* a mutant whose tests burn CPU without end (a loop) is stopped by mutmut's CPU-time limit
  (``RLIMIT_CPU``; this watchdog applies the same limit to the CPU of the mutant's child
  processes, which the rlimit does not see);
* a mutant whose tests *block* without end (a real ``sleep``, a read from a socket nobody
  answers, a lock) burns no CPU, so only a clock can stop it. mutmut's clock is the wall clock,
  which also runs while the mutant waits for a core: under ``nice -n 19`` on a loaded machine
  an ordinary run "timed out" (a false kill), and widened tenfold the limit let each real hang
  run for minutes. This watchdog reads each thread of the mutant's process tree from ``/proc``
  twice a second and counts only *blocked* time: time in which no thread ran, waited for a
  core or waited for the disk. The budget is mutmut's own wall-clock limit
  ((tests' time + ``timeout_constant``) x ``timeout_multiplier``), now starvation-proof;
* every stopped mutant's Python stack is written (faulthandler on SIGXCPU) to
  ``OUT_DIR/<module>.stacks/<mutant>.txt``, and every mutant's wall, CPU, wait and blocked
  seconds and why it was stopped to ``OUT_DIR/<module>.runs.jsonl``, so each timeout can be read
  as the hang or loop it is. A run still going at ``WALL_FACTOR`` x mutmut's limit is stopped
  as ``wall``: ``tools/mutation.py`` does not count those as kills.

The watchdog's state (mutants running, their seconds) is rewritten to
``OUT_DIR/<module>.running.json`` for the parent's progress lines.

Mutants are run by mutmut's fork server (``process_isolation = "forkserver"``), not forked from
mutmut's own process: that process runs the stats run in itself by default, which starts
asgiref's single worker thread (Airflow's ``aget_connection``); a process forked from it believes
that thread exists, so every async test awaiting a connection hung there for ever, and mutants
that survived every earlier test were counted as timeouts, i.e. killed. The fork server only
collects the tests (no thread) before forking.
"""

from __future__ import annotations

import contextlib
import dataclasses
import faulthandler
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

MUTMUT_VERSION = "3.8.1"  # the internals patched below are this version's
SAMPLE_SECONDS = 0.5
#: Beyond this many times mutmut's wall-clock limit a run is stopped whatever it does.
WALL_FACTOR = 50
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Sample:
    """One look at a process tree: nanoseconds run and waited for a core, and if any thread
    is running, runnable or in a disk wait now."""

    cpu_ns: int
    wait_ns: int
    active: bool
    pids: list[int]


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (threads' ``children`` lists)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        for tid in os.listdir(f"/proc/{p}/task") if os.path.isdir(f"/proc/{p}/task") else ():
            todo.extend(int(c) for c in (_read(f"/proc/{p}/task/{tid}/children") or "").split())
    return found


def sample(pid: int) -> Sample | None:
    """The tree of ``pid`` now; ``None`` once ``pid`` has ended (gone or a zombie)."""
    stat = _read(f"/proc/{pid}/stat")
    if stat is None or stat.rpartition(")")[2].split()[0] in ("Z", "X"):
        return None
    cpu = wait = 0
    active = False
    pids = _tree(pid)
    for p in pids:
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tids:
            sched = (_read(f"/proc/{p}/task/{tid}/schedstat") or "0 0").split()
            cpu += int(sched[0])
            wait += int(sched[1])
            # A task waiting for a core only adds to its wait figure once it runs again, so a
            # starved thread shows in its state (R), not in the figures.
            state = (_read(f"/proc/{p}/task/{tid}/stat") or ")  S").rpartition(")")[2].split()[0]
            active = active or state in ("R", "D")
    return Sample(cpu, wait, active, pids)


@dataclass
class Watch:
    """One running mutant as the watchdog follows it."""

    mutant: str
    pid: int
    blocked_limit: float
    cpu_limit: float
    started: float = field(default_factory=time.monotonic)
    last_at: float = field(default_factory=time.monotonic)
    first: Sample | None = None
    last: Sample | None = None
    blocked: float = 0.0
    cause: str | None = None
    stopped_at: float = 0.0

    def seconds(self) -> dict[str, Any]:
        first, last = self.first, self.last
        cpu = (last.cpu_ns - first.cpu_ns) / 1e9 if first and last else 0.0
        wait = (last.wait_ns - first.wait_ns) / 1e9 if first and last else 0.0
        return {"mutant": self.mutant, "wall": round(time.monotonic() - self.started, 1),
                "cpu": round(cpu, 2), "wait": round(wait, 1), "blocked": round(self.blocked, 1),
                "blocked_limit": round(self.blocked_limit, 1), "cpu_limit": self.cpu_limit,
                "cause": self.cause}

    def account(self, current: Sample, now: float) -> signal.Signals | None:
        """Take in one sample; return the signal that stops the mutant, if it must stop now.

        Blocked time grows only over intervals that end with no thread running, runnable or in
        a disk wait, by the part of the interval the tree neither ran nor waited for a core.
        """
        if self.first is None:
            self.first = current
        elif self.last is not None and not current.active:
            spent = ((current.cpu_ns - self.last.cpu_ns) + (current.wait_ns - self.last.wait_ns)) / 1e9
            self.blocked += max(0.0, (now - self.last_at) - spent)
        self.last, self.last_at = current, now
        if self.cause is not None:  # SIGXCPU did not end it (mutmut reads -9 as "other")
            return signal.SIGKILL if now - self.stopped_at > 5 else None
        cpu = (current.cpu_ns - self.first.cpu_ns) / 1e9
        if self.blocked >= self.blocked_limit:
            self.cause = "blocked"
        elif cpu >= self.cpu_limit + 1:  # the rlimit (+1 s) did not act: child processes' CPU
            self.cause = "cpu"
        elif now - self.started >= self.blocked_limit * WALL_FACTOR:
            self.cause = "wall"
        else:
            return None
        self.stopped_at = now
        return signal.SIGXCPU


class Watchdog:
    """Stops mutants that hang (blocked time) or burn CPU in child processes; records each run."""

    def __init__(self, runs: Path, running: Path) -> None:
        self.runs, self.running = runs, running
        self.watches: dict[int, Watch] = {}
        self.lock = threading.Lock()
        self.owner = 0  # the process whose thread samples (mutmut forks; threads do not follow)
        self.next: tuple[str, int] = ("?", 0)

    def register(self, pid: int, timeout_s: float) -> None:
        """mutmut's ``register_timeout``: ``timeout_s`` is its wall-clock limit for the run."""
        mutant, cpu_limit = self.next
        with self.lock:
            self.watches[pid] = Watch(mutant, pid, timeout_s, cpu_limit)
            if self.owner != os.getpid():
                self.owner = os.getpid()
                threading.Thread(target=self._loop, name="mutation-watchdog", daemon=True).start()

    def _loop(self) -> None:
        while True:
            time.sleep(SAMPLE_SECONDS)
            with self.lock:
                watches = list(self.watches.values())
            for watch in watches:
                self._check(watch)
            with self.lock:
                state = [w.seconds() for w in self.watches.values()]
            self.running.write_text(json.dumps(state))

    def _check(self, watch: Watch) -> None:
        current = sample(watch.pid)
        if current is None:
            self._done(watch)
            return
        stop = watch.account(current, time.monotonic())
        if stop is not None:
            self._stop(current.pids, stop)

    @staticmethod
    def _stop(pids: list[int], first: signal.Signals = signal.SIGXCPU) -> None:
        """SIGXCPU to the mutant (its stack is dumped, and mutmut reads the exit as a timeout),
        SIGKILL to the processes it started (they would outlive it)."""
        for number, pid in enumerate(pids):
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, first if number == 0 else signal.SIGKILL)

    def _done(self, watch: Watch) -> None:
        with self.lock:
            self.watches.pop(watch.pid, None)
        with self.runs.open("a") as sink:
            sink.write(json.dumps(watch.seconds()) + "\n")


def _stacks_on_sigxcpu(folder: Path) -> Callable[[str | None], None]:
    """A ``set_mutant_under_test`` that also, in a mutant's own process, has faulthandler write
    the Python stack to a file named after the mutant when SIGXCPU arrives (then dies of it)."""
    from mutmut.mutation import trampoline

    original = trampoline.set_mutant_under_test
    parent = os.getpid()
    files: list[IO[str]] = []

    def set_mutant_under_test(name: str | None) -> None:
        original(name)
        if name and os.getpid() != parent and "." in name:
            folder.mkdir(parents=True, exist_ok=True)
            files.append((folder / f"{name}.txt").open("w"))
            faulthandler.register(signal.SIGXCPU, file=files[-1], all_threads=True, chain=True)

    return set_mutant_under_test


def main(argv: list[str]) -> None:
    module, workers, out, tests = argv[0], int(argv[1]), Path(argv[2]), argv[3:]
    import mutmut
    from mutmut import configuration
    from mutmut.__main__ import _run
    from mutmut.workers import isolation

    if mutmut.__version__ != MUTMUT_VERSION:
        sys.exit(f"tools/mutation_child.py patches mutmut {MUTMUT_VERSION}; found {mutmut.__version__}")
    stem = module.removeprefix("kling_provider/").replace("/", ".")
    runs, running = out / f"{stem}.runs.jsonl", out / f"{stem}.running.json"
    runs.write_text("")
    watchdog = Watchdog(runs, running)

    def register(pid: int, timeout_s: float) -> None:
        # Called by the fork server right after forking a mutant, whose name and CPU limit are
        # that loop's locals (mutmut passes neither).
        caller = sys._getframe(1).f_locals
        watchdog.next = (caller["mutant_name"], caller["cpu_time_limit"])
        watchdog.register(pid, timeout_s)

    # The names the fork server calls (imported into its module), not the modules they come from.
    setattr(isolation, "register_timeout", register)  # noqa: B010
    setattr(isolation, "set_mutant_under_test", _stacks_on_sigxcpu(out / f"{stem}.stacks"))  # noqa: B010
    configuration._config = dataclasses.replace(
        configuration._load_config(), only_mutate=[module],
        pytest_add_cli_args_test_selection=tests,
        process_isolation=configuration.ProcessIsolation.FORKSERVER)
    _run((), workers)


if __name__ == "__main__":
    main(sys.argv[1:])
