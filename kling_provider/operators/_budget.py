"""The budget before paying, on a worker: reserve, read, decide; and the release at the end.

Called by the generate operators right before the create POST (after the spend limit and the
balance, :meth:`~kling_provider.hooks.kling.KlingHook.guard_spend`) when the task or its
connection sets ``budget_usd``. In order (why: :mod:`kling_provider._task.reservations`):

1. write this task's reservation (its estimate, until its timeout plus an hour);
2. read this deployment's other reservations of the same API key, and what the key spent in the
   budget's window (``GET /v2/usage``);
3. decide with :func:`kling_provider._money.budget.check_budget`; a refusal deletes the
   reservation and fails the task before any paid request. Either way the check's figures are
   pushed as the ``kling_budget`` XCom (:mod:`kling_provider._money.readings`): the videos page
   shows the newest one, since it never calls the API itself.

A figure that cannot be read (403, a network fault, Airflow < 3.3 without ``Variable.keys``)
fails the task (``on_unknown_spend="fail"``, the default) or is logged and taken as nothing
(``"warn"``). The reservation is released when the generation ends (completed or failed; a task
that ends in the triggerer gives the trigger its name, :func:`reservation_token`, and the
trigger releases it); a task that stops waiting (timeout, killed) leaves it to expire, as the
generation goes on and is billed. Tasks without a budget never touch
Variables. Imported when a task runs (parse cost).
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from kling_provider._money.budget import BUDGET_EXTRAS, Budget, check_budget, resolve_budget
from kling_provider._money.readings import BUDGET_XCOM_KEY, BudgetReading
from kling_provider._money.spend import exact_amount, format_usd
from kling_provider._task import reservations
from kling_provider.exceptions import KlingBudgetExceededError, KlingError, KlingSpendUnknownError
from kling_provider.operators._record import TaskRecord

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator, Context

    from kling_provider._money.pricing import PriceEstimate
    from kling_provider.hooks.kling import KlingHook

__all__ = ["budget_of", "guard_budget", "release", "reservation_token"]

log = logging.getLogger("kling_provider")


def budget_of(task: BaseOperator, hook: KlingHook) -> Budget | None:
    """The task's budget (its own values over its connection's), checked."""
    settings = hook.settings
    return resolve_budget({name: getattr(task, name, None) for name in BUDGET_EXTRAS},
                          dict(settings.budget_extra), task_id=task.task_id,
                          conn_id=settings.conn_id)


def _token(task: BaseOperator, context: Context) -> str:
    return reservations.task_token(TaskRecord(context, task.task_id).prefix())


def guard_budget(task: BaseOperator, context: Context, hook: KlingHook,
                 estimate: PriceEstimate) -> None:
    """Refuse this generation (before any paid request) when it would pass the budget."""
    budget = budget_of(task, hook)
    if budget is None:
        return
    api_key, now = hook.settings.api_key, hook.clock.now()
    usd = exact_amount(estimate.usd)
    token = _token(task, context)
    ti = context.get("ti")
    mine = reservations.Reservation.of(
        api_key, token, expires_at=now + float(getattr(task, "timeout", 1800.0))
        + reservations.GRACE, usd=usd)
    about = {"dag_id": getattr(ti, "dag_id", None), "run_id": getattr(ti, "run_id", None),
             "task_id": task.task_id, "map_index": getattr(ti, "map_index", -1),
             "model": estimate.model}
    unknown: list[str] = []
    store = reservations.STORE
    flying = reservations.InFlight(Decimal(0), 0, ())
    try:
        reservations.reserve(store, mine, api_key, about)
        flying = reservations.in_flight(store.keys(reservations.key_prefix(api_key)), api_key,
                                        now=now, own_task=token)
    except Exception as exc:  # Airflow < 3.3, the execution API unreachable, ...
        unknown.append(f"this deployment's generations in flight could not be read "
                       f"({type(exc).__name__}: Airflow 3.3+ Variables are needed)")
    spent: Decimal | None = None
    try:
        spent = hook.get_key_spend(budget.window)
    except KlingError as exc:
        unknown.append(f"what the key spent could not be read (GET /v2/usage): {exc}")

    def reading(spent: Decimal | None, decision: str) -> BudgetReading:
        return BudgetReading(
            key=reservations.key_id(api_key), conn_id=hook.settings.conn_id, budget=budget.usd,
            period=budget.period, source=budget.source, spent=spent, in_flight=flying.usd,
            in_flight_count=flying.count, estimate=usd, decision=decision,
            checked_at=datetime.fromtimestamp(now, timezone.utc))
    if unknown:
        said = f"Budget {budget.describe()}: {'; '.join(unknown)}."
        if budget.on_unknown_spend == "fail":
            reservations.release_quietly(store, api_key, token)
            _record(ti, reading(spent, "unknown"))
            raise KlingSpendUnknownError(
                f"Not submitting: {said} Set on_unknown_spend='warn' to submit anyway. Nothing "
                "was sent to the API.")
        task.log.warning("%s Submitting anyway (on_unknown_spend='warn'): the budget is "
                         "checked with what could be read.", said)
    try:
        total = check_budget(budget, spent=spent or Decimal(0),
                             in_flight=flying.usd, in_flight_count=flying.count, estimate=usd,
                             model=estimate.model)
    except KlingBudgetExceededError:
        reservations.release_quietly(store, api_key, token)
        _record(ti, reading(spent, "refused"))
        raise
    _record(ti, reading(spent, "admitted"))
    task.log.info("Budget %s: spent %s + in flight %s (%d generations) + this one %s = %s.",
                  budget.describe(), format_usd(spent), format_usd(flying.usd), flying.count,
                  format_usd(usd), format_usd(total))
    for name in flying.expired:  # a killed task's leftovers: whoever sees them first
        _forget(store, name)


def _record(ti: Any, reading: BudgetReading) -> None:
    """The check as the videos page shows it (:mod:`kling_provider._money.readings`): the page
    never asks the API, so the spend it shows is the last one a task read."""
    if ti is not None:
        ti.xcom_push(key=BUDGET_XCOM_KEY, value=reading.to_record())


def release(task: BaseOperator, context: Context, hook: KlingHook) -> None:
    """The generation ended: this task's reservation stops counting (best effort)."""
    token = reservation_token(task, context, hook)
    if token is not None:
        reservations.release_quietly(reservations.STORE, hook.settings.api_key, token)


def reservation_token(task: BaseOperator, context: Context, hook: KlingHook) -> str | None:
    """The name part of this task's reservation, ``None`` when it has no budget: what a trigger
    that ends the task needs to release it (a hash, never the key)."""
    try:
        if budget_of(task, hook) is None:
            return None
    except Exception:  # a bad budget value or no connection: no budget, nothing reserved
        return None
    return _token(task, context)


def _forget(store: reservations.Store, name: str) -> None:
    try:
        store.delete(name)
    except Exception as exc:  # another task deleted it first: nothing to do
        log.debug("An expired reservation was not deleted (%s).", type(exc).__name__)

