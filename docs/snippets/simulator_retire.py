"""Retiring a model in the simulator, and the deprecation feed it then publishes."""

from __future__ import annotations

from typing import Any

import httpx

from kling_provider.testing.simulator import KlingSimulator

MODEL = "klingai/v2-master-text-to-video"
REPLACEMENT = "klingai/v2.1-master-text-to-video"
CREATE = "/v2/generate/video/kling/generation"


def retire_in_process(sim: KlingSimulator) -> dict[str, Any]:
    """In a test holding the simulator: withdraw a model (dates default to the service's today)."""
    return sim.retirements.retire(MODEL, "withdrawn", replaced_by=REPLACEMENT)


def retire_over_http(api: httpx.Client) -> dict[str, Any]:
    """From another process: the same fields as JSON; ``"restore": true`` undoes it."""
    answer = api.post("/_simulator/retire", json={
        "model": REPLACEMENT, "status": "deprecated", "shutdown_at": "2099-12-31",
        "replaced_by": "klingai/video-v3-pro-text-to-video"})
    assert answer.status_code == 200  # a status or date the feed cannot hold: 400
    return dict(answer.json())


def read_the_feed(api: httpx.Client) -> list[dict[str, Any]]:
    """``GET /v1/models/deprecations`` (no key): newest first, ``If-None-Match`` gets 304."""
    first = api.get("/v1/models/deprecations")
    again = api.get("/v1/models/deprecations", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304
    assert again.content == b""  # unchanged: no body
    return list(first.json()["data"])


def create_a_withdrawn_model(api: httpx.Client) -> int:
    """A withdrawn model's creates get 404, as on the real service; nothing is created."""
    return api.post(CREATE, json={"model": MODEL, "prompt": "A fox"}).status_code
