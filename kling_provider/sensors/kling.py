"""``KlingGenerationSensor``: wait for a generation submitted elsewhere (another task, another DAG).

Deferrable by default (the wait costs no worker slot); ``deferrable=False`` works in ``poke`` and
``reschedule`` modes. Returns the same dict as the generate operators, and fails with the API's
error name and message when the generation fails (or skips, with ``soft_fail=True``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from kling_provider import DEFAULT_CONN_ID
from kling_provider._checks import (
    DEFAULT_POLL_INTERVAL,
    PollScheduleKind,
    check_poll_schedule,
    wait_seconds,
)
from kling_provider._task.result import VIDEO_URL_XCOM_KEY, Completion
from kling_provider._wait.deferral import (
    RESUME_METHOD,
    WAIT_TRIGGER,
    deferral_timeout,
    wait_trigger_kwargs,
)
from kling_provider.exceptions import KlingValidationError
from kling_provider.hooks._task import TaskHook, closes_hook
from kling_provider.links.kling import KlingVideoLink

if TYPE_CHECKING:
    # Imported where used (the hook, the trigger, the schedule, the types): parsing a DAG file
    # that uses the sensor needs none of them (parse cost).
    from airflow.sdk import Context

    from kling_provider._wait.schedule import PollSchedule
    from kling_provider.types import Generation


class KlingGenerationSensor(TaskHook, BaseSensorOperator):
    """Wait until a Kling generation is ``completed``.

    :param generation_id: the id to wait for (templated), e.g.
        ``"{{ ti.xcom_pull('submit')['generation_id'] }}"``.
    :param kling_conn_id: the Kling connection.
    :param endpoint_family: the family the generation was created on (default: the connection's).
    :param deferrable: wait in the triggerer (default).
    :param poke_interval: the longest gap between two polls, in seconds (default 60).
    :param poll_schedule: ``adaptive`` (default: polls placed around when the model named in the
        generation id should finish, counted from the sensor's start) or ``fixed`` (every
        ``poke_interval``). Both the deferred and the ``poke``/``reschedule`` modes follow it.
    :param timeout: seconds before giving up (default 30 min).
    :param end_from_trigger: when deferred, a success ends the task in the triggerer with the
        same return value and ``video_url`` XCom (no worker start to resume it); failures still
        resume on a worker (``soft_fail``, retries, the API's error message). Default false:
        Airflow refuses to parse a DAG with such a task while any listener is registered
        (plugins, the OpenLineage provider).
    :param start_from_trigger: start in the triggerer instead of a worker (Airflow 3.3+'s
        ``start_from_trigger``; 3.1 and 3.2 ignore it and start a worker): with
        ``end_from_trigger``, a generation that completes needs no worker at all. Default false;
        deferrable only. ``generation_id`` is rendered in the triggerer, which on 3.3.2 refuses
        a bare ``xcom_pull(task_ids=...)``: add ``map_indexes=-1``.
    """

    template_fields: Sequence[str] = ("generation_id",)
    operator_extra_links = (KlingVideoLink(),)
    ui_color = "#e8dcff"

    def __init__(self, *, generation_id: str, kling_conn_id: str = DEFAULT_CONN_ID,
                 endpoint_family: str | None = None, deferrable: bool = True,
                 poke_interval: float | timedelta = DEFAULT_POLL_INTERVAL,
                 timeout: float | timedelta = 1800.0, poll_schedule: PollScheduleKind = "adaptive",
                 end_from_trigger: bool = False, start_from_trigger: bool = False,
                 **kwargs: Any) -> None:
        task_id = kwargs.get("task_id")  # checked here: Airflow's own check accepts inf and nan
        super().__init__(poke_interval=wait_seconds("poke_interval", poke_interval, task_id=task_id),
                         timeout=wait_seconds("timeout", timeout, task_id=task_id), **kwargs)
        self.generation_id = generation_id
        self.kling_conn_id = kling_conn_id
        self.endpoint_family = endpoint_family
        self.deferrable = deferrable
        self.poll_schedule = check_poll_schedule(poll_schedule, task_id=task_id)
        self.end_from_trigger = end_from_trigger
        self._schedule: PollSchedule | None = None
        if start_from_trigger and deferrable:
            self._start_in_triggerer()

    def _start_in_triggerer(self) -> None:
        """Airflow creates the trigger from these kwargs when the task is scheduled: no worker.

        No absolute deadline can be computed at parse time, so the trigger counts ``timeout``
        from its own start; Airflow's trigger timeout (set when the task is scheduled) still
        bounds the whole wait.
        """
        # Airflow's task-time API: execute time only (parse cost)
        from airflow.triggers.base import StartTriggerArgs

        self.start_from_trigger = True
        self.start_trigger_args = StartTriggerArgs(
            trigger_cls=WAIT_TRIGGER, next_method=RESUME_METHOD,
            trigger_kwargs=self._trigger_kwargs(  # generation_id: rendered in the triggerer
                self.generation_id, timeout=self.timeout, endpoint_family=self.endpoint_family),
            timeout=deferral_timeout(self.timeout))

    def _trigger_kwargs(self, generation_id: str, *, endpoint_family: str | None,
                        **when: Any) -> dict[str, Any]:
        """The wait trigger's kwargs; ``when``: its ``deadline`` and ``submitted_at``, or only
        its ``timeout`` when it starts in the triggerer."""
        return wait_trigger_kwargs(
            kling_conn_id=self.kling_conn_id, generation_id=generation_id,
            poll_interval=self.poke_interval, endpoint_family=endpoint_family,
            poll_schedule=self.poll_schedule,
            completion=self._completion() if self.end_from_trigger else None, **when)

    def _check_id(self) -> str:
        if not isinstance(self.generation_id, str) or not self.generation_id.strip():
            raise KlingValidationError(
                f"Task {self.task_id!r}: invalid parameter 'generation_id'={self.generation_id!r}; "
                "a generation id is required.")
        return self.generation_id.strip()

    @closes_hook
    def execute(self, context: Context) -> Any:
        self.poke_interval = wait_seconds("poke_interval", self.poke_interval, task_id=self.task_id)
        self.timeout = wait_seconds("timeout", self.timeout, task_id=self.task_id)
        if not self.deferrable:
            return super().execute(context)
        generation_id = self._check_id()
        hook = self.hook
        # One poll first: a generation that is already finished needs no triggerer round trip.
        done = self.poke(context)
        if isinstance(done, PokeReturnValue) and done.is_done:
            return done.xcom_value
        # The extra link is evaluated at every deferral: an empty URL until the video exists
        # keeps its lookup from logging a missing-XCom error each time.
        context["ti"].xcom_push(key=VIDEO_URL_XCOM_KEY, value="")
        from kling_provider.triggers.kling import defer_wait  # execute time only (parse cost)

        now = hook.clock.now()
        defer_wait(self, self._trigger_kwargs(
            generation_id, endpoint_family=self.endpoint_family or hook.settings.endpoint_family,
            deadline=now + self.timeout, submitted_at=now), timeout=self.timeout)

    def _completion(self) -> Completion:
        """Finishing this task: someone else's generation (no spend line, no metrics)."""
        return Completion(model=None, endpoint_family=self.endpoint_family)

    def poke(self, context: Context) -> PokeReturnValue:
        generation = self.hook.get_generation(self._check_id(),
                                              endpoint_family=self.endpoint_family)
        from kling_provider.types import Stage  # execute time only (parse cost)

        stage = generation.stage
        if stage is Stage.FAILED:
            # Airflow's compat layer and the protocol: execute time only (parse cost)
            from airflow.providers.common.compat.sdk import AirflowSkipException

            from kling_provider._api.protocol import generation_failed  # (same reason)

            error = generation_failed(generation)
            if self.soft_fail:
                raise AirflowSkipException(str(error)) from error
            raise error
        if stage is Stage.DONE:
            return PokeReturnValue(is_done=True, xcom_value=self._complete(context, generation))
        self.log.info("Generation %s is %s", generation.generation_id, generation.status)
        return PokeReturnValue(is_done=False)

    def _get_next_poke_interval(self, started_at: Any, run_duration: Callable[[], float],
                                poke_count: int) -> float:
        """Poke and reschedule modes: the same schedule as the trigger, from the sensor's start.

        (Airflow's sensor loop asks this method for each gap; ``exponential_backoff`` would be
        its own, model-blind alternative.)
        """
        if self.poll_schedule == "fixed" or self.exponential_backoff:
            return float(super()._get_next_poke_interval(started_at, run_duration, poke_count))
        hook = self.hook
        now = hook.clock.now()
        if self._schedule is None:  # asks for the model's timings once per process
            self._schedule = hook.wait_schedule(
                self._check_id(), poll_schedule="adaptive", started_at=now - run_duration(),
                poll_interval=float(self.poke_interval))
        return self._schedule.delay_after_poll(now)

    @closes_hook
    def execute_complete(self, context: Context, event: Any = None) -> dict[str, Any]:
        """Validate the trigger event; failures raise (``soft_fail`` turns them into skips)."""
        # execute time only (parse cost)
        from kling_provider._wait.events import generation_from_event

        generation = generation_from_event(event, expected_generation_id=self._check_id())
        return self._complete(context, generation)

    def _complete(self, context: Context, generation: Generation) -> dict[str, Any]:
        from kling_provider._task.completion import finish  # execute time only (parse cost)

        ti = context["ti"]
        return dict(finish(generation, self._completion(), now=self.hook.clock.now(),
                           push=lambda key, value: ti.xcom_push(key=key, value=value),
                           log=self.log))
