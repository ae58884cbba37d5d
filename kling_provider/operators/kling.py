"""Operators that generate Kling videos and download them: the public module of the classes.

``KlingGenerateVideoOperator`` (and its text-/image-to-video presets) submits one generation, then
waits deferrably in the triggerer (default), polls in the worker (``deferrable=False``) or returns
at once (``wait_for_completion=False``, pair it with ``KlingGenerationSensor``), never paying
twice (README). ``KlingDownloadVideoOperator`` (class in ``_download_operator.py``) streams the
MP4 to a path or URI and emits an Asset event.

Only what a DAG parse needs: classes, arguments, literal checks (``_arguments.py``). Each entry
point imports its runtime module (``_generate``, ``_download``) on first use and closes the
task's one hook when it ends (docs/development.rst, "The operator layer").
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator

from kling_provider import DEFAULT_CONN_ID, STATE_KEY
from kling_provider._checks import (
    DEFAULT_POLL_INTERVAL,
    PollScheduleKind,
    check_max_bytes,
    check_on_uncertain_submission,
    check_poll_schedule,
    wait_seconds,
)
from kling_provider._task.result import asset_extra, generation_result
from kling_provider._task.templates import require_run_independent
from kling_provider._wait.deferral import DEFERRAL_GRACE
from kling_provider.hooks._task import TaskHook, closes_hook
from kling_provider.links.kling import KlingVideoLink
from kling_provider.operators._arguments import (
    ESTIMATE_KEY,
    KLING_VIDEOS_ASSET,
    NOT_RENDERED,
    PARAMETERS,
    PROMPT_LABEL_TEMPLATE,
    UNKNOWN_RESUBMIT_AFTER,
    check_generate_partial,
    check_generate_task,
    is_dynamic,
    require_rendered,
    validate_literals,
    with_outlet,
)
from kling_provider.operators._download_operator import KlingDownloadVideoOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from kling_provider.catalogue import PreparedRequest
    from kling_provider.operators.review import KlingReviewOperator

__all__ = ["DEFERRAL_GRACE", "ESTIMATE_KEY", "KLING_VIDEOS_ASSET", "PROMPT_LABEL_TEMPLATE", "STATE_KEY",
           "UNKNOWN_RESUBMIT_AFTER", "KlingDownloadVideoOperator", "KlingGenerateVideoOperator",
           "KlingImageToVideoOperator", "KlingReviewOperator", "KlingTextToVideoOperator",
           "asset_extra", "generation_result", "is_dynamic"]


def __getattr__(name: str) -> Any:
    """``KlingReviewOperator`` on first use: its HITL base class loads the standard provider."""
    if name == "KlingReviewOperator":
        from kling_provider.operators.review import KlingReviewOperator  # parse cost (HITL base)

        return KlingReviewOperator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")




class KlingGenerateVideoOperator(TaskHook, BaseOperator):
    """Generate a video with any Kling model of the AI/ML API.

    :param model: model id, e.g. ``klingai/v2.1-master-text-to-video`` (templated). An id the
        catalogue lacks fails when the DAG is parsed, naming the closest known ids.
    :param allow_unknown_model: send a model id the catalogue lacks anyway, unvalidated: for
        Kling models newer than this provider release (no provider release needed).
    :param prompt: the text to generate from (templated; a request field, named as in the API).
    :param negative_prompt: what to avoid (templated).
    :param image_url: the image to animate (templated).
    :param tail_image_url: the image of the last frame, for models that take one (templated).
    :param image_list: several reference images, for models that take them (templated).
    :param aspect_ratio: a request field; checked against the model catalogue, like the next three.
    :param duration: the video length in seconds.
    :param cfg_scale: how closely to follow the prompt.
    :param camera_control: the camera movement, for models that take it.
    :param parameters: any other schema field of the model (``effect_scene``, ...), validated.
    :param extra_params: fields sent unvalidated, for what the catalogue does not know yet.
    :param endpoint_family: ``legacy`` or ``unified``; default: the connection's.
    :param wait_for_completion: wait until the video is ready (default) or return after submit.
    :param deferrable: wait in the triggerer (default), freeing the worker slot for the 5-14
        minutes a generation takes; ``False`` polls in the worker.
    :param poll_interval: the longest gap between two status polls, in seconds (default 60).
    :param end_from_trigger: (deferrable, no ``download_to``) a success ends the task in the
        triggerer with the same return value and ``video_url`` XCom: one worker start per
        generation instead of two. Off by default: no listener may be registered, and OpenLineage
        facets and the "delivered" mark are skipped (docs/waiting.rst). Failures resume on a worker.
    :param poll_schedule: ``adaptive`` (default): poll twice early, then around when this model
        should finish (live ``/models/metrics`` or the documented times, scaled by ``duration``),
        backing off past it; ``fixed``: every ``poll_interval`` seconds, like the API docs' loop.
    :param timeout: seconds to wait for the video before failing (default 30 min; the generation
        is not lost on timeout: its id is in XCom).
    :param download_to: optional path or ObjectStoragePath URI: download the MP4 in this task,
        like :class:`KlingDownloadVideoOperator` (its result adds ``uri``, ``size`` and
        ``downloaded``, and the task updates the ``kling://videos`` Asset).
    :param max_bytes: (with ``download_to``) refuse videos larger than this (default 4 GiB).
    :param max_cost_usd: fail before any paid request when the estimated price (from the API's
        model list with pricing, schema defaults included) exceeds this many US dollars. An
        unknown price is logged as a warning and does not block.
    :param check_balance: read the account balance (``GET /v2/billing``) before submitting and
        fail at once when it cannot pay the estimated price.
    :param budget_usd: a budget across runs (templated; ``"12.5"`` is read as 12.5): refuse when
        what the key spent in ``budget_period`` plus this deployment's generations in flight plus
        this estimate passes it. Default: the connection's extra of the same name (docs/spend.rst).
    :param budget_period: ``day``, ``week`` or ``month`` (rolling 24 h / 7 d / 30 d; templated).
    :param on_unknown_spend: ``fail`` (default) or ``warn`` when the spend cannot be read.

    :param on_uncertain_submission: what a try does when a create request may have reached the
        API but its generation never appears in the usage logs (looked up for ``timeout`` plus
        5 minutes): ``"fail"`` (default: never risk a second payment; the error names the client
        request id to check) or ``"resubmit"`` (submit a new generation).

    Mapped over prompts (``.partial(...).expand(prompt=[...])``), each task is labelled by its
    prompt in the UI (``map_index_template``; pass your own to change it).
    """

    #: Every request argument: a rendered string is coerced by the model's schema ("5" -> 5).
    template_fields: Sequence[str] = ("model", "prompt", "negative_prompt", "aspect_ratio",
                                      "duration", "cfg_scale", "camera_control", "image_url",
                                      "tail_image_url", "image_list", "extra_params",
                                      "parameters", "download_to", "budget_usd", "budget_period")
    template_fields_renderers = {"extra_params": "json", "parameters": "json",
                                 "camera_control": "json"}
    operator_extra_links = (KlingVideoLink(),)
    ui_color = "#e8dcff"
    #: Its results make a DAG run's spend total (the runtime tells these tasks apart by it).
    _pays_for_generations: ClassVar[bool] = True

    def __init__(
        self,
        *,
        model: str,
        prompt: str | None = None,
        negative_prompt: str | None = None,
        aspect_ratio: str | None = None,
        duration: int | str | None = None,
        cfg_scale: float | None = None,
        camera_control: dict[str, Any] | str | None = None,
        image_url: str | None = None,
        tail_image_url: str | None = None,
        image_list: list[str] | None = None,
        parameters: dict[str, Any] | None = None,
        extra_params: dict[str, Any] | None = None,
        kling_conn_id: str = DEFAULT_CONN_ID,
        endpoint_family: str | None = None,
        wait_for_completion: bool = True,
        deferrable: bool = True,
        poll_interval: float | timedelta = DEFAULT_POLL_INTERVAL,
        timeout: float | timedelta = 1800.0,
        download_to: str | None = None,
        max_bytes: int | None = None,
        allow_unknown_model: bool = False,
        poll_schedule: PollScheduleKind = "adaptive",
        end_from_trigger: bool = False,
        max_cost_usd: float | None = None,
        check_balance: bool = False,
        on_uncertain_submission: str = "fail",
        budget_usd: float | str | None = None,
        budget_period: str | None = None,
        on_unknown_spend: str | None = None,
        **kwargs: Any,
    ) -> None:
        given = locals()  # the arguments as passed: the ones never rendered are checked below
        # download_to records its copy on the videos Asset, as the download operator does.
        asset = KLING_VIDEOS_ASSET if download_to is not None else None
        super().__init__(**with_outlet(kwargs, asset))
        self.asset = asset
        require_rendered(self.task_id, **{name: given[name] for name in NOT_RENDERED})
        self.model = model
        self.allow_unknown_model = allow_unknown_model
        self.prompt = prompt
        self.negative_prompt = negative_prompt
        self.aspect_ratio = aspect_ratio
        self.duration = duration
        self.cfg_scale = cfg_scale
        self.camera_control = camera_control
        self.image_url = image_url
        self.tail_image_url = tail_image_url
        self.image_list = image_list
        self.parameters = parameters
        self.extra_params = extra_params
        self.kling_conn_id = kling_conn_id
        self.endpoint_family = endpoint_family
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        self.poll_interval: float = wait_seconds("poll_interval", poll_interval, task_id=self.task_id)
        self.timeout: float = wait_seconds("timeout", timeout, task_id=self.task_id)
        self.download_to = download_to
        check_max_bytes(max_bytes, task_id=self.task_id)
        self.max_bytes = max_bytes
        self.poll_schedule = check_poll_schedule(poll_schedule, task_id=self.task_id)
        self.end_from_trigger = end_from_trigger
        self.on_uncertain_submission = check_on_uncertain_submission(on_uncertain_submission)
        self.max_cost_usd = max_cost_usd
        self.budget_usd, self.budget_period = budget_usd, budget_period
        self.on_unknown_spend = on_unknown_spend
        check_generate_task(self)
        self.check_balance = check_balance
        #: The price estimated before the POST (``None``: unknown or not submitted by this try).
        self.estimated_usd: float | None = None
        #: The request this try validated and pays for (``execute`` prepares it once).
        self._prepared: PreparedRequest | None = None
        self._lineage_outputs: list[Any] = []
        validate_literals(self)
        require_run_independent("download_to", download_to, self.task_id)

    @classmethod
    def partial(cls, **kwargs: Any) -> Any:
        """Mapped tasks run no ``__init__`` at parse time: check here what needs no values."""
        check_generate_partial(kwargs)
        # Each mapped task is labelled by its prompt: Airflow reads ``map_index_template`` from
        # the mapped operator's partial kwargs, before any ``__init__`` runs.
        kwargs.setdefault("map_index_template", PROMPT_LABEL_TEMPLATE)
        asset = KLING_VIDEOS_ASSET if kwargs.get("download_to") is not None else None
        return super().partial(**with_outlet(kwargs, asset))

    def request_params(self) -> dict[str, Any]:
        """The request fields as the API names them (``None`` = not sent)."""
        params = {name: getattr(self, name) for name in PARAMETERS}
        params.update(self.parameters or {})
        return params

    # -- on a worker: kling_provider.operators._generate ---------------------------------------

    @closes_hook
    def execute(self, context: Context) -> dict[str, Any]:
        from kling_provider.operators import _generate  # execute time only (parse cost)

        return _generate.execute(self, context)

    @closes_hook
    def execute_complete(self, context: Context, event: Any = None,
                         endpoint_family: str | None = None, submitted_at: float | None = None,
                         estimated_usd: float | None = None) -> dict[str, Any]:
        """Resume after the wait trigger."""
        from kling_provider.operators import _generate  # execute time only (parse cost)

        return _generate.execute_complete(self, context, event, endpoint_family, submitted_at,
                                          estimated_usd)

    @closes_hook
    def execute_recovered(self, context: Context, event: Any = None,
                          endpoint_family: str | None = None) -> dict[str, Any]:
        """Resume after the usage-logs lookup of an uncertain create answer."""
        from kling_provider.operators import _generate  # execute time only (parse cost)

        return _generate.execute_recovered(self, context, event, endpoint_family)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage (when its provider is installed): image URLs in, the video out."""
        from kling_provider.operators import _generate  # execute time only (parse cost)

        return _generate.lineage(self)


class KlingTextToVideoOperator(KlingGenerateVideoOperator):
    """Text-to-video; defaults to ``klingai/v2.1-master-text-to-video``."""

    def __init__(self, *, model: str = "klingai/v2.1-master-text-to-video", **kwargs: Any) -> None:
        super().__init__(model=model, **kwargs)


class KlingImageToVideoOperator(KlingGenerateVideoOperator):
    """Image-to-video; defaults to ``klingai/v2.1-master-image-to-video``."""

    def __init__(self, *, model: str = "klingai/v2.1-master-image-to-video",
                 **kwargs: Any) -> None:
        super().__init__(model=model, **kwargs)
