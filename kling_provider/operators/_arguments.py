"""The operators' parse-time checks of their arguments, and the constants their module re-exports.

Used by :mod:`kling_provider.operators.kling` when a DAG file is parsed (and by ``execute``,
which checks again what templates or mapping may have changed): it imports nothing that only a
running task needs (parse cost, ``tests/test_parse_cost.py``). What runs on a worker is in the
runtime modules beside it (``_generate``, ``_submission``, ``_recover``, ``_record``,
``_download``), imported by the entry points on first use.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset

from kling_provider._checks import (
    check_budget_literals,
    check_destination,
    check_on_uncertain_submission,
    validate_max_cost,
    wait_seconds,
)
from kling_provider._task.result import VIDEOS_ASSET_NAME, VIDEOS_ASSET_URI
from kling_provider._task.templates import is_dynamic, require_run_independent
from kling_provider.catalogue import get_model, prepare_request, unknown_model_message
from kling_provider.exceptions import KlingModelWithdrawnError, KlingValidationError

if TYPE_CHECKING:
    from kling_provider.operators.kling import KlingGenerateVideoOperator

__all__ = ["ESTIMATE_KEY", "KLING_VIDEOS_ASSET", "PROMPT_LABEL_TEMPLATE", "RECOVERY_GRACE",
           "UNKNOWN_RESUBMIT_AFTER", "check_generate_partial", "check_generate_task", "is_dynamic",
           "require_rendered", "validate_literals", "with_outlet"]

#: The default Asset the download operator updates: schedule DAGs on it to react to new videos.
KLING_VIDEOS_ASSET = Asset(name=VIDEOS_ASSET_NAME, uri=VIDEOS_ASSET_URI)
#: ``task_state_store`` key of the price estimated before this task's POST (USD).
ESTIMATE_KEY = "kling_estimated_usd"
#: A stored generation the API answers 404 for is only resubmitted once it is this old: younger,
#: it may just not be visible yet, and resubmitting could pay twice.
UNKNOWN_RESUBMIT_AFTER = timedelta(minutes=15)
#: How long the deferral of a lookup outlives the lookup's own deadline.
RECOVERY_GRACE = timedelta(minutes=5)

#: The generate operators' request fields that are arguments of their own.
PARAMETERS = ("prompt", "negative_prompt", "aspect_ratio", "duration", "cfg_scale",
              "camera_control", "image_url", "tail_image_url", "image_list")

#: The generate operators' arguments Airflow never renders (they shape the task, not the request).
NOT_RENDERED = ("kling_conn_id", "endpoint_family", "wait_for_completion", "deferrable",
                "poll_interval", "timeout", "allow_unknown_model", "poll_schedule",
                "end_from_trigger", "max_cost_usd", "check_balance", "on_uncertain_submission",
                "on_unknown_spend")
#: The budget's arguments (:mod:`kling_provider.operators._budget`), checked when literal.
BUDGET_ARGUMENTS = ("budget_usd", "budget_period", "on_unknown_spend")

#: A mapped generate task's label in the UI: its prompt (else its image), cut at 60 characters.
PROMPT_LABEL_TEMPLATE = ("{{ (task.prompt or task.image_url or '') | replace('\\n', ' ') "
                         "| truncate(60, true, '…', 0) }}")


def with_outlet(kwargs: dict[str, Any], asset: Asset | None) -> dict[str, Any]:
    """``kwargs`` with ``asset`` among its ``outlets`` (``None``: unchanged).

    In ``partial()`` too: a mapped operator's ``outlets`` are its partial kwargs (``__init__``
    only runs when a mapped task executes), and the DAG's Asset references, hence the Asset
    graph, are built from them when the DAG is serialized.
    """
    outlets = list(kwargs.get("outlets") or [])
    if asset is not None and asset not in outlets:
        kwargs["outlets"] = [*outlets, asset]
    return kwargs


def require_rendered(task_id: str, **arguments: Any) -> None:
    """Refuse a template (or XComArg) given to an argument that is not a templated field.

    Airflow would pass its text on as it is, and the task would fail at run time on
    ``'{{ params.x }}'`` with no hint that it was never rendered.
    """
    for name, value in arguments.items():
        if is_dynamic(value):
            raise KlingValidationError(
                f"Task {task_id!r}: invalid parameter {name!r}={value!r}: {name!r} is not a "
                "templated field, so Airflow would pass this on unrendered. Give a literal "
                "value (read a DAG param in the DAG file, or choose between tasks), or put "
                "request fields in the templated ones: prompt, duration, ..., parameters.")


def retired_note(model: str) -> str:
    """What the shipped feed snapshot and the feeds tasks cached say of a model the catalogue
    lacks ('' when nothing): a model that went away is not a typo. No request, ever."""
    # Only for a model the catalogue refused, a parse that fails anyway (parse cost).
    from kling_provider._models import feeds, retirement

    return retirement.not_found_note(retirement.find(feeds.known_entries(), model))


#: Where a parse's knowledge of retired models comes from (its errors name it).
PARSE_FEEDS = ("the feed snapshot shipped with the provider and the deprecation feeds cached on "
               "this machine, read when the DAG file was parsed")


def known_as(task_id: str, model: Any) -> str | None:
    """The catalogue model a literal ``model`` is checked as, after the model deprecation feed
    as far as this machine knows it (the shipped snapshot and the cached feeds, never a
    request): a withdrawn model is refused, naming its date and ``replaced_by``; an alias or a
    superseded id takes its catalogue model's parameters; ``None`` when nothing knows it."""
    if not isinstance(model, str):
        return None
    # Parse time, never a request: the snapshot and the cache files (benchmarks/parse_cost.py).
    from kling_provider._models import feeds, retirement

    entry, known = feeds.resolve(model)
    try:
        retirement.refuse_withdrawn(model, entry, PARSE_FEEDS)
    except KlingModelWithdrawnError as exc:
        raise KlingModelWithdrawnError(f"Task {task_id!r}: {exc}") from None
    return known


def check_generate_partial(kwargs: Mapping[str, Any]) -> None:
    """What a mapped generate task's ``partial()`` can check without values (no ``__init__``
    runs at parse time for it)."""
    task_id = str(kwargs.get("task_id"))
    model = kwargs.get("model")
    if isinstance(model, str) and not is_dynamic(model) \
            and known_as(task_id, model) is None and not kwargs.get("allow_unknown_model"):
        raise KlingValidationError(f"Task {kwargs.get('task_id')!r}: "
                                   f"{unknown_model_message(model, 'legacy')}{retired_note(model)}")
    require_run_independent("download_to", kwargs.get("download_to"), task_id)
    require_rendered(task_id, **{k: v for k, v in kwargs.items() if k in NOT_RENDERED})
    for name in ("poll_interval", "timeout"):
        if name in kwargs:
            wait_seconds(name, kwargs[name], task_id=task_id)
    validate_max_cost(kwargs.get("max_cost_usd"))
    check_budget_literals({k: v for k, v in kwargs.items() if k in BUDGET_ARGUMENTS})


def check_generate_task(task: KlingGenerateVideoOperator) -> None:
    """Checks of what the API never sees; at parse time and again first thing in ``execute``
    (templates and mapping may have changed the values since)."""
    task.poll_interval = wait_seconds("poll_interval", task.poll_interval, task_id=task.task_id)
    task.timeout = wait_seconds("timeout", task.timeout, task_id=task.task_id)
    check_on_uncertain_submission(task.on_uncertain_submission)
    task.max_cost_usd = validate_max_cost(task.max_cost_usd)
    check_budget_literals({name: getattr(task, name, None) for name in BUDGET_ARGUMENTS})
    if task.download_to is None:
        return
    if not task.wait_for_completion:
        raise KlingValidationError(
            f"Task {task.task_id!r}: 'download_to'={task.download_to!r} needs "
            "wait_for_completion=True (the video exists only once the generation completes); "
            "download later with KlingDownloadVideoOperator instead.")
    if not is_dynamic(task.download_to):
        check_destination("download_to", task.download_to, task_id=task.task_id)


def validate_literals(task: KlingGenerateVideoOperator) -> None:
    """Fail at DAG parse time on literal bad input; templated values wait for ``execute``.

    Only a check: ``execute`` prepares the request it pays for once, from the rendered fields.
    """
    if is_dynamic(task.model) or is_dynamic(task.parameters):
        return
    params = task.request_params()
    pending = {k for k, v in params.items() if is_dynamic(v)}
    literal = {k: v for k, v in params.items() if k not in pending}
    extra = None if is_dynamic(task.extra_params) else task.extra_params
    known = known_as(task.task_id, task.model)
    spec = get_model(known) if known else None
    families = ([task.endpoint_family] if task.endpoint_family
                else list(spec.families) if spec else ["legacy"])
    problems: dict[str, str] = {}
    for family in families:  # the connection decides the family later: any may fit
        try:
            prepare_request(task.model, literal, family=family, extra_params=extra,
                            pending=pending, allow_unknown_model=task.allow_unknown_model,
                            known_as=known)
            return
        except KlingValidationError as exc:
            problems[family] = str(exc)
    if len(set(problems.values())) == 1:
        gone = retired_note(task.model) if spec is None else ""
        raise KlingValidationError(f"Task {task.task_id!r}: {next(iter(problems.values()))}{gone}")
    # Each family refused something else: the field wrong for the family the connection
    # will use may be any of them, so name them all.
    raise KlingValidationError(
        f"Task {task.task_id!r}: no endpoint family accepts this request (set "
        "endpoint_family to choose one): "
        + " ".join(f"{family}: {problem}" for family, problem in problems.items()))
