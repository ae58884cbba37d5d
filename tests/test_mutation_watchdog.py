"""The mutation run's timeouts (tools/mutation_child.py): a hang is stopped, a starved run never.

``make mutation`` counts a timeout as a kill, so a false timeout inflates the score. The
watchdog's accounting is pure over the samples it is given (no clock of its own), so these tests
feed it the samples of a starved run, a hung one and one burning CPU in a child process.
"""

from __future__ import annotations

import os
import signal

from tools.mutation_child import WALL_FACTOR, Sample, Watch, sample

SECOND = 1_000_000_000  # schedstat counts nanoseconds


def run(watch: Watch, samples: list[tuple[float, float, float, bool]]) -> list[signal.Signals | None]:
    """Feed (time, cpu s, wait s, active) samples; return what the watchdog decided at each."""
    return [watch.account(Sample(int(cpu * SECOND), int(wait * SECOND), active, [1]), at)
            for at, cpu, wait, active in samples]


def test_a_starved_run_is_never_stopped_however_long_it_waits_for_a_core() -> None:
    # nice -n 19 beside a benchmark: runnable (R) at every look, a core now and then.
    watch = Watch("m", 1, blocked_limit=6.0, cpu_limit=100, started=0.0, last_at=0.0)
    # 250 s for runs of 1 s at most CPU (the wall-clock net is 50 x 6 s).
    decisions = run(watch, [(t * 0.5, t * 0.002, 0.0, True) for t in range(1, 500)])
    assert decisions == [None] * 499
    assert watch.blocked == 0.0


def test_a_run_waiting_for_a_core_between_looks_is_not_blocked() -> None:
    # Asleep at each look, but the figures show it ran or queued for the whole interval.
    watch = Watch("m", 1, blocked_limit=6.0, cpu_limit=100, started=0.0, last_at=0.0)
    run(watch, [(t * 0.5, t * 0.1, t * 0.4, False) for t in range(1, 100)])
    assert watch.blocked < 1e-6
    assert watch.cause is None


def test_a_hang_is_stopped_with_sigxcpu_once_blocked_for_its_budget() -> None:
    watch = Watch("m", 1, blocked_limit=6.0, cpu_limit=100, started=0.0, last_at=0.0)
    decisions = run(watch, [(t * 0.5, 0.2, 0.1, False) for t in range(1, 16)])
    # The first look sets the baseline; 12 blocked half-seconds later the budget is spent.
    assert decisions[:12] == [None] * 12
    assert decisions[12] is signal.SIGXCPU
    assert watch.cause == "blocked"
    # Still there 5 s after SIGXCPU: SIGKILL.
    assert watch.account(Sample(0, 0, False, [1]), 6.5 + 4.5) is None
    assert watch.account(Sample(0, 0, False, [1]), 6.5 + 5.5) is signal.SIGKILL


def test_blocked_time_adds_up_over_separate_waits() -> None:
    # A mutated poll that sleeps for real, runs briefly, sleeps again: each sleep counts.
    watch = Watch("m", 1, blocked_limit=3.0, cpu_limit=100, started=0.0, last_at=0.0)
    samples = []
    cpu = 0.0
    for t in range(1, 30):
        busy = t % 2 == 0
        cpu += 0.5 if busy else 0.0
        samples.append((t * 0.5, cpu, 0.0, busy))
    decisions = run(watch, samples)
    assert signal.SIGXCPU in decisions
    assert watch.cause == "blocked"


def test_cpu_burnt_in_child_processes_counts_against_the_cpu_limit() -> None:
    watch = Watch("m", 1, blocked_limit=6.0, cpu_limit=4, started=0.0, last_at=0.0)
    decisions = run(watch, [(t * 0.5, t * 0.5, 0.0, True) for t in range(1, 12)])
    assert decisions[-1] is signal.SIGXCPU
    assert watch.cause == "cpu"


def test_the_wall_clock_net_is_recorded_as_such() -> None:
    watch = Watch("m", 1, blocked_limit=1.0, cpu_limit=100, started=0.0, last_at=0.0)
    assert run(watch, [(WALL_FACTOR * 1.0 - 1, 0.0, 0.0, True)]) == [None]
    assert run(watch, [(WALL_FACTOR * 1.0, 0.0, 0.0, True)]) == [signal.SIGXCPU]
    assert watch.cause == "wall"


def test_a_live_process_is_sampled_and_an_ended_one_is_none() -> None:
    here = sample(os.getpid())
    assert here is not None and here.active  # this thread is running as it reads
    assert here.cpu_ns > 0 and os.getpid() in here.pids
    assert sample(2**22 + 7) is None  # above pid_max's default: no such process
