"""Budgets across runs: the rule, the values, the in-flight reservations, and the task against
the simulator (real HTTP on loopback).

A generation is refused before any paid request when what the key spent in the budget's window
(``GET /v2/usage``), plus this deployment's generations in flight, plus its estimate pass
``budget_usd``; the error names each figure. A spend that cannot be read fails safe, or warns.
"""

from __future__ import annotations

import json
import math
import threading
from decimal import Decimal
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred
from hypothesis import example, given
from hypothesis import strategies as st

from kling_provider import get_provider_info
from kling_provider._checks import check_budget_literals
from kling_provider._money.budget import Budget, check_budget, resolve_budget
from kling_provider._money.spend import format_usd
from kling_provider._task import reservations
from kling_provider._task.reservations import InFlight, Reservation, in_flight
from kling_provider.catalogue import endpoint_path
from kling_provider.exceptions import (
    KlingBudgetExceededError,
    KlingError,
    KlingGenerationFailedError,
    KlingSpendUnknownError,
    KlingTimeoutError,
    KlingValidationError,
)
from kling_provider.operators.kling import KlingTextToVideoOperator
from kling_provider.testing.simulator import Faults, KlingSimulator
from tests.conftest import SECRET_KEY, FakeClock, StateStoreStub, context_for

MODEL = "klingai/v2-master-text-to-video"  # $1.40 for 5 s in the simulator's list
money = st.decimals(min_value=0, max_value=10_000, places=6, allow_nan=False,
                    allow_infinity=False)
positive = st.decimals(min_value=Decimal("0.000001"), max_value=10_000, places=6,
                       allow_nan=False, allow_infinity=False)


def budget(usd: str | Decimal = "10", period: str = "day") -> Budget:
    return Budget(usd=Decimal(usd), period=period, on_unknown_spend="fail",
                  source="on connection 'kling_default'")


# -- the rule ------------------------------------------------------------------------------------

@given(limit=positive, spent=money, flying=money, estimate=money,
       period=st.sampled_from(["day", "week", "month"]), count=st.integers(0, 50))
def test_refused_exactly_when_the_sum_passes_the_budget(
        limit: Decimal, spent: Decimal, flying: Decimal, estimate: Decimal, period: str,
        count: int) -> None:
    total = spent + flying + estimate
    rule = budget(limit, period)
    if total <= limit:
        assert check_budget(rule, spent=spent, in_flight=flying, in_flight_count=count,
                            estimate=estimate, model=MODEL) == total
        return
    with pytest.raises(KlingBudgetExceededError) as refused:
        check_budget(rule, spent=spent, in_flight=flying, in_flight_count=count,
                     estimate=estimate, model=MODEL)
    message = str(refused.value)
    for figure in (spent, flying, estimate, total, limit):
        assert format_usd(figure) in message
    assert f"per {period}" in message and f"{count} generation" in message
    assert "Nothing was sent to the API" in message


@given(limit=positive, spent=money, flying=money)
def test_an_unknown_estimate_passes_only_while_room_is_left(limit: Decimal, spent: Decimal,
                                                            flying: Decimal) -> None:
    if spent + flying < limit:
        assert check_budget(budget(limit), spent=spent, in_flight=flying, in_flight_count=1,
                            estimate=None, model=MODEL) == spent + flying
        return
    with pytest.raises(KlingBudgetExceededError, match="price, unknown"):
        check_budget(budget(limit), spent=spent, in_flight=flying, in_flight_count=1,
                     estimate=None, model=MODEL)


def test_sums_are_exact_decimals() -> None:
    # In binary floats 0.1 + 0.2 > 0.3: a budget of exactly what is asked would refuse.
    assert check_budget(budget("0.3"), spent=Decimal("0.1"), in_flight=Decimal(0),
                        in_flight_count=0, estimate=Decimal("0.2"), model=MODEL) == Decimal("0.3")


# -- the values: connection extra, task parameter, rendered templates ---------------------------

def _spelled(usd: Decimal, draw_spaces: str) -> str:
    return f"{draw_spaces}{usd}{draw_spaces}"


@given(usd=positive, spaces=st.sampled_from(["", " ", "\t"]),
       period=st.sampled_from(["day", "week", "month", " Week ", "MONTH"]),
       on_task=st.booleans())
def test_rendered_text_is_read_as_the_number_it_spells(usd: Decimal, spaces: str, period: str,
                                                       on_task: bool) -> None:
    values = {"budget_usd": _spelled(usd, spaces), "budget_period": period}
    task, connection = (values, {"budget_usd": "1"}) if on_task else ({}, values)
    found = resolve_budget(task, connection, task_id="t", conn_id="c")
    assert found is not None
    assert (found.usd, found.period) == (usd, period.strip().lower())
    assert found.window == {"day": "24h", "week": "7d", "month": "30d"}[found.period]
    assert found.source == ("on task 't'" if on_task else "on connection 'c'")


def test_the_task_overrides_the_connection_value_by_value() -> None:
    connection = {"budget_usd": 50, "budget_period": "week", "on_unknown_spend": "warn"}
    found = resolve_budget({"budget_usd": 5.5, "budget_period": None}, connection,
                           task_id="t", conn_id="c")
    assert found == Budget(Decimal("5.5"), "week", "warn", "on task 't'")
    assert resolve_budget({}, {}, task_id="t", conn_id="c") is None
    assert resolve_budget({"budget_usd": ""}, {"budget_period": "day"}, task_id="t",
                          conn_id="c") is None
    assert resolve_budget({}, {"budget_usd": 3}, task_id="t", conn_id="c") == Budget(
        Decimal(3), "month", "fail", "on connection 'c'")


@pytest.mark.parametrize("bad", [0, -1, "0", "-2.5", "nan", "inf", "twelve", True, [12],
                                 "{{ params.budget }}x", "1e999999999"])
def test_bad_budget_values_are_refused_naming_parameter_value_and_what_is_allowed(
        bad: Any) -> None:
    with pytest.raises(KlingValidationError) as refused:
        resolve_budget({"budget_usd": bad}, {}, task_id="t", conn_id="c")
    message = str(refused.value)
    assert "'budget_usd'" in message and repr(bad) in message and "above 0" in message
    assert "parameter of task 't'" in message
    with pytest.raises(KlingValidationError, match="extra of connection 'c'"):
        resolve_budget({}, {"budget_usd": bad}, task_id="t", conn_id="c")


@given(usd=st.decimals(min_value=Decimal("0.000001"), max_value=Decimal(10**9) + 1, places=6,
                       allow_nan=False, allow_infinity=False),
       as_text=st.booleans())
@example(usd=Decimal(10**9), as_text=False)
@example(usd=Decimal("1000000000.000001"), as_text=True)
def test_a_budget_up_to_a_billion_is_read_exactly_and_above_it_refused(usd: Decimal,
                                                                        as_text: bool) -> None:
    """docs/spend.rst: a number above 0 and at most 1,000,000,000, or its rendered text."""
    value: Any = str(usd) if as_text else float(usd)
    if usd > 10**9:
        with pytest.raises(KlingValidationError, match="at most 1,000,000,000"):
            resolve_budget({"budget_usd": value}, {}, task_id="t", conn_id="c")
        return
    found = resolve_budget({"budget_usd": value}, {}, task_id="t", conn_id="c")
    assert found is not None
    assert found.usd == (usd if as_text else Decimal(str(float(usd))))


@pytest.mark.parametrize(("name", "bad"), [("budget_period", "year"), ("budget_period", 7),
                                           ("on_unknown_spend", "ignore")])
def test_bad_choices_are_refused(name: str, bad: Any) -> None:
    with pytest.raises(KlingValidationError) as refused:
        resolve_budget({"budget_usd": 1, name: bad}, {}, task_id="t", conn_id="c")
    assert f"'{name}'={bad!r}" in str(refused.value) and "one of" in str(refused.value)


def test_literals_are_checked_when_the_dag_is_parsed_templates_when_rendered() -> None:
    with pytest.raises(KlingValidationError, match="'budget_usd'"):
        KlingTextToVideoOperator(task_id="t", prompt="p", budget_usd="-3")
    with pytest.raises(KlingValidationError, match="'budget_period'"):
        KlingTextToVideoOperator.partial(task_id="t", budget_period="fortnight")
    with pytest.raises(KlingValidationError, match="'on_unknown_spend'.*not a templated"):
        KlingTextToVideoOperator(task_id="t", prompt="p", on_unknown_spend="{{ params.x }}")
    check_budget_literals({"budget_usd": "{{ params.budget }}", "budget_period": None})
    task = KlingTextToVideoOperator(task_id="t", prompt="p", budget_usd="{{ params.budget }}")
    assert "budget_usd" in task.template_fields and "budget_period" in task.template_fields


def test_the_connection_form_shows_the_budget_extras() -> None:
    [kind] = get_provider_info()["connection-types"]
    fields = kind["conn-fields"]
    assert fields["budget_period"]["schema"]["enum"] == ["day", "week", "month", None]
    assert fields["on_unknown_spend"]["schema"]["enum"] == ["fail", "warn", None]
    assert "string" in fields["budget_usd"]["schema"]["type"]  # "12.5" typed in the form


# -- reservations --------------------------------------------------------------------------------

class DictStore:
    """Variables in a dict, listed by prefix like ``Variable.keys``."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def keys(self, prefix: str) -> list[str]:
        return sorted(k for k in self.values if k.startswith(prefix))

    def set(self, name: str, value: str) -> None:
        self.values[name] = value

    def delete(self, name: str) -> None:
        del self.values[name]


@given(task=st.text("0123456789abcdef", min_size=16, max_size=16),
       expires=st.integers(0, 10**11), usd=st.none() | money)
def test_a_reservation_is_its_variable_name(task: str, expires: int, usd: Decimal | None) -> None:
    made = Reservation.of(SECRET_KEY, task, expires_at=expires, usd=usd)
    assert Reservation.parse(made.name) == made
    assert made.usd >= (usd or 0) and made.usd - (usd or 0) < Decimal("0.000001")  # rounded up
    assert SECRET_KEY not in made.name and SECRET_KEY[:8] not in made.name
    assert len(made.name) <= 250  # Airflow's Variable key column


def test_in_flight_counts_the_keys_unexpired_others() -> None:
    mine = Reservation.of(SECRET_KEY, "a" * 16, expires_at=200, usd=Decimal("1.40"))
    other = Reservation.of(SECRET_KEY, "b" * 16, expires_at=200, usd=Decimal("2.80"))
    old = Reservation.of(SECRET_KEY, "c" * 16, expires_at=100, usd=Decimal("9"))
    foreign = Reservation.of("another key", "d" * 16, expires_at=200, usd=Decimal("9"))
    names = [mine.name, other.name, old.name, foreign.name, "unrelated", "kling_inflight.x"]
    assert in_flight(names, SECRET_KEY, now=150, own_task="a" * 16) == InFlight(
        Decimal("2.80"), 1, (old.name,))
    assert in_flight(names, SECRET_KEY, now=150).count == 2


# -- the task against the simulator -------------------------------------------------------------

@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> DictStore:
    fake = DictStore()
    monkeypatch.setattr(reservations, "STORE", fake)
    return fake


def creates(sim: KlingSimulator) -> int:
    return sim.ledger.count(method="POST", path=endpoint_path("legacy"))


def task(**arguments: Any) -> KlingTextToVideoOperator:
    return KlingTextToVideoOperator(task_id="generate", model=MODEL, prompt="p", duration=5,
                                    deferrable=False, poll_interval=10, **arguments)


def test_refused_before_paying_naming_every_figure(
        airflow_sim: KlingSimulator, store: DictStore, clock: FakeClock) -> None:
    now = airflow_sim.service_time()
    airflow_sim.usage.add_spend("7.00", key=SECRET_KEY, model=MODEL, at=now - 3600)
    airflow_sim.usage.add_spend("50", key=SECRET_KEY, model=MODEL, at=now - 2 * 86400)  # before
    elsewhere = Reservation.of(SECRET_KEY, "f" * 16, expires_at=clock.now() + 600,
                               usd=Decimal("1.40"))
    store.set(elsewhere.name, "{}")
    with pytest.raises(KlingBudgetExceededError) as refused:
        task(budget_usd="9.5", budget_period="day").execute(context_for(StateStoreStub()))
    message = str(refused.value)
    for said in ("$9.50 per day", "Spent in that window $7.00", "in flight $1.40 (1 generation",
                 "estimate $1.40", "= $9.80 > $9.50", "on task 'generate'"):
        assert said in message
    assert SECRET_KEY not in message
    assert creates(airflow_sim) == 0
    assert store.keys(reservations.PREFIX) == [elsewhere.name]  # its own was taken back


def test_within_budget_it_pays_and_releases_its_reservation_when_done(
        airflow_sim: KlingSimulator, store: DictStore, kling_env: Any,
        capsys: pytest.CaptureFixture[str]) -> None:
    kling_env(airflow_sim.base_url, budget_usd="3", budget_period="week")
    seen: list[list[str]] = []
    real_keys = store.keys

    def keys(prefix: str) -> list[str]:
        seen.append(real_keys(prefix))
        return seen[-1]

    written: list[tuple[str, str]] = []
    real_set = store.set
    store.keys = keys  # type: ignore[method-assign]

    def record(name: str, value: str) -> None:
        written.append((name, value))
        real_set(name, value)

    store.set = record  # type: ignore[method-assign]
    result = task().execute(context_for(StateStoreStub()))
    assert result["usd_spent"] == 1.40 and creates(airflow_sim) == 1
    [(name, value)] = written  # written before the key's spend was read
    assert Reservation.parse(name).usd == Decimal("1.4")  # type: ignore[union-attr]
    assert name in seen[-1]  # the listing the decision read holds it
    assert json.loads(value) == {"dag_id": "dag", "run_id": "manual__2026-11-21T00:00:00+00:00",
                                 "task_id": "generate", "map_index": -1, "model": MODEL}
    assert store.values == {}  # released once the video completed
    logged = capsys.readouterr().out  # the task log (Airflow's structlog)
    assert "Budget $3.00 per week" in logged and "in flight $0.00 (0 generations)" in logged
    # The next task sees the completed video in the key's bill: 1.40 + 1.40 <= 3; a third not.
    task().execute(context_for(StateStoreStub()))
    with pytest.raises(KlingBudgetExceededError, match=r"\$2.80.*\$4.20 > \$3.00"):
        task().execute(context_for(StateStoreStub()))
    assert creates(airflow_sim) == 2


def test_a_reservation_left_by_a_waiting_task_counts_until_its_timeout_plus_an_hour(
        airflow_sim: KlingSimulator, store: DictStore, clock: FakeClock) -> None:
    """docs/spend.rst: a task that stops waiting leaves its reservation, which stops counting at
    the task's timeout plus an hour (the generation may still complete and be billed)."""
    operator = KlingTextToVideoOperator(task_id="generate", model=MODEL, prompt="p", duration=5,
                                        timeout=600, budget_usd="50", budget_period="day")
    before = clock.now()
    with pytest.raises(TaskDeferred):  # the wait goes to the triggerer: the reservation stays
        operator.execute(context_for(StateStoreStub()))
    [name] = store.keys(reservations.PREFIX)
    found = Reservation.parse(name)
    assert found is not None
    assert math.ceil(before + 600 + 3600) <= found.expires_at <= math.ceil(clock.now() + 4200)


@pytest.mark.parametrize("fault", [[403], [503] * 5])
def test_an_unreadable_spend_fails_safe_or_warns_when_chosen(
        airflow_sim: KlingSimulator, store: DictStore, fault: list[int],
        capsys: pytest.CaptureFixture[str]) -> None:
    airflow_sim.faults = Faults(statuses=list(fault))
    with pytest.raises(KlingSpendUnknownError) as refused:
        task(budget_usd=100).execute(context_for(StateStoreStub()))
    message = str(refused.value)
    assert "could not be read (GET /v2/usage)" in message
    assert ("(403)" if fault == [403] else "HTTP 503") in message
    assert "on_unknown_spend='warn'" in message and SECRET_KEY not in message
    assert creates(airflow_sim) == 0 and store.values == {}
    airflow_sim.faults = Faults(statuses=list(fault))
    result = task(budget_usd=100, on_unknown_spend="warn").execute(
        context_for(StateStoreStub()))
    assert result["usd_spent"] == 1.40 and creates(airflow_sim) == 1
    logged = capsys.readouterr().out
    assert "Submitting anyway (on_unknown_spend='warn')" in logged
    assert SECRET_KEY not in logged


def test_without_variables_listing_in_flight_is_unknown(airflow_sim: KlingSimulator,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    class Old(DictStore):  # Airflow < 3.3: no Variable.keys
        def keys(self, prefix: str) -> list[str]:
            raise AttributeError("keys")

    monkeypatch.setattr(reservations, "STORE", Old())
    with pytest.raises(KlingSpendUnknownError, match="in flight could not be read"):
        task(budget_usd=100).execute(context_for(StateStoreStub()))
    assert creates(airflow_sim) == 0


def test_no_budget_touches_no_variable(airflow_sim: KlingSimulator,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    class Untouchable(DictStore):
        def keys(self, prefix: str) -> list[str]:
            raise AssertionError("a task without a budget listed Variables")

        def set(self, name: str, value: str) -> None:
            raise AssertionError("a task without a budget wrote a Variable")

    monkeypatch.setattr(reservations, "STORE", Untouchable())
    assert task().execute(context_for(StateStoreStub()))["usd_spent"] == 1.40
    assert airflow_sim.ledger.count(method="GET", path="/v2/usage") == 0


def test_a_refused_create_and_an_expired_reservation_stop_counting(
        airflow_sim: KlingSimulator, store: DictStore, clock: FakeClock) -> None:
    expired = Reservation.of(SECRET_KEY, "e" * 16, expires_at=clock.now() - 1, usd=Decimal(50))
    store.set(expired.name, "{}")
    airflow_sim.faults = Faults(refusals=[403])  # the create: out of credits, nothing created
    with pytest.raises(KlingError, match="403"):
        task(budget_usd=10).execute(context_for(StateStoreStub()))
    assert store.values == {}  # its own released, the expired one deleted by the check


def test_a_generation_that_fails_while_the_worker_polls_releases_its_reservation(
        airflow_sim: KlingSimulator, store: DictStore) -> None:
    """Failed while the task waited in the worker (not at its first status check): billed
    nothing, so it stops counting at once instead of at its timeout plus an hour."""
    refused = {"simulator_faults": {"error": {"name": "moderation_error", "message": "no"}}}
    with pytest.raises(KlingGenerationFailedError, match="no"):
        task(budget_usd=10, extra_params=refused).execute(context_for(StateStoreStub()))
    assert creates(airflow_sim) == 1
    assert store.values == {}


def test_a_timed_out_wait_keeps_its_reservation_until_it_expires(
        airflow_sim: KlingSimulator, store: DictStore, clock: FakeClock) -> None:
    """The API has no cancel: a generation the task stopped waiting for still completes and is
    billed, so its reservation goes on counting (until the task's timeout plus an hour)."""
    with pytest.raises(KlingTimeoutError):
        task(budget_usd=10, timeout=20).execute(context_for(StateStoreStub()))
    (left,) = [Reservation.parse(name) for name in store.values]
    assert left is not None and left.usd == Decimal("1.4")
    assert left.expires_at >= clock.now() + reservations.GRACE


class LockedStore(DictStore):
    """A store shared by threads, each call atomic (as each Variable request is)."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()

    def keys(self, prefix: str) -> list[str]:
        with self.lock:
            return super().keys(prefix)

    def set(self, name: str, value: str) -> None:
        with self.lock:
            super().set(name, value)

    def delete(self, name: str) -> None:
        with self.lock:
            super().delete(name)


def test_concurrent_tasks_do_not_pass_the_budget_through_each_other(
        airflow_sim: KlingSimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Twelve tasks decide at once (threads, real HTTP), each $1.40 against $5.00: at most three
    may pay (listing before reserving, the order this rules out, fails it in most runs)."""
    shared = LockedStore()
    monkeypatch.setattr(reservations, "STORE", shared)
    start = threading.Barrier(12)
    admitted: list[int] = []
    refused: list[int] = []

    def one(index: int) -> None:
        context = context_for(None)
        context["ti"].map_index = index
        operator = task(budget_usd="5", wait_for_completion=False)
        start.wait()
        try:
            operator.execute(context)
        except KlingBudgetExceededError:
            refused.append(index)
        else:
            admitted.append(index)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(admitted) + len(refused) == 12
    assert 1 <= len(admitted) <= 3  # 3 x $1.40 = $4.20 <= $5.00 < 4 x $1.40
    assert creates(airflow_sim) == len(admitted)
    flying = in_flight(shared.keys(reservations.PREFIX), SECRET_KEY, now=0)
    assert flying.count == len(admitted) and flying.usd <= Decimal(5)  # still generating
