"""A stateful, model-based test of a generate task's whole life against a hostile simulator.

Hypothesis's ``RuleBasedStateMachine`` plays Airflow and the world around two tasks of one
model: tries that meet a lost create answer, a 502 after the create, a definite refusal (400,
401, 403 out of credits, 404: nothing created) or a worker killed at each step (before the
intent, after it, after the POST before the id is stored, after the id before XCom); retries
after any delay; clears by the user; other callers submitting the same model; usage-log rows
that lag the video; log pages full of rows a recovery cannot use; a service clock skewed by up
to 4 minutes. Each try is driven like Airflow
drives it (``execute``, each deferral's trigger after a serialise round trip, the resume
method), the simulator sharing the fake clock. After every step:

* each task has at most one paid generation since its last clear after a success, exactly one
  once it succeeded, and its result names that generation (never a neighbour's);
* a try after a definite refusal submits at once: no usage-logs lookup before its POST;
* a try needs a human (``KlingSubmissionUncertainError``) only in the documented case
  (docs/paying_once.rst): the worker died between storing the intent and sending the POST, so
  no generation carries the intent's client request id.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

from hypothesis import event, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from kling_provider._task.submission import STATE_KEY
from kling_provider.exceptions import KlingError, KlingSubmissionUncertainError
from kling_provider.operators._record import TaskRecord
from kling_provider.operators.kling import KlingGenerateVideoOperator
from kling_provider.testing.simulator import KlingSimulator
from tests.conftest import FakeClock, StateStoreStub, context_for
from tests.test_never_paying_twice import drive

MODEL = "klingai/v2-master-text-to-video"
KILL_POINTS = ("before intent", "after intent", "after POST", "after id")
#: Create faults the API really produces; ``None`` is a healthy create.
CREATE_FAULTS = (None, "answer lost", "502 after create")
REFUSALS = (400, 401, 403, 404)
_RUNS = itertools.count()


class Killed(BaseException):
    """The worker process died here (nothing after it in this try runs)."""


class MortalOperator(KlingGenerateVideoOperator):
    """The generate operator in a worker that dies at ``kill_at`` (once)."""

    kill_at: str | None = None

    def die(self, point: str) -> None:
        if self.kill_at == point:
            self.kill_at = None
            raise Killed(point)


@contextmanager
def mortal(operator: MortalOperator) -> Iterator[None]:
    """The worker running ``operator`` may die where its try writes the submission record."""
    write, record_generation = TaskRecord.write, TaskRecord.record_generation

    def dying_write(record: TaskRecord, stored: Any) -> None:
        intent = stored.generation_id is None
        if intent:
            operator.die("before intent")
        write(record, stored)
        if intent:
            operator.die("after intent")

    def dying_record_generation(record: TaskRecord, stored: Any, generation_id: str,
                                now: float) -> Any:
        operator.die("after POST")
        return record_generation(record, stored, generation_id, now)

    with mock.patch.object(TaskRecord, "write", dying_write), \
            mock.patch.object(TaskRecord, "record_generation", dying_record_generation):
        yield


@dataclass
class Task:
    """One task instance as the model sees it."""

    name: str
    store: StateStoreStub = field(default_factory=StateStoreStub)
    try_number: int = 0
    clear_number: int = 0
    prefix: str = ""
    #: Generations of this task before its last clear after a success (a new video was asked).
    earlier: set[str] = field(default_factory=set)
    result: dict[str, Any] | None = None
    refused_last: bool = False
    #: The intent was stored and the worker died before the POST: the documented human case.
    unsent_intent: str | None = None
    needs_human: bool = False


class TaskLife(RuleBasedStateMachine):
    """Two tasks of one model in a world that the rules make hostile."""

    tasks = Bundle("tasks")

    def __init__(self, sim: KlingSimulator, clock: FakeClock) -> None:
        super().__init__()
        self.sim = sim
        self.clock = clock
        self.run_id = f"run{next(_RUNS)}"
        self.all: list[Task] = []

    # -- the world ---------------------------------------------------------------------------

    @initialize(target=tasks, neighbours=st.integers(0, 6), lag=st.sampled_from([0.0, 60, 240]),
                skew=st.sampled_from([0.0, -240.0, -90.0, 90.0, 240.0]),
                mixed_logs=st.sampled_from([0, 140]))
    def world(self, neighbours: int, lag: float, skew: float, mixed_logs: int) -> Any:
        """The world of this run; 140 unusable log rows per create put the task's own row on
        the second page of a lookup."""
        self.sim.neighbours, self.sim.logs_lag, self.sim.skew = neighbours, lag, skew
        self.sim.mixed_logs = mixed_logs
        self.sim.faults.refusals.clear()
        self.all = [Task("first"), Task("second")]
        return multiple(*self.all)

    @rule(seconds=st.sampled_from([30.0, 300.0, 1200.0, 3600.0]))
    def time_passes(self, seconds: float) -> None:
        self.clock.t += seconds

    @rule(offset=st.sampled_from([-60.0, 0.0, 1.0, 30.0]), failed=st.booleans())
    def a_neighbour_submits(self, offset: float, failed: bool) -> None:
        """Another DAG of the account generates with the same model, at about the same time."""
        self.sim.add_neighbour(MODEL, client_request_id=f"kling:other:{self.run_id}:x:-1.t1",
                               offset=offset, failed=failed)

    # -- Airflow -----------------------------------------------------------------------------

    @rule(task=tasks, fault=st.sampled_from(CREATE_FAULTS + KILL_POINTS + REFUSALS),
          deferrable=st.booleans())
    def a_try(self, task: Task, fault: Any, deferrable: bool) -> None:
        """The scheduler runs the next try of the task (a retry after any earlier end; after a
        success, the user cleared it first)."""
        if task.result is not None:
            self._clear(task)
        self._run(task, fault, deferrable)

    @rule(task=tasks, deferrable=st.booleans())
    def the_user_clears(self, task: Task, deferrable: bool) -> None:
        """A clear: the next try has a higher clear number (and the state store is kept)."""
        self._clear(task)
        self._run(task, None, deferrable)

    def _clear(self, task: Task) -> None:
        if task.result is not None:  # a cleared success makes a new video
            task.earlier |= self._own(task)
            task.result = None
        task.clear_number += 1
        task.needs_human = False

    def _run(self, task: Task, fault: Any, deferrable: bool) -> None:
        task.try_number += 1
        task.needs_human = False  # what the last try ended with
        extra: dict[str, Any] | None = None
        operator = MortalOperator(task_id=task.name, model=MODEL, prompt="a raccoon",
                                  deferrable=deferrable, poll_interval=60, timeout=1800)
        if fault == "answer lost":
            extra = {"simulator_faults": {"create_drop": True}}
        elif fault == "502 after create":
            extra = {"simulator_faults": {"create_status": 502}}
        elif isinstance(fault, int):
            self.sim.faults.refusals = [fault]
        elif fault in KILL_POINTS:
            operator.kill_at = fault
        operator.extra_params = extra
        context = context_for(task.store, try_number=task.try_number,
                              clear_number=task.clear_number)
        context["ti"].run_id = self.run_id
        context["ti"].task_id = task.name
        task.prefix = TaskRecord(context, task.name).prefix()
        push = context["ti"].xcom_push

        def xcom_push(key: str, value: Any) -> None:
            if key == "generation_id":
                operator.die("after id")
            push(key, value)

        context["ti"].xcom_push = xcom_push
        start = len(self.sim.ledger.entries())
        note(f"{task.name} try {task.try_number} (clear {task.clear_number}): {fault}")
        try:
            with mortal(operator):
                task.result = drive(operator, context)
            event("try succeeded")
        except Killed as killed:
            event(f"worker killed {killed}")
            if str(killed) == "after intent":
                task.unsent_intent = task.store.data[STATE_KEY]["client_request_id"]
        except KlingSubmissionUncertainError as exc:
            event("needs a human")
            task.needs_human = True
            note(f"needs a human: {exc}")
        except KlingError as exc:
            event(f"try failed: {type(exc).__name__}")
            note(f"try failed: {exc}")
            if not (isinstance(fault, int) and not self.sim.faults.refusals):
                raise  # only a refused create may fail a try this way
        finally:  # a refusal is only served to a POST: a try that sent none met nothing
            refused = isinstance(fault, int) and not self.sim.faults.refusals
            self.sim.faults.refusals.clear()
        self._check_no_lookup_after_refusal(task, start)
        task.refused_last = refused

    def _check_no_lookup_after_refusal(self, task: Task, start: int) -> None:
        if not task.refused_last:
            return
        entries = self.sim.ledger.entries()[start:]
        first_post = next((i for i, e in enumerate(entries) if e.method == "POST"), len(entries))
        lookups = [e for e in entries[:first_post] if e.path.startswith("/v2/logs")]
        assert not lookups, (f"{task.name}: the try after a definite refusal looked the refused "
                             f"submission up {len(lookups)} times instead of submitting")

    # -- what must hold ----------------------------------------------------------------------

    def _own(self, task: Task) -> set[str]:
        found = self.sim.generations_by_client_request_id()
        return {g for cri, ids in found.items() if cri and cri.startswith(task.prefix + ".")
                for g in ids} if task.prefix else set()

    @invariant()
    def each_task_pays_at_most_once_and_returns_its_own_generation(self) -> None:
        for task in self.all:
            paid = self._own(task) - task.earlier
            assert len(paid) <= 1, f"{task.name} paid {len(paid)} generations: {sorted(paid)}"
            if task.result is not None:
                assert paid == {task.result["generation_id"]}, \
                    f"{task.name} returned {task.result['generation_id']}, paid {sorted(paid)}"
                assert task.result["status"] == "completed"

    @invariant()
    def only_the_documented_case_needs_a_human(self) -> None:
        for task in self.all:
            if not task.needs_human:
                continue
            stored = task.store.data.get(STATE_KEY) or {}
            cri = stored.get("client_request_id")
            assert cri == task.unsent_intent, \
                f"{task.name} needs a human for intent {cri}, not one whose POST was never sent"
            assert cri not in self.sim.generations_by_client_request_id(), \
                f"{task.name} needs a human although intent {cri} has a generation"


def _machine_settings() -> settings:
    """Half the profile's examples: each is a dozen steps, most of them tries."""
    profile = settings()  # the loaded profile's values
    return settings(profile, max_examples=max(4, profile.max_examples // 2))


def _life(sim: KlingSimulator, clock: FakeClock) -> None:
    sim.balance_usd = 1e9  # hundreds of paid generations per test
    # A factory (Hypothesis calls it per example) binds the test's simulator and clock.
    run_state_machine_as_test(lambda: TaskLife(sim, clock),  # type: ignore[arg-type]
                              settings=_machine_settings())
    assert sim.ledger.count(method="POST") >= 10  # the machine did pay: it proves something


def test_a_task_life_pays_once(airflow_sim: KlingSimulator, clock: FakeClock) -> None:
    """Lost answers, 502s, definite refusals, killed workers, retries, clears, neighbours, log
    lag, mixed log pages and skew."""
    _life(airflow_sim, clock)
