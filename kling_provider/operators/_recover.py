"""Finding a generation this task may have paid for, in the usage logs, instead of paying again.

When a create answer is uncertain (lost, a 502 after the API created it), the generation is
looked up by its client request id: in the triggerer when deferrable
(:class:`~kling_provider.triggers.kling.KlingSubmissionRecoveryTrigger`, resumed by
``execute_recovered``), else in the worker. On Airflow < 3.3 (no ``task_state_store``) a retry
looks for a finished generation of an earlier try the same way. Used by :mod:`._submission`
and :mod:`._generate`, at execute time only.

A lookup that finds nothing never pays here: it returns ``None`` when the task allows a
resubmit (``on_uncertain_submission="resubmit"``) and the caller, :mod:`._submission`,
submits; otherwise it fails naming the client request id to check.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from kling_provider._task import submission as _submission
from kling_provider.exceptions import KlingError, KlingSubmissionUncertainError
from kling_provider.operators._arguments import RECOVERY_GRACE
from kling_provider.triggers.kling import KlingSubmissionRecoveryTrigger

if TYPE_CHECKING:
    from kling_provider._task.submission import SubmissionRecord
    from kling_provider.hooks.kling import KlingHook
    from kling_provider.operators._record import TaskRecord
    from kling_provider.operators.kling import KlingGenerateVideoOperator
    from kling_provider.types import Generation

__all__ = ["Recovery"]


class Recovery:
    """The usage-logs lookups of one try of ``task``."""

    def __init__(self, task: KlingGenerateVideoOperator, record: TaskRecord,
                 hook: KlingHook) -> None:
        self.task, self.record, self.hook = task, record, hook
        self.log = task.log

    def recover(self, stored: SubmissionRecord) -> Generation | None:
        """The generation of ``stored``'s client request id; may defer to the lookup trigger."""
        task, hook = self.task, self.hook
        cri = str(stored.client_request_id)
        deadline = _submission.lookup_deadline(stored.intent_at, task.timeout)
        self.log.info("Looking up the generation of client request id %s (model %s) in the usage "
                      "logs until %s.", cri, stored.model, _submission._iso(deadline))
        if task.deferrable:
            task.defer(
                trigger=KlingSubmissionRecoveryTrigger(
                    kling_conn_id=task.kling_conn_id, client_request_id=cri, model=stored.model,
                    since=stored.intent_at, deadline=deadline, poll_interval=task.poll_interval),
                method_name="execute_recovered",
                kwargs={"endpoint_family": stored.endpoint_family},
                timeout=timedelta(seconds=max(0.0, deadline - hook.clock.now())) + RECOVERY_GRACE,
            )
        row = hook.find_generation(cri, model=stored.model, since=stored.intent_at,
                                   deadline=deadline, poll_interval=task.poll_interval)
        return self.recovered(stored, row.generation_id if row else None)

    def recovered(self, stored: SubmissionRecord, generation_id: str | None) -> Generation | None:
        """Record what a lookup found; ``None``: nothing, and the task may submit anew."""
        if generation_id is None:
            message = (
                f"Task {self.task.task_id!r}: no generation with client request id "
                f"{stored.client_request_id!r} (model {stored.model!r}) appeared in the usage "
                "logs within the time a generation can take, so the create request most likely "
                "never reached the API.")
            if self.task.on_uncertain_submission == "resubmit":
                self.log.warning("%s Submitting anew (on_uncertain_submission='resubmit').",
                                 message)
                return None
            raise KlingSubmissionUncertainError(
                f"{message} It is not submitted again, which could pay twice: search the AI/ML "
                "API dashboard's usage logs for that client request id; if there is no "
                "generation, clear this task (it then submits anew), or set "
                "on_uncertain_submission='resubmit'.")
        self.log.info("Found generation %s of client request id %s in the usage logs.",
                      generation_id, stored.client_request_id)
        self.record.record_generation(stored, generation_id, self.hook.clock.now())
        return self.hook.get_generation(generation_id, endpoint_family=stored.endpoint_family)

    def stored_for(self, event: Any, endpoint_family: str | None) -> SubmissionRecord:
        """After the lookup trigger: the record it looked for (refusing a failed lookup)."""
        if not isinstance(event, dict) or event.get("status") not in ("found", "not_found"):
            raise KlingError(f"Task {self.task.task_id!r}: the usage-logs lookup failed: "
                             f"{(event or {}).get('message') if isinstance(event, dict) else event}")
        return self.record.read() or _submission.SubmissionRecord(
            client_request_id=str(event.get("client_request_id")), model=self.task.model,
            endpoint_family=endpoint_family, intent_at=0.0,
            clear_number=self.record.clear_number)

    def earlier_try(self, family: str) -> Generation | None:
        """Airflow < 3.3: find a generation an earlier try of this task paid for, if finished."""
        hook = self.hook
        prefix = self.record.prefix()
        try_number = self.record.try_number
        started = getattr(self.record.context.get("dag_run"), "start_date", None)
        since = started.timestamp() if started is not None else hook.clock.now() - 86400
        row = hook.find_generation(
            model=self.task.model, since=since,
            match=lambda r: r.status == "succeeded"
            and _submission.earlier_try(prefix, r.client_request_id, try_number))
        if row is None:
            self.log.warning("No finished generation of an earlier try of this task in the usage "
                             "logs (Airflow < 3.3 keeps no record of one still running).")
            return None
        self.log.info("Earlier try's generation %s (client request id %s) found in the usage "
                      "logs; reattaching.", row.generation_id, row.client_request_id)
        self.record.push_generation_id(row.generation_id)
        return hook.get_generation(row.generation_id, endpoint_family=family)
