"""The simulator's generation endpoints: create (POST) and poll (GET), on both endpoint families.

Registered in :mod:`._routes`; the state they read and change is the simulator's
(:mod:`._service`). Here are the rules of one request, in the order the API applies them: the
key, injected faults, a withdrawn model (404), the request contract (400), scripted refusals and
the balance (403: nothing created), then the create and the faults that lose its answer -- the
paths a provider must survive without paying twice.
"""

from __future__ import annotations

import json
import time
from http import HTTPStatus
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from kling_provider.catalogue import ENDPOINT_FAMILIES, endpoint_path
from kling_provider.testing import _billing, _contract, _retirements, _usage
from kling_provider.testing.records import Faults

if TYPE_CHECKING:
    from urllib.parse import SplitResult

    from kling_provider.testing._http import SimulatorHandler

__all__ = ["FAMILY_BY_PATH", "FAULTS_FIELD", "REFUSALS", "create", "poll"]

#: Field a request body may carry to choose faults for the generation it creates.
FAULTS_FIELD = "simulator_faults"
#: The endpoint family of each generation path (the route table serves these).
FAMILY_BY_PATH = {endpoint_path(f): f for f in ENDPOINT_FAMILIES}

#: The messages of the definite refusals ``Faults.refusals`` scripts (the API's own words).
REFUSALS = {
    400: "Body validation error\nRequired: 'prompt'",
    401: "This request requires a valid API key. You can create a new API key on the Billing "
         "page: https://aimlapi.com/app/keys",
    403: _billing.NO_CREDITS_MESSAGE,
    404: "Not Found",
}


def poll(h: SimulatorHandler, url: SplitResult) -> None:
    """``GET ...?generation_id=``: the generation's state (charged once, when first completed)."""
    if not h.authorised():
        return None
    generation_id = (parse_qs(url.query).get("generation_id") or [""])[0]
    sim = h.simulator
    with sim._lock:
        generation = sim._generations.get(generation_id)
    if h.injected(sim.faults, generation_id or None):
        return None
    if h.take_drop(sim.faults):  # global, like the statuses: a poll or a probe too
        return h.drop(generation_id or None)
    if generation is None:
        return h.error(404, f"Generation {generation_id!r} not found", generation_id or None)
    if h.injected(generation.faults, generation_id):
        return None
    if h.take_drop(generation.faults):
        return h.drop(generation_id)
    with sim._lock:
        state = sim._state(generation)
        usd = generation.usd if generation.charged else 0.0
    return h.send_json(200, state, _billing.cost_headers(usd), generation_id=generation_id)


def create(h: SimulatorHandler, url: SplitResult) -> None:
    """``POST``: start one generation, or refuse, or lose the answer as ``Faults`` scripts."""
    sim = h.simulator
    # Read the body before any answer: leftover bytes would corrupt the keep-alive stream.
    try:
        body = h.body()
    except ValueError:
        body = None
    family = FAMILY_BY_PATH[url.path]
    if not h.authorised():
        return None
    if h.injected(sim.faults, None):
        return None
    gone = sim.retirements.withdrawn(body.get("model") if isinstance(body, dict) else None)
    if gone is not None:  # the real API's answer to a withdrawn model
        return h.error(404, _retirements.withdrawn_message(gone))
    requested = body.pop(FAULTS_FIELD, None) if isinstance(body, dict) else None
    try:
        faults = Faults.from_dict(requested) if requested else Faults()
    except (TypeError, ValueError) as exc:
        return h.error(400, f"Body validation error\n{FAULTS_FIELD}: {exc}")
    try:
        model, request = sim._accept(family, body)
    except _contract.ContractError as exc:
        return h.error(400, str(exc))
    with sim._lock:
        refusal = sim.faults.refusals.pop(0) if sim.faults.refusals else None
        if refusal is None and faults.refusals:  # per body: its first creates, in turn
            key = json.dumps(request, sort_keys=True, default=str)
            seen = sim._refused_bodies.get(key, 0)
            sim._refused_bodies[key] = seen + 1
            refusal = faults.refusals[seen] if seen < len(faults.refusals) else None
    if refusal is not None:  # a definite refusal: nothing is created
        sim._refuse(h.client_request_id(), model)
        return h.error(refusal, REFUSALS.get(refusal, HTTPStatus(refusal).phrase))
    if sim.balance_usd <= 0:
        sim._refuse(h.client_request_id(), model)
        return h.error(403, _billing.NO_CREDITS_MESSAGE)
    client_id = h.client_request_id()
    if faults.refuse_before_create:
        with sim._lock:
            refused = sim._refused.get(client_id or "", 0)
            sim._refused[client_id or ""] = refused + 1
        if refused < faults.refuse_before_create:
            return h.error(429, "Too Many Requests", headers={"Retry-After": "1"})
    generation = sim._create(model, family, _contract.duration_of(request), faults, client_id)
    generation.usd = _billing.price_of(sim.price_list, model, request)
    generation.key_prefix = _usage.caller_prefix(h.headers.get("Authorization", ""))
    sim._surround(generation)
    if faults.create_delay:
        time.sleep(faults.create_delay)
    if faults.create_drop or h.take_drop(sim.faults):
        return h.drop(generation.generation_id)  # created, but the answer is lost
    if faults.create_status:
        return h.error(faults.create_status, HTTPStatus(faults.create_status).phrase,
                       generation.generation_id)
    if faults.create_garbled:
        return h.send(200, b"<html><body>upstream hiccup</body></html>", "text/html",
                      None, generation.generation_id)
    return h.send_json(200, {"id": generation.generation_id, "status": "queued"},
                       _billing.cost_headers(0.0), generation_id=generation.generation_id)
