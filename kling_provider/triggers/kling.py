"""``KlingGenerationTrigger``: waits for a generation in the triggerer instead of a worker slot.

Deferred by the generate operators and the sensor. Its serialised kwargs are only the connection
id, the generation id, the poll interval and schedule, the endpoint family, the model and video
length, *absolute* times (submission, deadline) and, for ``end_from_trigger``, what the task's
result takes from outside the generation (:class:`~kling_provider._task.result.Completion`), never
the key or headers: the poll schedule
is a function of the time since submission, so a triggerer restart or hand-over resumes the same
schedule with the same deadline. Polling goes through :meth:`KlingHook.await_for_generation`, the
same step generator the worker path uses, on the hook's shared async client (aiohttp): nothing
in ``run()`` blocks the loop.

Airflow imports a trigger's module inside the triggerer's event loop, which every trigger of the
deployment shares. So this module imports nothing heavy: the hook (with aiohttp, about 0.6 s of
imports on a 2-core machine) is imported in a worker thread the first time a trigger runs, and
the loop keeps serving the other triggers meanwhile; triggers arriving together start spread out
(both in :mod:`kling_provider._wait.starting`).

What its events say is written and read in :mod:`kling_provider._wait.events`
(:func:`generation_from_event`, the one validator, is importable from here too). A task that
ends here is finished by :func:`kling_provider._task.completion.finish`, like one on a worker (its
spend line reads the run's other results, mapped tasks' included, through the triggerer's XCom
access: :func:`kling_provider._task.run_results.in_triggerer`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.triggers.base import BaseTrigger, TaskSuccessEvent, TriggerEvent

from kling_provider._task import reservations
from kling_provider._task.result import RESULT_XCOM_KEY, Completion
from kling_provider._task.run_results import RunTasks, in_triggerer
from kling_provider._wait import starting as _starting
from kling_provider._wait.deferral import RESUME_METHOD, deferral_timeout
from kling_provider._wait.events import error_event
from kling_provider._wait.events import generation_from_event as generation_from_event  # public here
from kling_provider._wait.events import killed_message as killed_message
from kling_provider._wait.starting import import_off_loop as import_off_loop  # tests patch it here
from kling_provider.exceptions import (
    KlingError,
)
from kling_provider.types import Generation

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator

    from kling_provider.hooks.kling import KlingHook

HOOK_MODULE = "kling_provider.hooks.kling"
#: What finishes a task (result, XCom, spend line, metrics), for ``end_from_trigger``.
RESULT_MODULE = "kling_provider._task.completion"


class KlingGenerationTrigger(BaseTrigger):
    """Fire exactly one event when a generation completes, fails, or passes ``deadline``.

    :param kling_conn_id: the Kling connection.
    :param generation_id: the id the create call returned.
    :param poll_interval: the longest gap between two polls, in seconds.
    :param deadline: absolute epoch seconds after which a ``timeout`` event is fired.
    :param endpoint_family: the family the generation was created on (``None``: the connection's).
    :param poll_schedule: ``adaptive`` or ``fixed`` (see :mod:`kling_provider._wait.schedule`).
    :param submitted_at: absolute epoch seconds of the submission (``None``: the wait's start).
    :param model: the model (``None``: the one the generation id names), which places the
        adaptive polls.
    :param duration: the requested video length, which places them too.
    :param end_from_trigger: on success, end the task here (``TaskSuccessEvent`` carrying the
        XComs the task would return) instead of resuming it on a worker; failures, timeouts and
        errors still resume it, so retries, ``soft_fail`` and the error messages stay the task's.
    :param result_fields: what the task's return value takes from outside the generation
        (:meth:`kling_provider._task.result.Completion.fields`: the model, the prompt, the estimate,
        whether the task paid, the run's generate tasks, the name of its budget reservation to
        release once the video is billed), for ``end_from_trigger``.
    :param timeout: seconds from the trigger's start, when no absolute ``deadline`` could be
        given (a sensor started in the triggerer has no worker to compute one).
    """

    def __init__(self, *, kling_conn_id: str, generation_id: str, poll_interval: float,
                 deadline: float | None = None, endpoint_family: str | None = None,
                 poll_schedule: str = "adaptive", submitted_at: float | None = None,
                 model: str | None = None, duration: int | None = None,
                 end_from_trigger: bool = False, result_fields: dict[str, Any] | None = None,
                 timeout: float | None = None) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.kling_conn_id = kling_conn_id
        self.generation_id = generation_id
        self.poll_interval = float(poll_interval)
        if deadline is None and timeout is None:
            raise KlingError("KlingGenerationTrigger needs a 'deadline' or a 'timeout'.")
        self.timeout = timeout
        self.deadline = float(deadline) if deadline is not None else time.time() + float(timeout or 0)
        self.end_from_trigger = end_from_trigger
        self.result_fields = result_fields
        self.endpoint_family = endpoint_family
        self.poll_schedule = poll_schedule
        self.submitted_at = None if submitted_at is None else float(submitted_at)
        self.model = model
        self.duration = duration

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}", {
            "kling_conn_id": self.kling_conn_id,
            "generation_id": self.generation_id,
            "poll_interval": self.poll_interval,
            "deadline": self.deadline,
            "endpoint_family": self.endpoint_family,
            "poll_schedule": self.poll_schedule,
            "submitted_at": self.submitted_at,
            "model": self.model,
            "duration": self.duration,
            "end_from_trigger": self.end_from_trigger,
            "result_fields": self.result_fields,
        })

    def _hook(self) -> KlingHook:
        from kling_provider.hooks.kling import KlingHook  # loaded off the loop by run()

        return KlingHook(kling_conn_id=self.kling_conn_id)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        event: dict[str, Any]
        base: dict[str, Any] = {"generation_id": self.generation_id, "endpoint_family": self.endpoint_family}
        await _starting.PACER.start()
        await import_off_loop(HOOK_MODULE)
        hook = self._hook()
        try:
            generation = await hook.await_for_generation(
                self.generation_id, poll_interval=self.poll_interval, deadline=self.deadline,
                endpoint_family=self.endpoint_family,
                poll_schedule=self.poll_schedule,  # type: ignore[arg-type]  # checked there
                submitted_at=self.submitted_at, model=self.model, duration=self.duration)
        except KlingError as exc:
            event = error_event(base, exc)
        else:
            if self.end_from_trigger:
                await import_off_loop(RESULT_MODULE)  # metrics and spend, off the loop
                completion = self._completion()
                run_tasks = RunTasks(completion.run_tasks, completion.mapped_run_tasks)
                others = await asyncio.to_thread(  # each read is a round trip to the supervisor
                    in_triggerer, getattr(self, "task_instance", None), run_tasks
                ) if run_tasks else None
                ended = self._task_success(generation, others)
                if completion.reservation:  # billed now: the key's spend counts it
                    await asyncio.to_thread(reservations.release_quietly, reservations.STORE,
                                            hook.settings.api_key, completion.reservation)
                yield ended
                return
            event = {**base, "status": "success",
                     "generation": generation.to_dict(include_raw=False)}
        yield TriggerEvent(event)  # type: ignore[no-untyped-call]

    def _task_success(self, generation: Generation,
                      others: list[Any] | None = None) -> TriggerEvent:
        """End the task here with the XComs its ``execute_complete`` would have pushed, logged
        and counted the same way (``others``: the DAG run's generate results, for the total)."""
        from kling_provider._task.completion import finish  # loaded off the loop by run()

        pushed: dict[str, Any] = {}
        xcoms: dict[str, Any] = {RESULT_XCOM_KEY: finish(
            generation, self._completion(), now=time.time(), push=pushed.__setitem__,
            log=self.log, others=others, where=" (task ended in the triggerer)")}
        return TaskSuccessEvent(xcoms={**xcoms, **pushed})

    def _completion(self) -> Completion:
        return Completion.from_fields(self.result_fields, endpoint_family=self.endpoint_family,
                                      submitted_at=self.submitted_at)

    async def on_kill(self) -> None:
        """A user killed the waiting task (Airflow 3.3+: mark failed/success, clear).

        The API has no cancel, so the generation goes on and is billed; the one useful thing is
        to say so, with its id and where its video will be. Only a log line: no request, no
        connection lookup, nothing that could block the triggerer's loop or hit its time bound.
        """
        self.log.warning("%s", killed_message(
            self.generation_id, kling_conn_id=self.kling_conn_id,
            endpoint_family=self.endpoint_family, task=getattr(self, "task_instance", None)))


def defer_wait(task: BaseOperator, trigger_kwargs: dict[str, Any], *, timeout: float,
               resume_kwargs: dict[str, Any] | None = None) -> NoReturn:
    """Defer ``task`` (a generate operator or the sensor) to wait in the triggerer, with the
    kwargs of :func:`kling_provider._wait.deferral.wait_trigger_kwargs`, for ``timeout`` seconds."""
    task.defer(trigger=KlingGenerationTrigger(**trigger_kwargs), method_name=RESUME_METHOD,
               kwargs=resume_kwargs, timeout=deferral_timeout(timeout))


class KlingSubmissionRecoveryTrigger(BaseTrigger):
    """Find a generation whose create answer was lost, in the usage logs, without a worker slot.

    The logs list an async video once it has finished, so this waits (polling
    ``GET /v2/logs`` every ``poll_interval`` seconds, within the process-wide rate budget) until
    the row with ``client_request_id`` shows or the absolute ``deadline`` passes. Fires one
    event: ``found`` (with the generation id), ``not_found``, or ``error``. Its kwargs hold no
    key: the connection is resolved in the triggerer.

    :param kling_conn_id: the Kling connection.
    :param client_request_id: the ``X-Client-Request-Id`` the create request carried.
    :param model: the model it was sent to (the logs are filtered by it).
    :param since: epoch seconds of the intent (the logs are filtered from just before it).
    :param deadline: absolute epoch seconds after which ``not_found`` is fired.
    :param poll_interval: seconds between lookups.
    """

    def __init__(self, *, kling_conn_id: str, client_request_id: str, model: str, since: float,
                 deadline: float, poll_interval: float) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.kling_conn_id = kling_conn_id
        self.client_request_id = client_request_id
        self.model = model
        self.since = float(since)
        self.deadline = float(deadline)
        self.poll_interval = float(poll_interval)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (f"{type(self).__module__}.{type(self).__qualname__}", {
            "kling_conn_id": self.kling_conn_id,
            "client_request_id": self.client_request_id,
            "model": self.model,
            "since": self.since,
            "deadline": self.deadline,
            "poll_interval": self.poll_interval,
        })

    async def run(self) -> AsyncIterator[TriggerEvent]:
        base: dict[str, Any] = {"client_request_id": self.client_request_id}
        await _starting.PACER.start()
        hook = (await import_off_loop(HOOK_MODULE)).KlingHook(kling_conn_id=self.kling_conn_id)
        try:
            row = await hook.afind_generation(
                self.client_request_id, model=self.model, since=self.since,
                deadline=self.deadline, poll_interval=self.poll_interval)
        except KlingError as exc:
            event = {**base, "status": "error", "message": str(exc)}
        else:
            if row is None:
                event = {**base, "status": "not_found"}
            else:
                event = {**base, "status": "found", "generation_id": row.generation_id}
        yield TriggerEvent(event)  # type: ignore[no-untyped-call]

    async def on_kill(self) -> None:
        """A user killed the task while its lost create answer was being looked up (3.3+).

        Whatever that request created keeps running and is billed; say how to find it. Only a
        log line, like :meth:`KlingGenerationTrigger.on_kill`.
        """
        self.log.warning(
            "Task killed while looking up the generation its create request may have started "
            "(model %r, X-Client-Request-Id %r). The AI/ML API cannot cancel a generation: if "
            "that request created one, it keeps running and is billed. Find it in the AI/ML API "
            "dashboard's usage logs by that request id, then wait for or download it with "
            "KlingGenerationSensor / KlingDownloadVideoOperator(generation_id=...).",
            self.model, self.client_request_id)
