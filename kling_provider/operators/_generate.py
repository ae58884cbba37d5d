"""What a generate operator does on a worker: ``execute`` and its two continuations.

:class:`~kling_provider.operators.kling.KlingGenerateVideoOperator`'s entry points import this
module on first use (never while a DAG file is parsed) and hand it the task and its context;
the task's one hook (``task.hook``) is closed when the entry point ends. ``execute`` prepares
the request once (:func:`~._submission.prepared_request`), gets the one generation of the
task (:class:`~._submission.Submission`), then returns it, waits for it (in the worker, or
deferred to the triggerer) or fails with it; :func:`execute_complete` resumes after the wait
trigger, :func:`execute_recovered` after the usage-logs lookup. Finishing a task is
:func:`kling_provider._task.completion.finish`, shared with the sensor and the triggerer.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from kling_provider import metrics
from kling_provider._api.protocol import generation_failed
from kling_provider._storage.lineage import operator_lineage
from kling_provider._task import run_results
from kling_provider._task.completion import finish
from kling_provider._task.result import Completion, generation_result
from kling_provider._task.run_results import RunTasks
from kling_provider._wait.deferral import video_seconds, wait_trigger_kwargs
from kling_provider._wait.events import generation_from_event
from kling_provider.exceptions import KlingGenerationFailedError
from kling_provider.operators._arguments import ESTIMATE_KEY, check_generate_task
from kling_provider.operators._budget import release, reservation_token
from kling_provider.operators._download import store_video
from kling_provider.operators._record import TaskRecord
from kling_provider.operators._submission import Submission, prepared_request, sent
from kling_provider.triggers.kling import defer_wait
from kling_provider.types import Generation, Stage

if TYPE_CHECKING:
    from airflow.sdk import Context

    from kling_provider.hooks.kling import KlingHook
    from kling_provider.operators.kling import KlingGenerateVideoOperator

__all__ = ["execute", "execute_complete", "execute_recovered", "generate_task_ids", "lineage"]


def execute(task: KlingGenerateVideoOperator, context: Context) -> dict[str, Any]:
    check_generate_task(task)
    hook = task.hook
    task._prepared = None  # validated anew from this try's rendered fields
    prepared = prepared_request(task, hook, task.endpoint_family)
    generation = Submission(task, context, hook).submit_or_resume(prepared)
    state = context.get("task_state_store")
    if state is not None and task.estimated_usd is not None:  # for ``execute_complete``
        state.set(ESTIMATE_KEY, task.estimated_usd)
    return Run(task, context).resume(generation, prepared.family)


def execute_recovered(task: KlingGenerateVideoOperator, context: Context, event: Any,
                      endpoint_family: str | None) -> dict[str, Any]:
    """Resume after the recovery trigger: record what it found, then go on as usual."""
    generation = Submission(task, context, task.hook).after_lookup(event, endpoint_family)
    return Run(task, context).resume(generation, endpoint_family)


def execute_complete(task: KlingGenerateVideoOperator, context: Context, event: Any,
                     endpoint_family: str | None, submitted_at: float | None,
                     estimated_usd: float | None) -> dict[str, Any]:
    """Resume after the wait trigger: validate its event, then finish like the worker path."""
    stored = TaskRecord(context, task.task_id).read()
    expected = stored.generation_id if stored else None
    with metrics.counting_failures(task.model):
        try:
            generation = generation_from_event(event, expected_generation_id=expected)
        except KlingGenerationFailedError:
            release(task, context, task.hook)  # failed: billed nothing, in flight no more
            raise
    # ``airflow dags test`` resumes with the event only, dropping the deferral's kwargs: the
    # state store (Airflow 3.3+) has them too.
    submitted_at = submitted_at or (stored.submitted_at if stored else None)
    if estimated_usd is None:
        state = context.get("task_state_store")
        stored_estimate = state.get(ESTIMATE_KEY) if state is not None else None
        estimated_usd = float(stored_estimate) if isinstance(stored_estimate, (int, float)) \
            else None
    task.estimated_usd = estimated_usd
    return Run(task, context).complete(generation, endpoint_family, submitted_at=submitted_at)


def generate_task_ids(context: Context) -> RunTasks:
    """The DAG's generate tasks, unmapped and mapped: their results make the spend line's
    running total. A mapped task is a ``MappedOperator`` here, its class ``operator_class``."""
    unmapped: list[str] = []
    mapped: list[str] = []
    for task in getattr(context.get("dag"), "tasks", ()):
        if getattr(type(task), "_pays_for_generations", False) is True:
            unmapped.append(task.task_id)
            continue
        operator_class = getattr(task, "operator_class", None)
        if isinstance(operator_class, type) and \
                getattr(operator_class, "_pays_for_generations", False) is True:
            mapped.append(task.task_id)
    return RunTasks(tuple(unmapped), tuple(mapped))


def lineage(task: KlingGenerateVideoOperator) -> Any:
    """OpenLineage facets: the request's image URLs in, the video (or its stored copy) out."""
    prepared = task._prepared
    sent_body = prepared.body if prepared is not None else {}
    images = [sent_body.get("image_url"), sent_body.get("tail_image_url"),
              *(sent_body.get("image_list") or [])]
    return operator_lineage([i for i in images if isinstance(i, str)], task._lineage_outputs)


class Run:
    """After the submission: one try of ``task`` going on from its paid generation."""

    def __init__(self, task: KlingGenerateVideoOperator, context: Context) -> None:
        self.task, self.context = task, context
        self.record = TaskRecord(context, task.task_id)

    @property
    def hook(self) -> KlingHook:
        """The task's one hook (its entry point closes it)."""
        return self.task.hook

    def sent(self, family: str | None, name: str) -> Any:
        return sent(self.task, self.hook, family, name)

    def resume(self, generation: Generation, family: str | None) -> dict[str, Any]:
        """Go on from a generation this task paid for: return it, wait for it, or fail with it."""
        task, hook = self.task, self.hook
        generation_id = generation.generation_id
        stored = self.record.read()
        submitted_at = (stored.submitted_at if stored and stored.generation_id == generation_id
                        else None) or hook.clock.now()
        stage = generation.stage
        if stage is Stage.DONE:
            return self.complete(generation, family, submitted_at=submitted_at)
        if stage is Stage.FAILED:
            release(task, self.context, hook)  # billed nothing, in flight no more
            raise generation_failed(generation)
        if not task.wait_for_completion:
            submitted = Generation(generation_id=generation_id, status=generation.status)
            self.record.mark_delivered(generation_id)
            return dict(generation_result(submitted, model=task.model, family=family,
                                          prompt=self.sent(family, "prompt")))
        schedule: dict[str, Any] = {
            "poll_schedule": task.poll_schedule, "submitted_at": submitted_at,
            "model": task.model, "duration": video_seconds(self.sent(family, "duration"))}
        if task.deferrable:
            defer_wait(task, wait_trigger_kwargs(
                kling_conn_id=task.kling_conn_id, generation_id=generation_id,
                poll_interval=task.poll_interval, deadline=hook.clock.now() + task.timeout,
                endpoint_family=family, **schedule,
                completion=self._end_in_triggerer(family, submitted_at,
                                                  self.sent(family, "prompt"))),
                timeout=task.timeout,
                resume_kwargs={"endpoint_family": family, "submitted_at": submitted_at,
                               "estimated_usd": task.estimated_usd})
        with metrics.counting_failures(task.model):
            try:
                generation = hook.wait_for_generation(
                    generation_id, poll_interval=task.poll_interval, timeout=task.timeout,
                    endpoint_family=family, **schedule)
            except KlingGenerationFailedError:
                release(task, self.context, hook)  # billed nothing, in flight no more
                raise
        return self.complete(generation, family, submitted_at=submitted_at)

    def _end_in_triggerer(self, family: str | None, submitted_at: float,
                          prompt: Any) -> Completion | None:
        """How the trigger ends the task on success, if it does: only when asked and nothing
        after the wait needs a worker (``download_to`` does). The prompt travels only then."""
        if not self.task.end_from_trigger or self.task.download_to:
            return None
        return replace(self._completion(family, submitted_at, prompt,
                                        generate_task_ids(self.context)),
                       reservation=reservation_token(self.task, self.context, self.hook))

    def _completion(self, family: str | None, submitted_at: float | None, prompt: Any,
                    run_tasks: RunTasks) -> Completion:
        task = self.task
        return Completion(model=task.model, endpoint_family=family, prompt=prompt, paying=True,
                          submitted_at=submitted_at, estimated_usd=task.estimated_usd,
                          run_tasks=run_tasks.unmapped, mapped_run_tasks=run_tasks.mapped)

    def complete(self, generation: Generation, family: str | None, *,
                 submitted_at: float | None = None) -> dict[str, Any]:
        """Finish the task with its completed generation (and download it if asked)."""
        task, context, hook = self.task, self.context, self.hook
        ti = context["ti"]
        result = finish(generation, self._completion(family, submitted_at,
                                                     self.sent(family, "prompt"), RunTasks()),
                        now=hook.clock.now(),
                        push=lambda key, value: ti.xcom_push(key=key, value=value),
                        log=task.log,
                        others=run_results.on_worker(ti, generate_task_ids(context)))
        task._lineage_outputs = [generation.video_url]
        if task.download_to:
            stored = store_video(context, hook, result, task.download_to, asset=task.asset,
                                 max_bytes=task.max_bytes)
            result["uri"], result["size"] = stored["uri"], stored["size"]
            result["downloaded"] = stored["downloaded"]
            task._lineage_outputs = [stored["uri"]]
        self.record.mark_delivered(generation.generation_id)
        release(task, context, hook)  # billed now: the key's spend counts it
        return dict(result)
