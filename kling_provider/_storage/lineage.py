"""OpenLineage for the operators: image URLs in, the stored video out.

Only used when the ``apache-airflow-providers-openlineage`` provider is installed (it is the one
calling ``get_openlineage_facets_on_complete``); its modules are imported lazily here so the
provider costs nothing to import without it. Dataset names follow the OpenLineage naming spec:
``https://host`` + path for URLs (query strings dropped: CDN URLs carry signatures), ``file`` +
absolute path for local files, ``scheme://bucket`` + key for object storage. Credentials written
into a URL (``https://user:password@host/...``) never reach a namespace: lineage is stored and
shown by other systems.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from kling_provider._api.network import redact_url

__all__ = ["dataset_id", "operator_lineage"]


def dataset_id(uri: str) -> tuple[str, str]:
    """(namespace, name) of a URL, a local path or an object-storage URI."""
    parts = urlsplit(uri)
    if parts.scheme in ("", "file"):
        return "file", parts.path or redact_url(uri)
    host = parts.netloc.rpartition("@")[2]
    if parts.scheme in ("http", "https"):
        return f"{parts.scheme}://{host}", parts.path or "/"
    return f"{parts.scheme}://{host}", parts.path.lstrip("/") or "/"


def operator_lineage(inputs: Iterable[str | None], outputs: Iterable[str | None]) -> Any:
    """An ``OperatorLineage`` with one Dataset per non-empty URI (``None`` without the provider)."""
    try:
        # the OpenLineage provider is optional: no lineage without it (below)
        from airflow.providers.common.compat.openlineage.facet import Dataset
        from airflow.providers.openlineage.extractors import OperatorLineage
    except ImportError:
        return None

    def datasets(uris: Iterable[str | None]) -> list[Any]:
        seen = dict.fromkeys(dataset_id(u) for u in uris if u)
        return [Dataset(namespace=namespace, name=name) for namespace, name in seen]

    return OperatorLineage(inputs=datasets(inputs), outputs=datasets(outputs))
