"""The simulator's account endpoints: models (list, metrics, deprecations), balance, logs, usage.

Registered in :mod:`._routes`. What each answers is decided elsewhere (``_billing`` for the model
list and the balance, ``_metrics`` for ``/models/metrics``, ``_retirements`` for the deprecation
feed, ``logs`` for ``/v2/logs``, ``_usage`` for ``/v2/usage``); here are the HTTP rules around
them: which need a key, the logs' rate limit, their 400s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from kling_provider.testing import _billing, _metrics, _usage, logs

if TYPE_CHECKING:
    from urllib.parse import SplitResult

    from kling_provider.testing._http import SimulatorHandler

__all__ = ["account", "deprecations", "logs_page", "metrics", "usage"]


def account(h: SimulatorHandler, url: SplitResult) -> None:
    """The model list (no key needed) and the balance (key needed): see ``_billing``."""
    sim = h.simulator
    if url.path != _billing.BILLING_PATH:
        status, data, headers = _billing.model_list_answer(
            sim.price_list, url.path, url.query, h.headers.get("If-None-Match"))
        return h.send(status, data, "application/json", headers)
    if not h.authorised():
        return None
    with sim._lock:
        balance = round(sim.balance_usd, 6)
    return h.send_json(200, {"current_balance": balance, "currency": "USD"})


def metrics(h: SimulatorHandler, url: SplitResult) -> None:
    """Keyless, like the real endpoint; an unknown query parameter is a 400."""
    params = parse_qs(url.query)
    unknown = sorted(set(params) - {"aliases"})
    if unknown:
        return h.error(400, f"Unknown query parameter(s): {', '.join(unknown)}")
    return h.send_json(200, _metrics.answer(h.simulator, params.get("aliases")))


def deprecations(h: SimulatorHandler, url: SplitResult) -> None:
    """The model deprecation feed: keyless too, with ``ETag``/``304`` (see ``_retirements``)."""
    status, data, headers = h.simulator.retirements.answer(url.query, h.headers.get("If-None-Match"))
    return h.send(status, data, "application/json", headers)


def logs_page(h: SimulatorHandler, url: SplitResult) -> None:
    """One page of usage logs, after the key, the global faults and the per-key rate limit."""
    if not h.authorised():
        return None
    sim = h.simulator
    if h.injected(sim.faults, None):
        return None
    key = h.headers.get("Authorization", "")
    with sim._lock:
        limited = logs.over_limit(sim._logs_calls.setdefault(key, []), sim.clock())
    if limited:
        return h.error(429, "Too Many Requests", headers={"Retry-After": "1"})
    try:
        with sim._lock:
            answer = logs.page(sim, list(sim._generations.values()), parse_qs(url.query))
    except logs.LogsQueryError as exc:
        return h.error(400, str(exc))
    return h.send_json(200, answer)


def usage(h: SimulatorHandler, url: SplitResult) -> None:
    """``/v2/usage`` and ``/v2/usage/detail``: what the caller's key spent (see ``_usage``)."""
    if not h.authorised() or h.injected(h.simulator.faults, None):
        return None
    status, body = _usage.answer(h.simulator, url.path, url.query,
                                 h.headers.get("Authorization", ""))
    return h.send_json(200, body) if status == 200 else h.error(status, body)
