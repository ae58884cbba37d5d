"""Operators that generate Kling videos and download them.

``KlingGenerateVideoOperator`` (and its text-/image-to-video presets) submits one generation, then
waits deferrably in the triggerer (default), polls in the worker (``deferrable=False``) or returns
at once (``wait_for_completion=False``, pair it with ``KlingGenerationSensor``).

Never paying twice: see :mod:`kling_provider.operators._submission` (an intent in
``task_state_store`` before the POST, the generation id into it first after the answer, recovery
through the usage logs instead of a blind resubmit) and the README's "Never paying twice".

``KlingDownloadVideoOperator`` streams the MP4 to a path or any ``ObjectStoragePath`` URI and
emits an Asset event so other DAGs can be scheduled on new videos.

This module holds what parsing a DAG file needs: the classes, their arguments and the checks of
literal values. What runs on a worker is in the mixins of :mod:`kling_provider.operators._flow`
and :mod:`kling_provider.operators._submission`, which import the hook, the trigger and the rest
only when they run (parse cost).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, BaseOperator

from kling_provider import DEFAULT_CONN_ID, STATE_KEY
from kling_provider._checks import (
    DEFAULT_POLL_INTERVAL,
    PollScheduleKind,
    check_destination,
    check_max_bytes,
    check_on_uncertain_submission,
    check_poll_schedule,
    validate_max_cost,
    wait_seconds,
)
from kling_provider._task.result import VIDEOS_ASSET_NAME, VIDEOS_ASSET_URI, asset_extra, generation_result
from kling_provider._task.templates import is_dynamic, require_run_independent
from kling_provider._wait.deferral import DEFERRAL_GRACE
from kling_provider.catalogue import get_model, prepare_request, unknown_model_message
from kling_provider.exceptions import KlingValidationError
from kling_provider.links.kling import KlingVideoLink
from kling_provider.operators._flow import ESTIMATE_KEY, DownloadFlow, GenerationFlow
from kling_provider.operators._submission import UNKNOWN_RESUBMIT_AFTER

if TYPE_CHECKING:
    from kling_provider.operators.review import KlingReviewOperator

__all__ = [
    "DEFERRAL_GRACE",
    "ESTIMATE_KEY",
    "KLING_VIDEOS_ASSET",
    "PROMPT_LABEL_TEMPLATE",
    "STATE_KEY",
    "UNKNOWN_RESUBMIT_AFTER",
    "KlingDownloadVideoOperator",
    "KlingGenerateVideoOperator",
    "KlingImageToVideoOperator",
    "KlingReviewOperator",
    "KlingTextToVideoOperator",
    "asset_extra",
    "generation_result",
    "is_dynamic",
]

def __getattr__(name: str) -> Any:
    """``KlingReviewOperator``, imported when first asked for: its human-in-the-loop base class
    loads Airflow's standard provider, which only DAG files that review should pay for."""
    if name == "KlingReviewOperator":
        # parse cost: the HITL base class is loaded only by DAGs that build a review
        from kling_provider.operators.review import KlingReviewOperator

        return KlingReviewOperator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: The default Asset the download operator updates: schedule DAGs on it to react to new videos.
KLING_VIDEOS_ASSET = Asset(name=VIDEOS_ASSET_NAME, uri=VIDEOS_ASSET_URI)


def _with_outlet(kwargs: dict[str, Any], asset: Asset | None) -> dict[str, Any]:
    """``kwargs`` with ``asset`` among its ``outlets`` (``None``: unchanged).

    In ``partial()`` too: a mapped operator's ``outlets`` are its partial kwargs (``__init__``
    only runs when a mapped task executes), and the DAG's Asset references, hence the Asset
    graph, are built from them when the DAG is serialized.
    """
    outlets = list(kwargs.get("outlets") or [])
    if asset is not None and asset not in outlets:
        kwargs["outlets"] = [*outlets, asset]
    return kwargs

_PARAMETERS = ("prompt", "negative_prompt", "aspect_ratio", "duration", "cfg_scale",
               "camera_control", "image_url", "tail_image_url", "image_list")


#: The generate operators' arguments Airflow never renders (they shape the task, not the request).
_NOT_RENDERED = ("kling_conn_id", "endpoint_family", "wait_for_completion", "deferrable",
                 "poll_interval", "timeout", "allow_unknown_model", "poll_schedule",
                 "end_from_trigger", "max_cost_usd", "check_balance", "on_uncertain_submission")


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


#: A mapped generate task's label in the UI: its prompt (else its image), cut at 60 characters.
PROMPT_LABEL_TEMPLATE = ("{{ (task.prompt or task.image_url or '') | replace('\\n', ' ') "
                         "| truncate(60, true, '…', 0) }}")


class KlingGenerateVideoOperator(GenerationFlow, BaseOperator):
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
        generation instead of two (the triggerer sends the completion metrics). Off by default
        because Airflow refuses to parse a DAG with such a task while any listener is registered,
        and what only a worker can do is skipped: OpenLineage facets and the "delivered" mark of
        durable submission (so clearing the task returns the same video). Failures still resume
        on a worker.
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
                                      "parameters", "download_to")
    template_fields_renderers = {"extra_params": "json", "parameters": "json",
                                 "camera_control": "json"}
    operator_extra_links = (KlingVideoLink(),)
    ui_color = "#e8dcff"

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
        **kwargs: Any,
    ) -> None:
        # download_to records its copy on the videos Asset, as the download operator does.
        asset = KLING_VIDEOS_ASSET if download_to is not None else None
        super().__init__(**_with_outlet(kwargs, asset))
        self.asset = asset
        require_rendered(self.task_id, kling_conn_id=kling_conn_id,
                         endpoint_family=endpoint_family, wait_for_completion=wait_for_completion,
                         deferrable=deferrable, poll_interval=poll_interval, timeout=timeout,
                         allow_unknown_model=allow_unknown_model, poll_schedule=poll_schedule,
                         end_from_trigger=end_from_trigger, max_cost_usd=max_cost_usd,
                         check_balance=check_balance,
                         on_uncertain_submission=on_uncertain_submission)
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
        self._check_before_paying()
        self.max_cost_usd = validate_max_cost(max_cost_usd)
        self.check_balance = check_balance
        #: The price estimated before the POST (``None``: unknown or not submitted by this try).
        self.estimated_usd: float | None = None
        self._validate_literals()
        require_run_independent("download_to", download_to, self.task_id)

    @classmethod
    def partial(cls, **kwargs: Any) -> Any:
        """Mapped tasks run no ``__init__`` at parse time: check here what needs no values."""
        model = kwargs.get("model")
        if isinstance(model, str) and not is_dynamic(model) and get_model(model) is None \
                and not kwargs.get("allow_unknown_model"):
            raise KlingValidationError(
                f"Task {kwargs.get('task_id')!r}: {unknown_model_message(model, 'legacy')}")
        require_run_independent("download_to", kwargs.get("download_to"),
                                str(kwargs.get("task_id")))
        require_rendered(str(kwargs.get("task_id")),
                         **{k: v for k, v in kwargs.items() if k in _NOT_RENDERED})
        for name in ("poll_interval", "timeout"):
            if name in kwargs:
                wait_seconds(name, kwargs[name], task_id=str(kwargs.get("task_id")))
        validate_max_cost(kwargs.get("max_cost_usd"))
        # Each mapped task is labelled by its prompt: Airflow reads ``map_index_template`` from
        # the mapped operator's partial kwargs, before any ``__init__`` runs.
        kwargs.setdefault("map_index_template", PROMPT_LABEL_TEMPLATE)
        asset = KLING_VIDEOS_ASSET if kwargs.get("download_to") is not None else None
        return super().partial(**_with_outlet(kwargs, asset))

    # -- validation ----------------------------------------------------------------------------

    def _check_before_paying(self) -> None:
        """Checks of what the API never sees; at parse time and again first thing in execute."""
        self.poll_interval = wait_seconds("poll_interval", self.poll_interval, task_id=self.task_id)
        self.timeout = wait_seconds("timeout", self.timeout, task_id=self.task_id)
        if hasattr(self, "max_cost_usd"):  # in execute; __init__ validates these itself
            check_on_uncertain_submission(self.on_uncertain_submission)
            self.max_cost_usd = validate_max_cost(self.max_cost_usd)
        if self.download_to is None:
            return
        if not self.wait_for_completion:
            raise KlingValidationError(
                f"Task {self.task_id!r}: 'download_to'={self.download_to!r} needs "
                "wait_for_completion=True (the video exists only once the generation completes); "
                "download later with KlingDownloadVideoOperator instead.")
        if not is_dynamic(self.download_to):
            check_destination("download_to", self.download_to, task_id=self.task_id)

    def request_params(self) -> dict[str, Any]:
        """The request fields as the API names them (``None`` = not sent)."""
        params = {name: getattr(self, name) for name in _PARAMETERS}
        params.update(self.parameters or {})
        return params

    def _validate_literals(self) -> None:
        """Fail at DAG parse time on literal bad input; templated values wait for ``execute``."""
        if is_dynamic(self.model) or is_dynamic(self.parameters):
            return
        params = self.request_params()
        pending = {k for k, v in params.items() if is_dynamic(v)}
        literal = {k: v for k, v in params.items() if k not in pending}
        extra = None if is_dynamic(self.extra_params) else self.extra_params
        spec = get_model(self.model)
        families = ([self.endpoint_family] if self.endpoint_family
                    else list(spec.families) if spec else ["legacy"])
        problems: dict[str, str] = {}
        for family in families:  # the connection decides the family later: any may fit
            try:
                prepare_request(self.model, literal, family=family, extra_params=extra,
                                pending=pending, allow_unknown_model=self.allow_unknown_model)
                return
            except KlingValidationError as exc:
                problems[family] = str(exc)
        if len(set(problems.values())) == 1:
            raise KlingValidationError(f"Task {self.task_id!r}: {next(iter(problems.values()))}")
        # Each family refused something else: the field wrong for the family the connection
        # will use may be any of them, so name them all.
        raise KlingValidationError(
            f"Task {self.task_id!r}: no endpoint family accepts this request (set "
            "endpoint_family to choose one): "
            + " ".join(f"{family}: {problem}" for family, problem in problems.items()))

    # Execution (``execute``, ``execute_complete``, ``execute_recovered``) is in the mixins:
    # kling_provider.operators._flow and kling_provider.operators._submission.


class KlingTextToVideoOperator(KlingGenerateVideoOperator):
    """Text-to-video; defaults to ``klingai/v2.1-master-text-to-video``."""

    def __init__(self, *, model: str = "klingai/v2.1-master-text-to-video", **kwargs: Any) -> None:
        super().__init__(model=model, **kwargs)


class KlingImageToVideoOperator(KlingGenerateVideoOperator):
    """Image-to-video; defaults to ``klingai/v2.1-master-image-to-video``."""

    def __init__(self, *, model: str = "klingai/v2.1-master-image-to-video",
                 **kwargs: Any) -> None:
        super().__init__(model=model, **kwargs)


class KlingDownloadVideoOperator(DownloadFlow, BaseOperator):
    """Download a generated video to a path or any ``ObjectStoragePath`` URI.

    Give one of ``generation`` (the dict a generate operator or the sensor returned, usually an
    XComArg), ``generation_id`` (its URL is fetched) or ``video_url``.

    :param destination: file path or URI (``file://``, ``s3://``, ``memory://`` ...), templated;
        a trailing ``/`` means "a folder": the video is stored as ``<generation uuid>.mp4``.
        Templates that runs without a logical date cannot render (``{{ ds }}``...) fail when
        the DAG is parsed; ``{{ dag_run.run_after | ds }}`` and ``{{ run_id }}`` always work.
    :param overwrite: replace an existing file; by default a file is kept only when its
        ``.kling.json`` sidecar proves it holds this generation's video (a re-run does not
        download again), and anything else is left alone: the video is stored beside it.
    :param max_bytes: refuse videos larger than this (default 4 GiB); reading also stops at
        the size the API or the server announced.
    :param asset: the Asset updated on success (``None``: no outlet); its event's extra names the
        generation id, model, prompt, URI and size.
    """

    template_fields: Sequence[str] = ("generation", "generation_id", "video_url", "destination")
    operator_extra_links = (KlingVideoLink(),)
    ui_color = "#dcefff"

    def __init__(self, *, destination: str, generation: Any = None,
                 generation_id: str | None = None, video_url: str | None = None,
                 kling_conn_id: str = DEFAULT_CONN_ID,
                 endpoint_family: str | None = None, overwrite: bool = False,
                 max_bytes: int | None = None, asset: Asset | None = KLING_VIDEOS_ASSET,
                 **kwargs: Any) -> None:
        super().__init__(**_with_outlet(kwargs, asset))  # mapped: partial() already added it
        check_max_bytes(max_bytes, task_id=self.task_id)
        if not is_dynamic(destination):
            check_destination("destination", destination, task_id=self.task_id)
        if sum(x is not None for x in (generation, generation_id, video_url)) != 1:
            raise KlingValidationError(
                f"Task {self.task_id!r}: give exactly one of 'generation', 'generation_id' or "
                "'video_url'.")
        self.destination = destination
        self.generation = generation
        self.generation_id = generation_id
        self.video_url = video_url
        self.kling_conn_id = kling_conn_id
        self.endpoint_family = endpoint_family
        self.overwrite = overwrite
        self.max_bytes = max_bytes
        self.asset = asset
        require_run_independent("destination", destination, self.task_id)

    @classmethod
    def partial(cls, **kwargs: Any) -> Any:
        """Mapped tasks run no ``__init__`` at parse time: check the destination here, and put
        the Asset among the mapped operator's outlets.

        Why the Asset: a mapped operator's ``outlets`` are its partial kwargs (``__init__`` only
        runs when a mapped task executes), and the DAG's Asset references, hence the Asset graph,
        are built from them when the DAG is serialized. Added only in ``__init__``, the Asset
        would be invisible for mapped downloads.
        """
        require_run_independent("destination", kwargs.get("destination"),
                                str(kwargs.get("task_id")))
        return super().partial(**_with_outlet(kwargs, kwargs.get("asset", KLING_VIDEOS_ASSET)))
