"""The API's account and service reads as step generators: balance, model list, deprecation feed,
connection probe, and what the key spent (``GET /v2/usage``, per day and model
``/v2/usage/detail``).

Like the generation calls of :mod:`kling_provider._api.protocol` (and the usage logs of
:mod:`kling_provider._task.submission`, the live timings of :mod:`kling_provider._wait.waiting`), these yield
requests and receive answers, so the hook's drivers run them and unit tests script them. Used by
:meth:`~kling_provider.hooks.kling.KlingHook.guard_spend` (the price and the balance before
paying), :meth:`~kling_provider.hooks.kling.KlingHook.test_connection`, the budget (what the
key spent in its window) and the spend report (what the service billed per day and model).
Amounts are exact ``Decimal``s as the answer wrote them.
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import httpx

from kling_provider._api.answers import error_for_response, json_object
from kling_provider._api.network import transport_cause
from kling_provider._api.protocol import (
    ApiRequest,
    RetryPolicy,
    Step,
    api_request,
    build_fetch_request,
    exchange,
)
from kling_provider._models import feeds as _feeds
from kling_provider._models import retirement as _retirement
from kling_provider._money import pricing as _pricing
from kling_provider._money.spend import exact_amount
from kling_provider.exceptions import KlingModelNotFoundError, KlingServerError

log = logging.getLogger("kling_provider")


def balance_steps(policy: RetryPolicy, *, conn_id: str,
                  secrets: tuple[str, ...] = ()) -> Generator[Step, Any, float]:
    """``GET /v2/billing`` (retried like any GET); return ``current_balance`` in USD."""
    request = api_request("billing", "GET", "account", subject="the account balance")
    answer = yield from exchange(request, policy, conn_id=conn_id, secrets=secrets)
    try:
        return float(answer["current_balance"])
    except (KeyError, TypeError, ValueError):
        raise KlingServerError(
            f"GET {request.path} answered without a readable 'current_balance' "
            f"(keys: {sorted(answer)}).") from None


def price_list_steps(model: str, base_url: str, cache: _pricing.PriceListCache
                     ) -> Generator[Step, Any, tuple[Mapping[str, Any], str]]:
    """The live model list for ``model`` (ETag-cached per process), else an empty list and why.

    One attempt, never raising: no prices ship with the provider (a guessed fallback could let
    a limit pass a costly generation or block a cheap one), so without the live list the price
    is unknown, which warns and never blocks.
    """
    # No ``subject``: it names a request in exchange's errors, and this step words its own.
    outcome = yield api_request("models", "GET", "account",
                                params={"include": "pricing", "id": model},
                                headers=cache.conditional_headers(base_url, model))
    if isinstance(outcome, httpx.RequestError):
        problem = type(outcome).__name__
    else:
        cached = cache.cached(base_url, model)
        if outcome.status_code == 304 and cached is not None:
            return cached, "live price list, unchanged (304)"
        listing = json_object(outcome) if outcome.is_success else None
        if listing is not None and _pricing.find_pricing(listing, model) is not None:
            cache.store(base_url, model, outcome.headers.get("etag"), listing)
            return listing, "live price list"
        problem = (f"HTTP {outcome.status_code}" if listing is None
                   else f"no price for {model} in it")
    return {}, f"the live price list of {base_url} could not be used: {problem}"


#: What :func:`retirement_steps` returns: the model's entry (``None``: not listed), where it came
#: from (for the log line), and the feed to keep (``None``: keep what was kept).
RetirementAnswer = tuple[_retirement.Retirement | None, str, _feeds.Feed | None]


def retirement_steps(model: str, base_url: str, cached: _feeds.Feed | None,
                     shipped: tuple[_retirement.Retirement, ...], *, now: float,
                     refresh: bool) -> Generator[Step, Any, RetirementAnswer]:
    """``model``'s entry in the deprecation feed of ``base_url``, given the feed ``cached`` for
    it and the snapshot ``shipped`` with the provider (the caller reads and keeps both).

    The feed is asked for only when ``cached`` is a day old or missing (``If-None-Match`` with
    its ``ETag``: a ``304`` renews it), or at once with ``refresh`` (after a 404: the model may
    have gone since). One attempt, never raising: the feed is advice (the API's own 404 still
    stops a withdrawn model), so an unreadable feed falls back to ``cached``, else to
    ``shipped``, and says so.
    """
    feed, keep = cached, None
    source = f"deprecation feed of {base_url}"
    if refresh or feed is None or not _retirement.fresh(feed.fetched_at, now):
        headers = {"If-None-Match": feed.etag} if feed is not None and feed.etag else None
        outcome = yield api_request("deprecations", "GET", "account", headers=headers,
                                    subject="the model deprecation feed")
        problem = None
        if isinstance(outcome, httpx.RequestError):
            problem = type(outcome).__name__
        elif outcome.status_code == 304 and feed is not None:
            keep = feed = feed._replace(fetched_at=now)
        else:
            entries = _retirement.entries_from(json_object(outcome)) if outcome.is_success \
                else None
            if entries is None:
                problem = f"HTTP {outcome.status_code}"
            else:
                keep = feed = _feeds.Feed(base_url, outcome.headers.get("etag"), now, entries)
        if problem is not None:
            source = (f"the deprecation feed of {base_url} could not be read ({problem}), so "
                      f"the {'copy read earlier' if feed else 'snapshot shipped'} was used")
            log.warning("Model retirement: %s.", source)
    entries = _retirement.merged(shipped, feed.entries if feed else None)
    return _retirement.find(entries, model), source, keep


def noting_retirement(create: Generator[Step, Any, str],
                      lookup: Generator[Step, Any, tuple[_retirement.Retirement | None, str]]
                      ) -> Generator[Step, Any, str]:
    """``create``; a 404 answer to it also names the model's entry in the deprecation feed
    (``lookup``: :func:`retirement_steps`), when there is one."""
    try:
        return (yield from create)
    except KlingModelNotFoundError as exc:
        entry, _ = yield from lookup
        if entry is None:
            raise
        noted = KlingModelNotFoundError(f"{exc}{_retirement.not_found_note(entry)}")
        noted.created_nothing = exc.created_nothing
        raise noted from exc


def estimate_steps(model: str, body: Mapping[str, Any], base_url: str,
                   cache: _pricing.PriceListCache
                   ) -> Generator[Step, Any, _pricing.PriceEstimate]:
    """One generation's price for a create ``body`` (as sent), from the live model list."""
    listing, source = yield from price_list_steps(model, base_url, cache)
    return _pricing.estimate_price(model, _pricing.find_pricing(listing, model),
                                   _pricing.request_as_sent(model, body), source=source)


def probe_steps(family: str, base_url: str, *, conn_id: str,
                secrets: tuple[str, ...]) -> Generator[Step, Any, tuple[bool, str]]:
    """Ask the fetch endpoint for a made-up id: authenticated, free, and creates nothing.

    One attempt: a connection test reports what it meets. Returns whether the key was accepted,
    and what to tell the user.
    """
    probe = replace(build_fetch_request(family, "airflow-connection-test"), operation="probe")
    outcome = yield probe
    if isinstance(outcome, httpx.RequestError):
        return False, (f"Could not reach {base_url} "
                       f"({type(outcome).__name__}): {transport_cause(outcome)}")
    if outcome.status_code in (401, 403):
        return False, str(error_for_response(probe, outcome, conn_id=conn_id, secrets=secrets))
    if outcome.status_code >= 500:
        return False, f"The API at {base_url} answered HTTP {outcome.status_code}."
    return True, f"Connected to {base_url}: API key accepted ({family} endpoint)."


@dataclass(frozen=True)
class UsageGroup:
    """One day and model of ``GET /v2/usage/detail?group_by=day,model``: what the service billed."""

    day: str
    model: str
    usd: Decimal
    charged: int


def _usd(answer: Mapping[str, Any], name: str, request: ApiRequest) -> Decimal:
    usd = exact_amount(answer.get(name))
    if usd is None or usd < 0:
        raise KlingServerError(f"GET {request.path} answered without a readable {name!r} "
                               f"(keys: {sorted(answer)}).")
    return usd


def usage_steps(window: str, policy: RetryPolicy, *, conn_id: str,
                secrets: tuple[str, ...] = ()) -> Generator[Step, Any, Decimal]:
    """``GET /v2/usage?period=<window>`` (retried like any GET): what the connection's own key
    spent in the rolling ``window`` (``24h``, ``7d``, ``30d``), in USD, as billed."""
    request = api_request("usage", "GET", "account", params={"period": window},
                          subject=f"what the key spent in the last {window}")
    answer = yield from exchange(request, policy, conn_id=conn_id, secrets=secrets)
    return _usd(answer, "spend", request)


def usage_detail_steps(start: str, end: str, policy: RetryPolicy, *, conn_id: str,
                       secrets: tuple[str, ...] = ()
                       ) -> Generator[Step, Any, tuple[Decimal, list[UsageGroup]]]:
    """``GET /v2/usage/detail?group_by=day,model`` from ``start`` to ``end`` (ISO-8601, UTC
    days): the window's total and what the service billed per day and model."""
    request = api_request("usage_detail", "GET", "account",
                          params={"start": start, "end": end, "group_by": "day,model"},
                          subject="what the key spent per day and model")
    answer = yield from exchange(request, policy, conn_id=conn_id, secrets=secrets)
    groups = answer.get("groups")
    if not isinstance(groups, list):
        raise KlingServerError(f"GET {request.path} answered without 'groups' "
                               f"(keys: {sorted(answer)}).")
    found = []
    for group in groups:
        if not isinstance(group, Mapping):
            continue
        counts = group.get("requests")
        charged = counts.get("charged") if isinstance(counts, Mapping) else None
        found.append(UsageGroup(day=str(group.get("day", "")), model=str(group.get("model", "")),
                                usd=_usd(group, "spend", request),
                                charged=charged if isinstance(charged, int) else 0))
    return _usd(answer, "spend", request), found
