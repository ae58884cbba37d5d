"""``KlingReviewOperator``: a reviewer picks one of several generations, or none with a note.

Built on Airflow's human-in-the-loop operator (``airflow.providers.standard.operators.hitl``,
Airflow 3.1+): the task writes its request and then waits without a worker slot (deferred to
the triggerer before Airflow 3.3, parked in ``awaiting_input`` from 3.3), and shows up in the
UI's required actions. The rules (candidates, options, body, what an answer means) are the pure
:mod:`kling_provider._task.review`; this module is the Airflow edge: it offers them, records the
decision (the ``kling_review`` XCom, and ``review`` in the returned result so the chosen video's
download puts it on its Asset event) and skips what the decision leaves out.

Importing it loads Airflow's standard provider (its HITL base class): only DAG files that build a
review pay that at parse time. ``kling_provider.operators.kling`` re-exports the class lazily.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import Param
from airflow.sdk.definitions.param import ParamsDict

from kling_provider._task.result import RESULT_XCOM_KEY
from kling_provider._task.review import (
    NOTE_PARAM,
    REVIEW_XCOM_KEY,
    Candidate,
    OnTimeout,
    candidates,
    check_on_timeout,
    option_labels,
    outcome,
    record,
    review_body,
    review_page_url,
    timeout_default,
)
from kling_provider._task.templates import is_dynamic
from kling_provider.exceptions import KlingValidationError

#: The oldest Airflow with the human-in-the-loop operators this one is built on.
MINIMUM_AIRFLOW = "3.1"

try:
    from airflow.providers.common.compat.sdk import SkipMixin
    from airflow.providers.standard.operators.hitl import HITLOperator
except Exception as missing:  # ImportError, or the provider's "needs Airflow 3.1+" exception
    from importlib.metadata import version

    raise ImportError(
        f"KlingReviewOperator needs Airflow {MINIMUM_AIRFLOW} or newer (its human-in-the-loop "
        f"operators, in apache-airflow-providers-standard); installed: Airflow "
        f"{version('apache-airflow')}. Upgrade Airflow, or review without this operator."
    ) from missing

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["MINIMUM_AIRFLOW", "KlingReviewOperator"]

#: HITLOperator arguments this operator sets itself from the candidates.
_FIXED = ("options", "defaults", "multiple")


def _task_ids(value: Any, *, task_id: str) -> tuple[str, ...]:
    ids = (value,) if isinstance(value, str) else value
    if not isinstance(ids, (list, tuple)) or not all(isinstance(i, str) and i for i in ids):
        raise KlingValidationError(
            f"Task {task_id!r}: invalid parameter 'none_task_ids'={value!r}: expected a task id "
            "or a list of task ids (downstream tasks that run only when no video is picked).")
    return tuple(ids)


class KlingReviewOperator(HITLOperator, SkipMixin):
    """Let a reviewer watch candidate videos and pick one (or none, with a note).

    :param generations: one generation (the dict a generate operator or the sensor returns) or
        several, usually ``generate.output`` of a mapped generate task; templated.
    :param subject: the request's headline in the required-actions view.
    :param body: Markdown shown above the candidates' table and the link to their players.
    :param response_timeout: how long to wait for a reviewer (``None``: no limit).
    :param on_timeout: when nobody answers in time: ``"skip"`` (no video, downstream skipped) or
        ``"first"`` (the first candidate is picked).
    :param none_task_ids: direct downstream tasks that run only when no video is picked (for
        example a ``TriggerDagRunOperator`` re-running with the note as the prompt); every other
        direct downstream task runs only when one is.

    Returns the chosen generation's result with ``review`` (chosen id, choice, note, reviewer,
    time, candidates) added; pushes the same decision, with the candidates shown, as the
    ``kling_review`` XCom. Picking none returns ``None``.
    """

    template_fields: Sequence[str] = ("subject", "body", "generations")
    inherits_from_skipmixin = True
    ui_color = "#fdf2d0"

    def __init__(self, *, generations: Any, subject: str = "Pick the Kling video to publish",
                 body: str | None = None, response_timeout: timedelta | None = None,
                 on_timeout: OnTimeout = "skip", none_task_ids: str | Sequence[str] = (),
                 **kwargs: Any) -> None:
        task_id = str(kwargs.get("task_id"))
        for name in _FIXED:
            if name in kwargs:
                raise KlingValidationError(
                    f"Task {task_id!r}: parameter {name!r} is not accepted: the options are "
                    "the candidates (one pick, or none with a note), set from 'generations'.")
        on_timeout = check_on_timeout(on_timeout, task_id=task_id)
        if response_timeout is not None and (not isinstance(response_timeout, timedelta)
                                             or response_timeout <= timedelta(0)):
            raise KlingValidationError(
                f"Task {task_id!r}: invalid parameter 'response_timeout'={response_timeout!r}: "
                "expected a positive datetime.timedelta, or None to wait without a limit.")
        if not is_dynamic(generations):  # literal candidates are checked now, the rest at run
            candidates(generations, task_id=task_id)
        # The real options are known when the candidates are: execute() sets them.
        super().__init__(subject=subject, body=body, options=["Video 1", "None of these"],
                         defaults=["Video 1" if on_timeout == "first" else "None of these"],
                         multiple=False, response_timeout=response_timeout, **kwargs)
        # The reviewer's form is the note alone. Airflow passes the DAG's params in ``params``
        # (3.3 filters them out of the form, 3.1 would ask for them too); templates still read
        # them, since a task's context merges the DAG's params with its own.
        # Optional (null allowed): the UI keeps every option disabled while a required field is
        # empty, and a pick needs no note.
        self.params = ParamsDict({NOTE_PARAM: Param(
            None, type=["null", "string"], title="Note",
            description="What to change (optional, kept either way)")})
        self.generations = generations
        self.on_timeout = on_timeout
        self.none_task_ids = _task_ids(none_task_ids, task_id=self.task_id)

    def _offer(self) -> list[Candidate]:
        """The rendered candidates, and the options and defaults made of them."""
        found = candidates(self.generations, task_id=self.task_id)
        self.options = option_labels(found)
        self.defaults = timeout_default(self.on_timeout, found)
        return found

    def execute(self, context: Context) -> Any:
        found = self._offer()
        ti = context["ti"]
        unknown = set(self.none_task_ids) - set(self.downstream_task_ids)
        if unknown:
            raise KlingValidationError(
                f"Task {self.task_id!r}: invalid parameter 'none_task_ids': {sorted(unknown)} "
                f"are not direct downstream tasks of it ({sorted(self.downstream_task_ids)}).")
        self.body = review_body(
            found, intro=self.body,
            page_url=review_page_url(ti.dag_id, ti.run_id, ti.task_id,
                                     -1 if ti.map_index is None else ti.map_index))
        ti.xcom_push(key=REVIEW_XCOM_KEY, value=record(found, None))
        return super().execute(context)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        found = self._offer()
        answer = super().execute_complete(context, event)
        chosen, review = outcome(found, answer["chosen_options"], answer["params_input"],
                                 responded_by=answer["responded_by_user"],
                                 responded_at=answer["responded_at"],
                                 timed_out=bool(event.get("timedout")))
        ti = context["ti"]
        ti.xcom_push(key=REVIEW_XCOM_KEY, value=record(found, review))
        who = review.reviewer or f"nobody before the timeout ({self.on_timeout!r} taken)"
        self.log.info("Review by %s: %s%s", who, review.choice,
                      f" ({review.chosen})" if review.chosen else "",)
        if review.note:
            self.log.info("Note: %s", review.note)
        skipped = [t for t in context["task"].get_direct_relatives(upstream=False)
                   if not t.is_teardown
                   and (t.task_id in self.none_task_ids) == (chosen is not None)]
        result = None if chosen is None else {**chosen.result, "review": review.as_dict()}
        if skipped:
            # Airflow ends the task on skip() (it raises), before it would push the return value
            if result is not None and self.do_xcom_push:
                ti.xcom_push(key=RESULT_XCOM_KEY, value=result)
            self.skip(ti=ti, tasks=skipped)
        return result
