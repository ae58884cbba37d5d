"""Templates that cannot render in every kind of DAG run, found when the DAG is parsed.

Airflow 3 only defines ``ds``, ``ts``, ``logical_date``, ``data_interval_start`` and their kin
when the run has a logical date. Runs triggered through the REST API or ``airflow dags trigger``
without one, and every Asset-triggered run, have none, and Airflow renders templates with
``StrictUndefined``: ``{{ ds }}`` in a download destination then fails the download task, after
the generate task already paid for the video (see ``airflow/sdk/execution_time/task_runner.py``,
``get_template_context``: those keys are added only ``if logical_date``).

So a destination that names one is refused when the DAG is parsed (an import error in the UI,
naming the task, the template and the fix), rather than warned about in a log nobody reads
before the money is spent. ``run_id`` and ``dag_run.run_after`` exist in every run and render a
date just as well: ``{{ dag_run.run_after | ds }}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

import jinja2
from jinja2 import nodes

from kling_provider.exceptions import KlingValidationError

#: Context keys Airflow 3 sets only for runs with a logical date.
LOGICAL_DATE_KEYS = frozenset({
    "ds", "ds_nodash", "ts", "ts_nodash", "ts_nodash_with_tz", "logical_date",
    "data_interval_start", "data_interval_end", "prev_data_interval_start_success",
    "prev_data_interval_end_success",
})
RUNS_WITHOUT_LOGICAL_DATE = (
    "runs without a logical date: triggered through the REST API or `airflow dags trigger` "
    "without one, and every Asset-triggered run"
)


def is_dynamic(value: Any) -> bool:
    """True for values only known at run time: Jinja templates, XComArgs, nested either way."""
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, Mapping):
        return any(is_dynamic(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(is_dynamic(v) for v in value)
    return value is not None and hasattr(value, "resolve")  # XComArg, MappedArgument


def logical_date_keys(value: Any) -> list[str]:
    """The logical-date-only context keys a template (or nested templates) reads, sorted."""
    found: set[str] = set()
    for text in _strings(value):
        if "{{" not in text and "{%" not in text:
            continue
        try:
            tree = _environment().parse(text)
        except jinja2.TemplateSyntaxError:
            continue  # Airflow reports the syntax error itself, with its own context
        # Walk the syntax tree rather than compile it: compiling needs every filter defined,
        # and DAGs use Airflow's (``| ds``) and their own.
        names = list(tree.find_all(nodes.Name))
        stored = {n.name for n in names if n.ctx in ("store", "param")}
        found |= {n.name for n in names if n.ctx == "load"} & LOGICAL_DATE_KEYS - stored
    return sorted(found)


def require_run_independent(parameter: str, value: Any, task_id: str) -> None:
    """Refuse a template that breaks runs without a logical date, at DAG parse time."""
    keys = logical_date_keys(value)
    if keys:
        names = ", ".join("{{ " + key + " }}" for key in keys)
        raise KlingValidationError(
            f"Task {task_id!r}: invalid parameter {parameter!r}={value!r}: it uses "
            f"{names}, which Airflow 3 leaves undefined in "
            f"{RUNS_WITHOUT_LOGICAL_DATE}; such a run would pay for the video and then fail to "
            "store it. Use values every run has: {{ dag_run.run_after | ds }} for the date, "
            "{{ run_id }} for one folder per run."
        )


@cache
def _environment() -> jinja2.Environment:
    """Only parses, never renders; built on the first template seen, not on every DAG parse."""
    return jinja2.Environment(autoescape=True)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _strings(v)]
    return []
