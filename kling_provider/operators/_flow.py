"""What the operators do on a worker: submit (once), wait or defer, finish, download, report.

Mixins of the operator classes: :class:`GenerationFlow` (the generate operators' ``execute``,
``execute_complete``, ``execute_recovered``) and :class:`DownloadFlow` (the download
operator's ``execute``). Parsing a DAG file imports this module with the classes, so the hook,
the trigger, metrics, spend and lineage are imported where used (parse cost). Each entry point
works with one hook (:class:`~kling_provider.hooks._task.TaskHook`), closed at its end.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from kling_provider._checks import check_destination, check_max_bytes
from kling_provider._task.result import (
    RESULT_XCOM_KEY,
    VIDEO_URL_XCOM_KEY,
    Completion,
    asset_extra,
    download_result,
    generation_result,
)
from kling_provider._wait.deferral import video_seconds, wait_trigger_kwargs
from kling_provider.exceptions import KlingError, KlingValidationError
from kling_provider.hooks._task import TaskHook, closes_hook
from kling_provider.operators._submission import DurableSubmission

if TYPE_CHECKING:
    from airflow.sdk import Asset, BaseOperator, Context

    from kling_provider._task.result import DownloadResult
    from kling_provider._wait.schedule import PollScheduleKind
    from kling_provider.hooks.kling import KlingHook
    from kling_provider.types import Generation

    _Operator = BaseOperator
else:
    _Operator = object

__all__ = ["ESTIMATE_KEY", "DownloadFlow", "GenerationFlow"]

#: ``task_state_store`` key of the price estimated before this task's POST (USD).
ESTIMATE_KEY = "kling_estimated_usd"


def store_video(context: Context, hook: KlingHook, info: Mapping[str, Any], destination: Any, *,
                asset: Asset | None, overwrite: bool = False,
                max_bytes: int | None = None) -> DownloadResult:
    """Download the video ``info`` (a generation's result) names into ``destination`` and put the
    copy on ``asset``'s event: the one path of the download operator and of ``download_to``, so
    the videos page lists a video stored by either as stored (it serves only an event's file)."""
    stored = hook.download_video(str(info["video_url"]), destination,
                                 expected_size=info.get("file_size"),
                                 file_name=info.get("file_name"),
                                 generation_id=info.get("generation_id"),
                                 overwrite=overwrite, max_bytes=max_bytes)
    result = download_result(info, uri=stored.uri, size=stored.size, downloaded=stored.downloaded)
    if asset is not None:
        context["outlet_events"][asset].extra = asset_extra(result)
    return result


def generate_task_ids(context: Context) -> list[str]:
    """The DAG's unmapped generate tasks: their results make the spend line's running total.

    A mapped task is a ``MappedOperator`` here and is left out: its every map index would be
    read again on each completion (docs/gallery.rst)."""
    return [task.task_id for task in getattr(context.get("dag"), "tasks", ())
            if isinstance(task, GenerationFlow)]


class GenerationFlow(DurableSubmission, TaskHook):
    """``execute`` and its continuations for the generate operators (a mixin, see above)."""

    if TYPE_CHECKING:
        prompt: str | None
        image_url: str | None
        tail_image_url: str | None
        image_list: list[str] | None
        endpoint_family: str | None
        wait_for_completion: bool
        poll_schedule: PollScheduleKind
        end_from_trigger: bool
        download_to: str | None
        max_bytes: int | None
        asset: Asset | None

        def _check_before_paying(self) -> None: ...

    @closes_hook
    def execute(self, context: Context) -> dict[str, Any]:
        self._check_before_paying()
        hook = self.hook
        self._prepared = None  # validated anew from this try's rendered fields
        prepared = self.prepared_request(hook, self.endpoint_family)
        generation = self.submit_or_resume(context, hook, prepared.family)
        state = context.get("task_state_store")
        if state is not None and self.estimated_usd is not None:  # for ``execute_complete``
            state.set(ESTIMATE_KEY, self.estimated_usd)
        return self.resume_generation(context, hook, generation, prepared.family)

    @closes_hook
    def execute_recovered(self, context: Context, event: Any = None,
                          endpoint_family: str | None = None) -> dict[str, Any]:
        """Resume after the recovery trigger: record what it found, then go on as usual."""
        generation = self.recovered_generation(context, self.hook, event, endpoint_family)
        return self.resume_generation(context, self.hook, generation, endpoint_family)

    def resume_generation(self, context: Context, hook: KlingHook, generation: Generation,
                          family: str | None) -> dict[str, Any]:
        """Go on from a generation this task paid for: return it, wait for it, or fail with it."""
        from kling_provider import metrics  # execute time only (parse cost)
        from kling_provider.types import Generation, Stage

        generation_id = generation.generation_id
        record = self._record(context)
        submitted_at = (record.submitted_at if record and record.generation_id == generation_id
                        else None) or hook.clock.now()
        stage = generation.stage
        if stage is Stage.DONE:
            return self._complete(context, generation, family, submitted_at=submitted_at)
        if stage is Stage.FAILED:
            from kling_provider._api.protocol import generation_failed  # execute time only (parse cost)

            raise generation_failed(generation)
        if not self.wait_for_completion:
            submitted = Generation(generation_id=generation_id, status=generation.status)
            self._mark_delivered(context, generation_id)
            return dict(generation_result(submitted, model=self.model, family=family,
                                          prompt=self.sent(hook, family, "prompt")))
        schedule: dict[str, Any] = {
            "poll_schedule": self.poll_schedule, "submitted_at": submitted_at,
            "model": self.model,
            "duration": video_seconds(self.sent(hook, family, "duration"))}
        if self.deferrable:
            from kling_provider.triggers.kling import defer_wait  # execute time only (parse cost)

            defer_wait(self, wait_trigger_kwargs(
                kling_conn_id=self.kling_conn_id, generation_id=generation_id,
                poll_interval=self.poll_interval, deadline=hook.clock.now() + self.timeout,
                endpoint_family=family, **schedule,
                completion=self._end_in_triggerer(context, family, submitted_at,
                                                  self.sent(hook, family, "prompt"))),
                timeout=self.timeout,
                resume_kwargs={"endpoint_family": family, "submitted_at": submitted_at,
                               "estimated_usd": self.estimated_usd})
        with metrics.counting_failures(self.model):
            generation = hook.wait_for_generation(generation_id, poll_interval=self.poll_interval,
                                                  timeout=self.timeout, endpoint_family=family,
                                                  **schedule)
        return self._complete(context, generation, family, submitted_at=submitted_at)

    def _end_in_triggerer(self, context: Context, family: str | None,
                          submitted_at: float, prompt: Any) -> Completion | None:
        """How the trigger ends the task on success, if it does: only when asked and nothing
        after the wait needs a worker (``download_to`` does). The prompt travels only then."""
        if not self.end_from_trigger or self.download_to:
            return None
        return self._completion(family, submitted_at, prompt, generate_task_ids(context))

    def _completion(self, family: str | None, submitted_at: float | None, prompt: Any,
                    run_tasks: list[str]) -> Completion:
        return Completion(model=self.model, endpoint_family=family, prompt=prompt, paying=True,
                          submitted_at=submitted_at, estimated_usd=self.estimated_usd,
                          run_tasks=tuple(run_tasks))

    @closes_hook
    def execute_complete(self, context: Context, event: Any = None,
                         endpoint_family: str | None = None, submitted_at: float | None = None,
                         estimated_usd: float | None = None) -> dict[str, Any]:
        """Resume after the trigger: validate its event, then finish like the worker path."""
        stored = self._record(context)
        expected = stored.generation_id if stored else None
        from kling_provider import metrics  # execute time only (parse cost)
        from kling_provider._wait.events import generation_from_event

        with metrics.counting_failures(self.model):
            generation = generation_from_event(event, expected_generation_id=expected)
        # ``airflow dags test`` resumes with the event only, dropping the deferral's kwargs: the
        # state store (Airflow 3.3+) has them too.
        submitted_at = submitted_at or (stored.submitted_at if stored else None)
        if estimated_usd is None:
            state = context.get("task_state_store")
            stored_estimate = state.get(ESTIMATE_KEY) if state is not None else None
            estimated_usd = float(stored_estimate) if isinstance(stored_estimate, (int, float)) \
                else None
        self.estimated_usd = estimated_usd
        return self._complete(context, generation, endpoint_family, submitted_at=submitted_at)

    def _complete(self, context: Context, generation: Generation, family: str | None, *,
                  submitted_at: float | None = None) -> dict[str, Any]:
        from kling_provider._task.completion import finish  # execute time only (parse cost)

        hook = self.hook
        ti = context["ti"]
        result = finish(generation, self._completion(family, submitted_at,
                                                     self.sent(hook, family, "prompt"), []),
                        now=hook.clock.now(),
                        push=lambda key, value: ti.xcom_push(key=key, value=value),
                        log=self.log, others=self._run_results(context))
        self._lineage_outputs = [generation.video_url]
        if self.download_to:
            stored = store_video(context, hook, result, self.download_to, asset=self.asset,
                                 max_bytes=self.max_bytes)
            result["uri"], result["size"] = stored["uri"], stored["size"]
            result["downloaded"] = stored["downloaded"]
            self._lineage_outputs = [stored["uri"]]
        self._mark_delivered(context, generation.generation_id)
        return dict(result)

    def _run_results(self, context: Context) -> list[Any] | None:
        """The return values of this DAG run's unmapped generate tasks so far, for the running
        total; ``None`` when they cannot be read (the log line then has no total)."""
        task_ids = generate_task_ids(context)
        if not task_ids:
            return None
        try:
            pulled = context["ti"].xcom_pull(task_ids=task_ids, key=RESULT_XCOM_KEY)
        except Exception as why:  # never fail a paid, finished generation over a log line
            self.log.debug("No DAG run total for the spend line: %s", why)
            return None
        return pulled if isinstance(pulled, list) else [pulled]

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage (when its provider is installed): image URLs in, the video out."""
        from kling_provider._storage.lineage import operator_lineage  # execute time only (parse cost)

        prepared = getattr(self, "_prepared", None)
        sent = prepared.body if prepared is not None else {}
        images = [sent.get("image_url"), sent.get("tail_image_url"),
                  *(sent.get("image_list") or [])]
        return operator_lineage([i for i in images if isinstance(i, str)],
                                getattr(self, "_lineage_outputs", []))


class DownloadFlow(TaskHook, _Operator):
    """``execute`` of :class:`~kling_provider.operators.kling.KlingDownloadVideoOperator`."""

    if TYPE_CHECKING:
        destination: Any
        generation: Any
        generation_id: str | None
        video_url: str | None
        kling_conn_id: str
        endpoint_family: str | None
        overwrite: bool
        max_bytes: int | None
        asset: Asset | None

    @closes_hook
    def execute(self, context: Context) -> dict[str, Any]:
        check_max_bytes(self.max_bytes, task_id=self.task_id)
        check_destination("destination", self.destination, task_id=self.task_id)
        hook = self.hook
        info = self._source(hook)
        if not info.get("video_url"):
            raise KlingError(f"Task {self.task_id!r}: no video URL to download in {info!r}.")
        result = store_video(context, hook, info, self.destination, asset=self.asset,
                             overwrite=self.overwrite, max_bytes=self.max_bytes)
        context["ti"].xcom_push(key=VIDEO_URL_XCOM_KEY, value=info["video_url"])
        self._lineage = ([str(info["video_url"])], [result["uri"]])
        return dict(result)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage (when its provider is installed): the video URL in, the stored copy out."""
        from kling_provider._storage.lineage import operator_lineage  # execute time only (parse cost)

        inputs, outputs = getattr(self, "_lineage", ([], []))
        return operator_lineage(inputs, outputs)

    def _source(self, hook: KlingHook) -> dict[str, Any]:
        if self.generation is not None:
            if not isinstance(self.generation, Mapping):
                raise KlingValidationError(
                    f"Invalid parameter 'generation'={self.generation!r}: expected the dict a "
                    "Kling generate operator or sensor returns.")
            return dict(self.generation)
        if self.generation_id is not None:
            from kling_provider.types import Stage  # execute time only (parse cost)

            generation = hook.get_generation(self.generation_id,
                                             endpoint_family=self.endpoint_family)
            # A completed answer still without its URL is refused below, naming that.
            if generation.stage not in (Stage.DONE, Stage.AWAITING_URL):
                raise KlingError(f"Generation {self.generation_id!r} is {generation.status!r}, "
                                 "not completed: nothing to download yet.")
            return dict(generation_result(generation, model=None, family=self.endpoint_family))
        return {"video_url": self.video_url}
