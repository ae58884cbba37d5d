"""The simulator's routes: which origin answers which method on which path, in one table.

Used by the HTTP handler (:mod:`._http`) to dispatch every request, and to answer 405 (with
``Allow``) for a path served with other methods, 404 for a path not served at all. A new
endpoint is one ``Route`` in :data:`ROUTES` and a function in the ``_serve_*`` module of its
family; nothing else dispatches, so the table is the whole surface of the simulated API.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import SplitResult

from kling_provider import _endpoints
from kling_provider.testing import (
    _billing,
    _retirements,
    _serve_account,
    _serve_cdn,
    _serve_control,
    _usage,
)
from kling_provider.testing import _serve_generations as _generations

if TYPE_CHECKING:
    from kling_provider.testing._http import SimulatorHandler

__all__ = ["ROUTES", "Route", "allowed_methods", "route"]

#: Answers one request: the handler (to read it and answer) and its parsed URL.
Serve = Callable[["SimulatorHandler", SplitResult], None]


@dataclass(frozen=True)
class Route:
    """``method`` requests to ``origin`` on a path ``matches`` accepts, answered by ``serve``."""

    #: "api" (the AI/ML API's origin) or "cdn" (the video origin, which never sees the key).
    origin: str
    #: The HTTP method, upper case as sent.
    method: str
    matches: Callable[[str], bool]
    serve: Serve


def _is(path: str) -> Callable[[str], bool]:
    return path.__eq__


#: Every endpoint the simulator serves, first match wins. The API origin needs a key except
#: where its function says otherwise (the model list, metrics and deprecations are keyless, as
#: for real).
ROUTES: tuple[Route, ...] = (
    # The simulator's own control endpoints (tests and demos, not the AI/ML API).
    Route("api", "POST", _is("/_simulator/faults"), _serve_control.set_faults),
    Route("api", "GET", _is("/_simulator/ledger"), _serve_control.ledger),
    Route("api", "POST", _is(_retirements.CONTROL_PATH), _serve_control.retire),
    # The account: model list, live metrics, deprecations, balance, usage logs, usage.
    Route("api", "GET", _is(_endpoints.path("metrics")), _serve_account.metrics),
    Route("api", "GET", _retirements.FEED_PATHS.__contains__, _serve_account.deprecations),
    Route("api", "GET", _billing.is_account_path, _serve_account.account),
    Route("api", "GET", _is(_endpoints.path("logs")), _serve_account.logs_page),
    Route("api", "GET", _usage.PATHS.__contains__, _serve_account.usage),
    # Generations, on both endpoint families: poll and create.
    Route("api", "GET", _generations.FAMILY_BY_PATH.__contains__, _generations.poll),
    Route("api", "POST", _generations.FAMILY_BY_PATH.__contains__, _generations.create),
    # The video origin.
    Route("cdn", "GET", lambda path: path.startswith("/files/"), _serve_cdn.video),
)


def route(origin: str, method: str, path: str) -> Serve | None:
    """What answers ``method`` on ``path`` at ``origin`` (``None``: nothing does)."""
    return next((r.serve for r in ROUTES
                 if r.origin == origin and r.method == method and r.matches(path)), None)


def allowed_methods(origin: str, path: str) -> list[str]:
    """The methods ``path`` serves on ``origin`` (none: the path does not exist)."""
    return list(dict.fromkeys(r.method for r in ROUTES if r.origin == origin and r.matches(path)))
