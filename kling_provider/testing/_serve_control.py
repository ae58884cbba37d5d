"""The simulator's own endpoints, ``/_simulator/*``: not the AI/ML API's, no key needed.

Registered in :mod:`._routes`; used by tests, the demo and users driving a simulator in another
process (``docs/simulator.rst``): ``POST /_simulator/faults`` replaces the global
:class:`~kling_provider.testing.records.Faults` (``{}`` clears them), ``GET /_simulator/ledger``
counts the requests seen, per path and per generation, ``POST /_simulator/retire`` retires a
model in the deprecation feed (``_retirements``).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING

from kling_provider.testing import _retirements
from kling_provider.testing.records import Faults

if TYPE_CHECKING:
    from urllib.parse import SplitResult

    from kling_provider.testing._http import SimulatorHandler

__all__ = ["ledger", "retire", "set_faults"]


def set_faults(h: SimulatorHandler, url: SplitResult) -> None:
    try:
        body = h.body()
    except ValueError:
        body = None
    h.simulator.faults = Faults.from_dict(body or {})
    h.send_json(200, asdict(h.simulator.faults))


def retire(h: SimulatorHandler, url: SplitResult) -> None:
    """Retire (or restore) a model in the deprecation feed (see ``_retirements.control``)."""
    try:
        body = h.body()
    except ValueError:
        body = None
    try:
        return h.send_json(200, h.simulator.retirements.control(body))
    except _retirements.RetireError as exc:
        return h.error(400, str(exc))


def ledger(h: SimulatorHandler, url: SplitResult) -> None:
    h.send_json(200, h.simulator.ledger.summary())
