"""The Airflow side of "exactly one paid generation per task": submit once, or resume.

The rules live in :mod:`kling_provider._task.submission` (pure); :class:`Submission` connects
them to one try of a generate task: its record (:mod:`._record`), the hook and deferral. Order
of writes is the point:

* the intent goes to ``task_state_store`` *before* the POST;
* the generation id goes into the same record *first* after the answer, then to XCom;
* an uncertain create answer does not fail the task: it is looked up in the usage logs
  (:mod:`._recover`), deferring to
  :class:`~kling_provider.triggers.kling.KlingSubmissionRecoveryTrigger` when deferrable.

Every check made right before a POST is listed in :func:`before_paying`. The request paid for is
prepared once per try (:func:`prepared_request`). Used by :mod:`._generate`, at execute time
only (the operator's entry points import it on first use).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kling_provider import metrics
from kling_provider._task import submission as _submission
from kling_provider.exceptions import (
    KlingError,
    KlingGenerationNotFoundError,
    KlingSubmissionUncertainError,
    KlingValidationError,
)
from kling_provider.operators._arguments import UNKNOWN_RESUBMIT_AFTER
from kling_provider.operators._record import TaskRecord
from kling_provider.operators._recover import Recovery
from kling_provider.types import Generation, Stage

if TYPE_CHECKING:
    from airflow.sdk import Context

    from kling_provider._task.submission import SubmissionRecord
    from kling_provider.catalogue import PreparedRequest
    from kling_provider.hooks.kling import KlingHook
    from kling_provider.operators.kling import KlingGenerateVideoOperator

__all__ = ["Submission", "after_paying", "before_paying", "prepared_request", "sent"]


def prepared_request(task: KlingGenerateVideoOperator, hook: KlingHook,
                     family: str | None) -> PreparedRequest:
    """The create request as validated from ``task``'s rendered fields, once per try.

    The only form of the request that travels on: the POST sends it, and the price
    estimate, the wait (``duration``), the trigger and the result read their values from it,
    never the raw arguments (``duration="5.0"`` is sent as 5 and waited on as 5).
    """
    prepared = task._prepared
    if prepared is None:
        prepared = hook.prepare_request(task.model, task.request_params(),
                                        extra_params=task.extra_params, endpoint_family=family,
                                        allow_unknown_model=task.allow_unknown_model)
        task._prepared = prepared
    return prepared


def sent(task: KlingGenerateVideoOperator, hook: KlingHook, family: str | None,
         name: str) -> Any:
    """A field of the request ``task`` sent, after paying: ``None`` rather than an error.

    A try resumed after a deferral validates its rendered fields again; they passed before
    the POST, so a failure here is unexpected, and it must not fail a paid generation.
    """
    try:
        return prepared_request(task, hook, family).body.get(name)
    except KlingValidationError as exc:
        task.log.warning("The request's %r is unknown here (%s); going on without it.", name, exc)
        return None


def before_paying(task: KlingGenerateVideoOperator, context: Context, hook: KlingHook,
                  prepared: PreparedRequest) -> float | None:
    """Every check made right before a create POST, and only then (never before reattaching or
    recovering): a new pre-pay check is one more call here. Each raises to refuse, naming what
    it refused; the price estimate (USD, ``None`` when unknown) is returned for the result and
    the spend line. The model's retirement first: a withdrawn model is not worth pricing."""
    from kling_provider.operators._budget import guard_budget  # execute time (parse cost)

    hook.check_model(task.model)
    estimate = hook.guard_spend(task.model, prepared.body, max_cost_usd=task.max_cost_usd,
                                check_balance=task.check_balance)
    guard_budget(task, context, hook, estimate)  # last: it reserves the estimate
    return estimate.usd


def after_paying(task: KlingGenerateVideoOperator) -> None:
    """Right after a create POST that returned a generation id: count it."""
    metrics.generation_submitted(task.model)


class Submission:
    """One try of ``task``: the generation it works with, paid for at most once."""

    def __init__(self, task: KlingGenerateVideoOperator, context: Context,
                 hook: KlingHook) -> None:
        self.task, self.hook, self.log, self.context = task, hook, task.log, context
        self.record = TaskRecord(context, task.task_id)
        self.recovery = Recovery(task, self.record, hook)

    def submit_or_resume(self, prepared: PreparedRequest) -> Generation:
        """The generation this try works with: stored, recovered, or newly (and once) paid for.

        May defer (recovery in the triggerer); the caller continues with the result.
        """
        stored = self.record.read()
        action = _submission.decide(stored, clear_number=self.record.clear_number,
                                    now=self.hook.clock.now(), wait_seconds=self.task.timeout)
        if stored is not None:
            self.log.info("Stored submission %s, generation %s: %s.", stored.client_request_id,
                          stored.generation_id, action.value)
        if action is _submission.Action.RECOVER and stored is not None:
            return self.found_or_submit(stored, self.recovery.recover(stored))
        if action is _submission.Action.REATTACH and stored is not None:
            attached = self._reattach(stored)
            if attached is not None:
                return attached
        elif self.record.store is None and self.record.try_number > 1:
            found = self.recovery.earlier_try(prepared.family)
            if found is not None:
                return found
        return self.submit(prepared, stored)

    def found_or_submit(self, stored: SubmissionRecord, found: Generation | None) -> Generation:
        """What a lookup found, or (none, and the task allows it) a new submission."""
        if found is not None:
            return found
        return self.submit(prepared_request(self.task, self.hook,
                                            stored.endpoint_family or "legacy"), stored)

    def after_lookup(self, event: Any, endpoint_family: str | None) -> Generation:
        """After the lookup trigger: record the generation it found (or act on none)."""
        stored = self.recovery.stored_for(event, endpoint_family)
        return self.found_or_submit(stored,
                                    self.recovery.recovered(stored, event.get("generation_id")))

    def submit(self, prepared: PreparedRequest, previous: SubmissionRecord | None) -> Generation:
        """Pay for ``prepared``, once: the checks, the intent, the POST, the id recorded."""
        task, hook, record = self.task, self.hook, self.record
        task.estimated_usd = before_paying(task, self.context, hook, prepared)
        intent = _submission.SubmissionRecord(
            client_request_id=_submission.next_client_request_id(
                record.prefix(), record.try_number, previous),
            model=task.model, endpoint_family=prepared.family, intent_at=hook.clock.now(),
            clear_number=record.clear_number)
        if record.store is None:
            self.log.warning(
                "task_state_store is not available (Airflow < 3.3): if this try dies while its "
                "generation runs, a retry finds it only once it has finished (client request id "
                "%s).", intent.client_request_id)
        record.write(intent)  # before paying
        try:
            generation_id = hook.create_prepared(prepared,
                                                 client_request_id=intent.client_request_id)
        except KlingSubmissionUncertainError as exc:
            self.log.warning("%s Looking the generation up by its client request id %s instead.",
                             exc, intent.client_request_id)
            return self.found_or_submit(intent, self.recovery.recover(intent))
        except KlingError as exc:
            if exc.created_nothing:  # nothing to find later: the next try submits at once
                from kling_provider.operators._budget import release  # execute time (parse cost)

                release(task, self.context, hook)  # nothing is in flight
                record.write(intent.refused_now())
                self.log.warning("The API refused the create request with client request id "
                                 "%s; nothing was created or billed, so the next try submits "
                                 "anew.", intent.client_request_id)
            raise
        record.record_generation(intent, generation_id, hook.clock.now())
        after_paying(task)
        return Generation(generation_id=generation_id, status="queued")

    def _reattach(self, stored: SubmissionRecord) -> Generation | None:
        """The generation an earlier try submitted, if it can still be used."""
        hook = self.hook
        generation_id = str(stored.generation_id)
        try:
            generation = hook.get_generation(generation_id,
                                             endpoint_family=stored.endpoint_family)
        except KlingGenerationNotFoundError as exc:
            age = hook.clock.now() - float(stored.submitted_at or stored.intent_at or 0)
            if age < UNKNOWN_RESUBMIT_AFTER.total_seconds():
                raise KlingGenerationNotFoundError(
                    f"{exc} It was submitted {age:.0f} s ago by an earlier try and may not be "
                    "visible yet, so it is not submitted again (that could pay twice); the next "
                    f"retry after {UNKNOWN_RESUBMIT_AFTER} from submission submits anew.") from exc
            self.log.warning("Earlier generation %s, submitted %.0f s ago, is unknown to the API; "
                             "submitting anew.", generation_id, age)
            return None
        if generation.stage is Stage.FAILED:
            self.log.warning("Earlier generation %s ended with status %r; submitting anew.",
                             generation_id, generation.status)
            return None
        self.log.info("Reattaching to generation %s from an earlier try (status %r).",
                      generation_id, generation.status)
        self.record.push_generation_id(generation_id)
        return generation
