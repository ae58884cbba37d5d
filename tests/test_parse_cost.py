"""What parsing a DAG file that uses this provider loads: only the classes and the literal checks.

Every DAG file parse pays for every module its imports load (``benchmarks/parse_cost.py`` prints
the milliseconds). The execute-time modules (hook, HTTP clients, triggers, submission rules,
pricing, metrics...) must stay out of a parse, while literal values are still checked there. A
fresh interpreter imports the operators and the sensor the way a DAG file does, builds one task
of each kind with literal values, and reports which of those modules got loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

AIRFLOW_3_1 = version("apache-airflow").startswith("3.1.")

#: Modules only a running task needs. Loading one of them when a DAG file is parsed is a
#: regression of the parse cost (each is named so the failure says which import came back).
EXECUTE_TIME_MODULES = (
    "kling_provider.hooks.kling",
    "kling_provider.operators._generate",
    "kling_provider.operators._submission",
    "kling_provider.operators._recover",
    "kling_provider.operators._record",
    "kling_provider.operators._download",
    "kling_provider.triggers.kling",
    "kling_provider._runtime.aiohttp_client",
    "kling_provider._api.protocol",
    "kling_provider._api.network",
    "kling_provider._wait.waiting",
    "kling_provider._storage.download",
    "kling_provider._task.submission",
    "kling_provider._task.intent",
    "kling_provider._task.recovery",
    "kling_provider._task.rate_budget",
    "kling_provider._money.pricing",
    "kling_provider._money.guard",
    # Model retirement: a parse reads the shipped snapshot and the cached feeds
    # (``_models.feeds``, ``_models.retirement``), never the feed itself; a task does.
    "kling_provider._api.service",
    "kling_provider._money.spend",
    "kling_provider._wait.schedule",
    "kling_provider._wait.timings",
    "kling_provider._storage.lineage",
    "kling_provider.metrics",
    "kling_provider.types",
    "httpx",
    "aiohttp",
    "airflow.triggers.base",
    "airflow.providers.common.compat.sdk",
    "difflib",
)

PARSE = """
import builtins, json, sys
import airflow.sdk
from airflow.sdk import DAG, Asset, BaseOperator, BaseSensorOperator, BaseOperatorLink
before = set(sys.modules)
# airflow.sdk has already loaded some execute-time modules (httpx), so `loaded` cannot show the
# provider importing them: the provider's own import statements are recorded as well.
real_import, imported = builtins.__import__, set()
def recording_import(name, globals=None, locals=None, fromlist=(), level=0):
    if level == 0 and str((globals or {}).get("__name__", "")).startswith("kling_provider"):
        imported.update([name, *(f"{name}.{item}" for item in fromlist or ())])
    return real_import(name, globals, locals, fromlist, level)
builtins.__import__ = recording_import
from kling_provider.exceptions import KlingValidationError
from kling_provider.operators.kling import (
    KlingDownloadVideoOperator, KlingImageToVideoOperator, KlingTextToVideoOperator)
from kling_provider.sensors.kling import KlingGenerationSensor
with DAG("parse_cost", schedule=None):
    KlingTextToVideoOperator(task_id="t", prompt="a raccoon", duration=5, aspect_ratio="16:9",
                             max_cost_usd=2, poll_interval=30, download_to="/tmp/videos/")
    KlingImageToVideoOperator(task_id="i", image_url="https://example.com/a.png",
                              prompt="{{ params.prompt }}")
    KlingDownloadVideoOperator(task_id="d", generation_id="{{ ti.xcom_pull('t') }}",
                               destination="/tmp/videos/{{ run_id }}/")
    KlingGenerationSensor(task_id="s", generation_id="abc", poll_schedule="fixed")
builtins.__import__ = real_import
loaded = sorted(set(sys.modules) - before)
# The checks still run in this same parse: a bad literal fails at construction.
try:
    KlingTextToVideoOperator(task_id="bad", prompt="a raccoon", duration=7)
    refused = None
except KlingValidationError as exc:
    refused = str(exc)
print(json.dumps({"loaded": loaded, "imported": sorted(imported), "refused": refused}))
"""


def parse_in_fresh_interpreter(env: dict[str, str] | None = None) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", PARSE], capture_output=True, text=True,
                          check=True, timeout=300, env=env)
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_parsing_loads_no_execute_time_module_and_still_checks_literals() -> None:
    result = parse_in_fresh_interpreter()
    loaded = result["loaded"]
    assert isinstance(loaded, list)
    assert "kling_provider.operators.kling" in loaded  # the subject was really imported here
    # Airflow 3.1's own parse loads common.compat.sdk (its standard provider's python operator
    # imports it while the DAG is built), so there it says nothing about this provider.
    airflow_loads = {"airflow.providers.common.compat.sdk"} if AIRFLOW_3_1 else set()
    assert [m for m in EXECUTE_TIME_MODULES if m in loaded and m not in airflow_loads] == []
    imported = result["imported"]
    assert isinstance(imported, list) and "kling_provider.exceptions" in imported
    assert [m for m in EXECUTE_TIME_MODULES if m in imported] == []
    refused = str(result["refused"])
    assert "'duration'=7" in refused and "must be one of" in refused


def test_a_parse_goes_by_the_cached_feed_without_a_request(tmp_path: Path) -> None:
    """With a cached feed that withdrew a model, the same parse refuses it (date, replacement)
    and still loads no client, hook or trigger: the feed is read from its cache file only."""
    from kling_provider._models.feeds import CACHE_DIR_VARIABLE, Feed, FeedCache
    from kling_provider._models.retirement import Retirement

    FeedCache(tmp_path).store(Feed("https://api.example.test", None, 0.0, (Retirement(
        "klingai/v2-master-text-to-video", (), "withdrawn", "2026-06-01", "2026-07-01",
        "klingai/v2.1-master-text-to-video"),)))
    code = PARSE.replace('task_id="bad", prompt="a raccoon", duration=7',
                         'task_id="bad", model="klingai/v2-master-text-to-video", prompt="p"'
                         ).replace("except KlingValidationError", "except Exception")
    assert code != PARSE
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=300,
                          env={**os.environ, CACHE_DIR_VARIABLE: str(tmp_path)})
    result = json.loads(done.stdout.strip().splitlines()[-1])
    airflow_loads = {"airflow.providers.common.compat.sdk"} if AIRFLOW_3_1 else set()
    assert [m for m in EXECUTE_TIME_MODULES
            if m in result["loaded"] and m not in airflow_loads] == []
    assert "kling_provider._models.feeds" in result["loaded"]
    refused = str(result["refused"])
    assert "withdrawn by the AI/ML API on 2026-07-01" in refused
    assert "replaced by 'klingai/v2.1-master-text-to-video'" in refused
