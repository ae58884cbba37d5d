"""The DAG run's generate results so far, read for the spend line's running total.

Used by :func:`kling_provider._task.completion.finish`'s two callers: the generate operators on a
worker (:func:`on_worker`) and the wait trigger when it ends a task in the triggerer
(:func:`in_triggerer`). Which tasks to read is :class:`RunTasks`, decided once on the worker
(from the DAG; the trigger gets it in its kwargs, so the triggerer never imports operators).

What a completion costs, mapped generate tasks included (three prompt variants through
``.expand`` are the common case):

- on a worker, one XCom read per generate task id, mapped or not: the Task SDK's
  ``xcom_pull(task_ids=...)`` reads every map index of a task in one request;
- in the triggerer, whose supervisor answers single XCom reads only (Airflow 3.3.2 refuses the
  "every map index" read), one read per unmapped task id, and per mapped task id one task-state
  read plus one XCom read per map index that has succeeded, at most :data:`MAX_TRIGGERER_READS`
  XCom reads in all: past that the line has no total (a log line is not worth more requests).

Each generation is counted once (by its generation id, :func:`kling_provider._money.spend.
run_total`), so a result read twice or a retried task is not counted twice.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from kling_provider._task.result import RESULT_XCOM_KEY, stored_result

__all__ = ["MAX_TRIGGERER_READS", "RunTasks", "flatten", "in_triggerer", "on_worker",
           "succeeded_map_indexes"]

log = logging.getLogger("kling_provider")

#: The most XCom reads one completion in the triggerer makes for its running total.
MAX_TRIGGERER_READS = 64


@dataclass(frozen=True)
class RunTasks:
    """The DAG's generate tasks whose results make the running total: plain and mapped ids."""

    unmapped: tuple[str, ...] = ()
    mapped: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.unmapped or self.mapped)

    @property
    def all(self) -> list[str]:
        return [*self.unmapped, *self.mapped]


def flatten(pulled: Any) -> list[Any]:
    """The results in what an XCom pull answered: a value, a list of them, or (a mapped task's
    results, as some Task SDK versions answer) lists inside the list; a result given as JSON
    text (a task that ended in the triggerer) is read by :func:`stored_result`."""
    pulled = stored_result(pulled)
    if isinstance(pulled, str):
        return [pulled]
    if pulled is None or isinstance(pulled, (bytes, Mapping)):
        return [] if pulled is None else [pulled]
    if isinstance(pulled, Iterable):
        return [item for part in pulled for item in flatten(part)]
    return [pulled]


def on_worker(ti: Any, tasks: RunTasks) -> list[Any] | None:
    """The results of ``tasks`` in this run (one XCom read per task id, every map index in it);
    ``None`` when they cannot be read (the line then has no total)."""
    if not tasks:
        return None
    try:
        return flatten(ti.xcom_pull(task_ids=tasks.all, key=RESULT_XCOM_KEY))
    except Exception as why:  # never fail a paid, finished generation over a log line
        log.debug("No DAG run total for the spend line: %s", why)
        return None


def succeeded_map_indexes(states: Mapping[str, Any], run_id: str, task_id: str) -> list[int]:
    """The map indexes of ``task_id`` that succeeded, from a task-state answer for that one task
    id (``{run_id: {"<task id>_<map index>": state}}``), in order."""
    found = states.get(run_id)
    prefix = f"{task_id}_"
    indexes = [int(name[len(prefix):]) for name, state in (found or {}).items()
               if isinstance(name, str) and name.startswith(prefix)
               and name[len(prefix):].isdigit() and str(state) == "success"]
    return sorted(indexes)


def _triggerer_reads(task_instance: Any, tasks: RunTasks) -> Iterator[tuple[str, int]]:
    """(task id, map index) of each result to read, the mapped ones from their task states."""
    # Execute time only, in a thread: the SDK's reads through the triggerer's supervisor.
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    for task_id in tasks.unmapped:
        yield task_id, -1
    for task_id in tasks.mapped:
        states = RuntimeTaskInstance.get_task_states(
            dag_id=task_instance.dag_id, task_ids=[task_id], run_ids=[task_instance.run_id])
        for index in succeeded_map_indexes(states, task_instance.run_id, task_id):
            yield task_id, index


def in_triggerer(task_instance: Any, tasks: RunTasks) -> list[Any] | None:
    """The results of ``tasks`` read from the triggerer (blocking: run it in a thread);
    ``None`` when they cannot be read or would take more than :data:`MAX_TRIGGERER_READS`."""
    if task_instance is None or not tasks:
        return None
    try:
        # Execute time only, in a thread: the SDK's XCom reads through the supervisor.
        from airflow.sdk.execution_time.xcom import XCom

        reads = list(_triggerer_reads(task_instance, tasks))
        if len(reads) > MAX_TRIGGERER_READS:
            log.debug("No DAG run total for the spend line: %d results to read, more than %d.",
                      len(reads), MAX_TRIGGERER_READS)
            return None
        return flatten([XCom.get_one(key=RESULT_XCOM_KEY, dag_id=task_instance.dag_id,
                                     run_id=task_instance.run_id, task_id=task_id,
                                     map_index=index)
                        for task_id, index in reads])
    except Exception as why:  # never fail a paid, finished generation over a log line
        log.debug("No DAG run total for the spend line: %s", why)
        return None
