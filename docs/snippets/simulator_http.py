"""Every HTTP endpoint of the simulator, called as any client (or your own tests) would."""

from __future__ import annotations

import time
from typing import Any

import httpx

from kling_provider.testing._usage import UsageBook

MODEL = "klingai/v2-master-text-to-video"
CREATE = "/v2/generate/video/kling/generation"  # the unified family: /v2/video/generations


def create_and_poll(api: httpx.Client) -> str:
    """POST a generation, then GET it until it is completed; return its video URL."""
    created = api.post(CREATE, json={"model": MODEL, "prompt": "A fox", "duration": 5},
                       headers={"X-Client-Request-Id": "my-dag:run-1:generate"})
    assert created.status_code == 200
    assert created.json()["status"] == "queued"
    generation_id = created.json()["id"]  # "<uuid>:kling-video/v2/master/text-to-video"
    while (polled := api.get(CREATE, params={"generation_id": generation_id}).json())[
            "status"] != "completed":
        assert polled["status"] in ("queued", "generating")
        time.sleep(0.05)
    assert polled["meta"]["usage"]["tokens_used"] > 0  # the charge, in credits
    return str(polled["video"]["url"])


def video_from_cdn(video_url: str) -> bytes:
    """The video lives on the second origin (the "CDN"): no API key is sent there."""
    video = httpx.get(video_url)
    assert video.headers["Content-Type"] == "video/mp4"
    return video.content


def usage_logs(api: httpx.Client) -> list[dict[str, object]]:
    """``GET /v2/logs``: one row per finished generation, newest first, paged."""
    page = api.get("/v2/logs", params={"period": "1h", "model": MODEL, "limit": 100}).json()
    assert page["pagination"]["has_more"] is False  # more rows: ask again with offset=100
    return list(page["data"])  # each row: client_request_id, inference_id, status, cost...


def prices_and_balance(api: httpx.Client) -> tuple[float, float]:
    """The model list with prices (no key needed) and the balance (key needed)."""
    models = api.get("/v1/models", params={"include": "pricing", "id": MODEL})
    pricing = models.json()["data"][0]["pricing"]  # {"kind": "variants", ...}
    again = api.get("/v1/models", params={"include": "pricing", "id": MODEL},
                    headers={"If-None-Match": models.headers["ETag"]})
    assert again.status_code == 304  # unchanged since the ETag
    five_seconds = next(v["price"] for v in pricing["variants"] if v["when"]["duration"] == 5)
    balance = api.get("/v2/billing").json()["current_balance"]
    return float(five_seconds), float(balance)


def key_usage(api: httpx.Client, sim_usage: UsageBook, key: str
              ) -> tuple[float, list[dict[str, Any]]]:
    """``GET /v2/usage`` and ``/v2/usage/detail``: what the key spent, in total and per day and
    model; ``sim.usage.add_spend`` bills spend made outside the simulator to the same key."""
    sim_usage.add_spend("2.50", key=key, model="klingai/v2.1-master-text-to-video",
                        at=time.time() - 3600)  # another application, an hour ago
    total = api.get("/v2/usage", params={"period": "24h"}).json()
    assert total["api_key_prefix"] is None  # the caller's own key
    detail = api.get("/v2/usage/detail", params={"period": "7d", "group_by": "day,model"}).json()
    assert sum(g["requests"]["charged"] for g in detail["groups"]) == detail["requests"]
    other = api.get("/v2/usage", params={"period": "24h", "key_prefix": "someone0"})
    assert other.status_code == 403  # another key's spend needs a management key
    return float(total["spend"]), list(detail["groups"])  # each: day, model, spend, requests


def live_timings(api: httpx.Client) -> dict[str, int]:
    """``GET /models/metrics``: percentiles of recent generations' durations, per model."""
    metrics = api.get("/models/metrics", params={"aliases": MODEL}).json()
    return dict(metrics["models"][0]["metrics"]["duration_ms"])  # p50, p75, p90, p99


def faults_and_ledger(api: httpx.Client) -> dict[str, object]:
    """Script faults for the next requests, then read what the simulator saw."""
    api.post("/_simulator/faults", json={"refusals": [403]})  # the next create: no credits
    refused = api.post(CREATE, json={"model": MODEL, "prompt": "A fox"})
    assert refused.status_code == 403
    assert set(refused.json()) == {"message", "path", "requestId", "statusCode", "timestamp"}
    api.post("/_simulator/faults", json={})  # no more faults
    ledger: dict[str, object] = api.get("/_simulator/ledger").json()
    return ledger  # {"by_path": {"POST /v2/...": 2, ...}, "by_generation": {...}, "posts": 4}
