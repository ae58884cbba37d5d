"""The download operator's class: its arguments and parse-time checks (its public path is
:mod:`kling_provider.operators.kling`, which re-exports it).

What it does on a worker is :mod:`._download`, imported by ``execute`` on first use (parse cost).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, BaseOperator

from kling_provider import DEFAULT_CONN_ID
from kling_provider._checks import check_destination, check_max_bytes
from kling_provider._task.templates import require_run_independent
from kling_provider.exceptions import KlingValidationError
from kling_provider.hooks._task import TaskHook, closes_hook
from kling_provider.links.kling import KlingVideoLink
from kling_provider.operators._arguments import KLING_VIDEOS_ASSET, is_dynamic, with_outlet

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["KlingDownloadVideoOperator"]


class KlingDownloadVideoOperator(TaskHook, BaseOperator):
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
        super().__init__(**with_outlet(kwargs, asset))  # mapped: partial() already added it
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
        self._lineage: tuple[list[str], list[str]] = ([], [])
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
        return super().partial(**with_outlet(kwargs, kwargs.get("asset", KLING_VIDEOS_ASSET)))

    @closes_hook
    def execute(self, context: Context) -> dict[str, Any]:
        from kling_provider.operators import _download  # execute time only (parse cost)

        return _download.execute(self, context)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage (when its provider is installed): the video URL in, the stored copy out."""
        from kling_provider.operators import _download  # execute time only (parse cost)

        return _download.lineage(self)
