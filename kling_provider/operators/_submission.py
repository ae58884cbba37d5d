"""The Airflow side of "exactly one paid generation per task": reading and writing the record.

The rules live in :mod:`kling_provider._task.submission` (pure); this mixin only connects them to a
task: ``task_state_store``, XCom, the hook and deferral. Order of writes is the point:

* the intent goes to ``task_state_store`` *before* the POST;
* the generation id goes into the same record *first* after the answer, then to XCom;
* an uncertain create answer does not fail the task: it defers to
  :class:`~kling_provider.triggers.kling.KlingSubmissionRecoveryTrigger`, which finds the
  generation in the usage logs.

The operator classes inherit this mixin, so parsing a DAG file imports this module: its methods
import the rules, types, hook and triggers themselves, when a task runs (parse cost). It calls
nothing of :class:`~kling_provider.operators._flow.GenerationFlow`, which builds on it: the entry
points (``execute``, ``execute_recovered``) are there. The checks before a POST are all listed in
:func:`before_paying`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from kling_provider._task.result import GENERATION_ID_XCOM_KEY, VIDEO_URL_XCOM_KEY
from kling_provider.exceptions import (
    KlingError,
    KlingGenerationNotFoundError,
    KlingSubmissionUncertainError,
    KlingValidationError,
)

if TYPE_CHECKING:
    # Imported where used (the hook, the triggers, the pure rules, the types): parsing a DAG file
    # imports this mixin with the operator class and needs none of them (parse cost).
    from airflow.sdk import BaseOperator, Context

    from kling_provider._task import submission as _submission
    from kling_provider._task.submission import SubmissionRecord
    from kling_provider.catalogue import PreparedRequest
    from kling_provider.hooks.kling import KlingHook
    from kling_provider.types import Generation

    _Operator = BaseOperator
else:
    _Operator = object

#: A stored generation the API answers 404 for is only resubmitted once it is this old: younger,
#: it may just not be visible yet, and resubmitting could pay twice.
UNKNOWN_RESUBMIT_AFTER = timedelta(minutes=15)
#: How long the deferral of a lookup outlives the lookup's own deadline.
RECOVERY_GRACE = timedelta(minutes=5)


def _ti_value(context: Context, name: str, default: Any) -> Any:
    value = getattr(context.get("ti"), name, None)
    return default if value is None else value


def before_paying(task: DurableSubmission, hook: KlingHook, prepared: PreparedRequest) -> float | None:
    """Every check made right before a create POST, and only then (never before reattaching or
    recovering): a new pre-pay check is one more call here. Each raises to refuse, naming what
    it refused; the price estimate (USD, ``None`` when unknown) is returned for the result and
    the spend line. The model's retirement first: a withdrawn model is not worth pricing."""
    hook.check_model(task.model)
    return hook.guard_spend(task.model, prepared.body, max_cost_usd=task.max_cost_usd,
                            check_balance=task.check_balance).usd


def after_paying(task: DurableSubmission) -> None:
    """Right after a create POST that returned a generation id: count it."""
    from kling_provider import metrics  # execute time only (parse cost)

    metrics.generation_submitted(task.model)


class DurableSubmission(_Operator):
    """Mixin of the generate operators: submit once, recover, reattach."""

    if TYPE_CHECKING:
        model: str
        kling_conn_id: str
        poll_interval: float
        timeout: float
        deferrable: bool
        extra_params: dict[str, Any] | None
        on_uncertain_submission: _submission.OnUncertainSubmission
        allow_unknown_model: bool
        _prepared: PreparedRequest | None

        max_cost_usd: float | None
        check_balance: bool
        estimated_usd: float | None

        def request_params(self) -> dict[str, Any]: ...

    def prepared_request(self, hook: KlingHook, family: str | None) -> PreparedRequest:
        """The create request as validated from this task's rendered fields, once per try.

        The only form of the request that travels on: the POST sends it, and the price
        estimate, the wait (``duration``), the trigger and the result read their values from it,
        never the raw arguments (``duration="5.0"`` is sent as 5 and waited on as 5).
        """
        prepared: PreparedRequest | None = getattr(self, "_prepared", None)
        if prepared is None:
            prepared = hook.prepare_request(self.model, self.request_params(),
                                            extra_params=self.extra_params,
                                            endpoint_family=family,
                                            allow_unknown_model=self.allow_unknown_model)
            self._prepared = prepared
        return prepared

    def sent(self, hook: KlingHook, family: str | None, name: str) -> Any:
        """A field of the request this task sent, after paying: ``None`` rather than an error.

        A try resumed after a deferral validates its rendered fields again; they passed before
        the POST, so a failure here is unexpected, and it must not fail a paid generation.
        """
        try:
            return self.prepared_request(hook, family).body.get(name)
        except KlingValidationError as exc:
            self.log.warning("The request's %r is unknown here (%s); going on without it.",
                             name, exc)
            return None

    # -- the record ------------------------------------------------------------------------

    @staticmethod
    def _store(context: Context) -> Any:
        return context.get("task_state_store")

    def _record(self, context: Context) -> SubmissionRecord | None:
        from kling_provider._task import submission as _submission  # execute time only (parse cost)

        store = self._store(context)
        return _submission.SubmissionRecord.from_json(store.get(_submission.STATE_KEY)) if store else None

    def _write(self, context: Context, record: SubmissionRecord) -> None:
        from kling_provider._task import submission as _submission  # execute time only (parse cost)

        store = self._store(context)
        if store is not None:
            store.set(_submission.STATE_KEY, record.to_json())

    @staticmethod
    def _clear_number(context: Context) -> int:
        return int(getattr(context.get("dag_run"), "clear_number", 0) or 0)

    def _prefix(self, context: Context) -> str:
        from kling_provider._task import submission as _submission  # execute time only (parse cost)

        return _submission.task_prefix(
            str(_ti_value(context, "dag_id", "dag")), str(_ti_value(context, "run_id", "run")),
            str(_ti_value(context, "task_id", self.task_id)),
            _ti_value(context, "map_index", -1))

    def _record_generation(self, context: Context, record: SubmissionRecord,
                           generation_id: str, now: float) -> SubmissionRecord:
        """The generation id into the record FIRST (the durable trace of the payment), then XCom."""
        stored = record.with_generation(generation_id, now)
        self._write(context, stored)
        context["ti"].xcom_push(key=GENERATION_ID_XCOM_KEY, value=generation_id)
        # The extra link is evaluated whenever the task pauses or ends; an empty URL until the
        # video exists keeps that lookup from logging a missing-XCom error at every deferral.
        context["ti"].xcom_push(key=VIDEO_URL_XCOM_KEY, value="")
        return stored

    def _mark_delivered(self, context: Context, generation_id: str) -> None:
        """Note that the task succeeded with this generation: a later try is then a clear."""
        from kling_provider._task import submission as _submission  # execute time only (parse cost)

        record = self._record(context)
        if record is not None and record.generation_id == generation_id:
            self._write(context, _submission.SubmissionRecord(**{**record.__dict__, "delivered": True}))

    # -- one try ---------------------------------------------------------------------------

    def submit_or_resume(self, context: Context, hook: KlingHook, family: str) -> Generation:
        """The generation this try works with: stored, recovered, or newly (and once) paid for.

        May defer (recovery in the triggerer); the caller continues with the result.
        """
        from kling_provider._task import submission as _submission  # execute time only (parse cost)

        record = self._record(context)
        action = _submission.decide(record, clear_number=self._clear_number(context),
                                    now=hook.clock.now(), wait_seconds=self.timeout)
        if record is not None:
            self.log.info("Stored submission %s, generation %s: %s.", record.client_request_id,
                          record.generation_id, action.value)
        if action is _submission.Action.RECOVER and record is not None:
            return self._recover(context, hook, record)
        if action is _submission.Action.REATTACH and record is not None:
            attached = self._reattach(context, hook, record)
            if attached is not None:
                return attached
        elif self._store(context) is None and int(_ti_value(context, "try_number", 1)) > 1:
            found = self._earlier_try(context, hook, family)
            if found is not None:
                return found
        return self._submit(context, hook, family, record)

    def _submit(self, context: Context, hook: KlingHook, family: str,
                previous: SubmissionRecord | None) -> Generation:
        from kling_provider._task import submission as _submission  # execute time only (parse cost)
        from kling_provider.types import Generation

        prepared = self.prepared_request(hook, family)
        self.estimated_usd = before_paying(self, hook, prepared)
        now = hook.clock.now()
        intent = _submission.SubmissionRecord(
            client_request_id=_submission.next_client_request_id(
                self._prefix(context), int(_ti_value(context, "try_number", 1)), previous),
            model=self.model, endpoint_family=family, intent_at=now,
            clear_number=self._clear_number(context))
        if self._store(context) is None:
            self.log.warning(
                "task_state_store is not available (Airflow < 3.3): if this try dies while its "
                "generation runs, a retry finds it only once it has finished (client request id "
                "%s).", intent.client_request_id)
        self._write(context, intent)  # before paying
        try:
            generation_id = hook.create_prepared(prepared,
                                                 client_request_id=intent.client_request_id)
        except KlingSubmissionUncertainError as exc:
            self.log.warning("%s Looking the generation up by its client request id %s instead.",
                             exc, intent.client_request_id)
            return self._recover(context, hook, intent)
        except KlingError as exc:
            if exc.created_nothing:  # nothing to find later: the next try submits at once
                self._write(context, intent.refused_now())
                self.log.warning("The API refused the create request with client request id "
                                 "%s; nothing was created or billed, so the next try submits "
                                 "anew.", intent.client_request_id)
            raise
        self._record_generation(context, intent, generation_id, hook.clock.now())
        after_paying(self)
        return Generation(generation_id=generation_id, status="queued")

    # -- recovery --------------------------------------------------------------------------

    def _recover(self, context: Context, hook: KlingHook, record: SubmissionRecord) -> Generation:
        from kling_provider._task import submission as _submission  # execute time only (parse cost)

        cri = str(record.client_request_id)
        deadline = _submission.lookup_deadline(record.intent_at, self.timeout)
        self.log.info("Looking up the generation of client request id %s (model %s) in the usage "
                      "logs until %s.", cri, record.model, _submission._iso(deadline))
        if self.deferrable:
            # execute time only (parse cost)
            from kling_provider.triggers.kling import KlingSubmissionRecoveryTrigger

            self.defer(
                trigger=KlingSubmissionRecoveryTrigger(
                    kling_conn_id=self.kling_conn_id, client_request_id=cri, model=record.model,
                    since=record.intent_at, deadline=deadline, poll_interval=self.poll_interval),
                method_name="execute_recovered",
                kwargs={"endpoint_family": record.endpoint_family},
                timeout=timedelta(seconds=max(0.0, deadline - hook.clock.now())) + RECOVERY_GRACE,
            )
        row = hook.find_generation(cri, model=record.model, since=record.intent_at,
                                   deadline=deadline, poll_interval=self.poll_interval)
        return self._recovered(context, hook, record, row.generation_id if row else None)

    def _recovered(self, context: Context, hook: KlingHook, record: SubmissionRecord,
                   generation_id: str | None) -> Generation:
        family = record.endpoint_family
        if generation_id is None:
            message = (
                f"Task {self.task_id!r}: no generation with client request id "
                f"{record.client_request_id!r} (model {record.model!r}) appeared in the usage "
                "logs within the time a generation can take, so the create request most likely "
                "never reached the API.")
            if self.on_uncertain_submission == "resubmit":
                self.log.warning("%s Submitting anew (on_uncertain_submission='resubmit').",
                                 message)
                return self._submit(context, hook, family or "legacy", record)
            raise KlingSubmissionUncertainError(
                f"{message} It is not submitted again, which could pay twice: search the AI/ML "
                "API dashboard's usage logs for that client request id; if there is no "
                "generation, clear this task (it then submits anew), or set "
                "on_uncertain_submission='resubmit'.")
        self.log.info("Found generation %s of client request id %s in the usage logs.",
                      generation_id, record.client_request_id)
        self._record_generation(context, record, generation_id, hook.clock.now())
        return hook.get_generation(generation_id, endpoint_family=family)

    def recovered_generation(self, context: Context, hook: KlingHook, event: Any,
                             endpoint_family: str | None) -> Generation:
        """After the recovery trigger: record the generation it found (or act on none)."""
        from kling_provider._task import submission as _submission  # execute time only (parse cost)

        if not isinstance(event, dict) or event.get("status") not in ("found", "not_found"):
            raise KlingError(f"Task {self.task_id!r}: the usage-logs lookup failed: "
                             f"{(event or {}).get('message') if isinstance(event, dict) else event}")
        record = self._record(context) or _submission.SubmissionRecord(
            client_request_id=str(event.get("client_request_id")), model=self.model,
            endpoint_family=endpoint_family, intent_at=0.0,
            clear_number=self._clear_number(context))
        return self._recovered(context, hook, record, event.get("generation_id"))

    def _earlier_try(self, context: Context, hook: KlingHook, family: str) -> Generation | None:
        """Airflow < 3.3: find a generation an earlier try of this task paid for, if finished."""
        from kling_provider._task import submission as _submission  # execute time only (parse cost)

        prefix = self._prefix(context)
        try_number = int(_ti_value(context, "try_number", 1))
        started = getattr(context.get("dag_run"), "start_date", None)
        since = started.timestamp() if started is not None else hook.clock.now() - 86400
        row = hook.find_generation(
            model=self.model, since=since,
            match=lambda r: r.status == "succeeded"
            and _submission.earlier_try(prefix, r.client_request_id, try_number))
        if row is None:
            self.log.warning("No finished generation of an earlier try of this task in the usage "
                             "logs (Airflow < 3.3 keeps no record of one still running).")
            return None
        self.log.info("Earlier try's generation %s (client request id %s) found in the usage "
                      "logs; reattaching.", row.generation_id, row.client_request_id)
        context["ti"].xcom_push(key=GENERATION_ID_XCOM_KEY, value=row.generation_id)
        return hook.get_generation(row.generation_id, endpoint_family=family)

    # -- reattaching -------------------------------------------------------------------------

    def _reattach(self, context: Context, hook: KlingHook,
                  record: SubmissionRecord) -> Generation | None:
        """The generation an earlier try submitted, if it can still be used."""
        from kling_provider.types import Stage  # execute time only (parse cost)

        generation_id = str(record.generation_id)
        try:
            generation = hook.get_generation(generation_id,
                                             endpoint_family=record.endpoint_family)
        except KlingGenerationNotFoundError as exc:
            age = hook.clock.now() - float(record.submitted_at or record.intent_at or 0)
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
        context["ti"].xcom_push(key=GENERATION_ID_XCOM_KEY, value=generation_id)
        return generation
