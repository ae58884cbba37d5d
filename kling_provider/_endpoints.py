"""Every AI/ML API path the provider calls, in one table.

The step generators (:mod:`kling_provider._api.protocol` and the modules beside it) build their
requests from it, :func:`kling_provider.catalogue.endpoint_path` answers from it, and the
simulator (:mod:`kling_provider.testing`) routes by it, so a path the API moves changes here and
nowhere else. Imports nothing: the catalogue reads it when a DAG file is parsed.
"""

from __future__ import annotations

from typing import Final, NamedTuple


class Endpoint(NamedTuple):
    """One API path and whether the API key goes with it."""

    path: str
    #: ``False`` for the public service endpoints (model list, live timings): no key is sent,
    #: so a connection without one can still read them.
    authenticated: bool = True


#: Name -> endpoint. ``legacy`` and ``unified`` are the two endpoint families: each takes the
#: create POST and the fetch GET (``?generation_id=``) of a generation.
ENDPOINTS: Final[dict[str, Endpoint]] = {
    "legacy": Endpoint("/v2/generate/video/kling/generation"),
    "unified": Endpoint("/v2/video/generations"),
    #: The usage logs: the rows that find a generation whose create answer was lost.
    "logs": Endpoint("/v2/logs"),
    #: The account balance (``current_balance`` in USD).
    "billing": Endpoint("/v2/billing"),
    #: The model list; ``?include=pricing`` adds the prices.
    "models": Endpoint("/v1/models", authenticated=False),
    #: Live generation times per model (``?aliases=<model>``).
    "metrics": Endpoint("/models/metrics", authenticated=False),
    #: What a key spent over a window (``?period=24h``), and the same per model and day.
    "usage": Endpoint("/v2/usage"),
    "usage_detail": Endpoint("/v2/usage/detail"),
    #: The model deprecation feed (deprecated, superseded, withdrawn; ``ETag``).
    "deprecations": Endpoint("/v1/models/deprecations", authenticated=False),
}


def path(name: str) -> str:
    """The URL path of the endpoint called ``name`` in :data:`ENDPOINTS`."""
    return ENDPOINTS[name].path
