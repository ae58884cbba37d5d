"""What the triggerer's shared event loop pays for Kling triggers: imports, and what waits keep.

Airflow imports a trigger's module inside the triggerer's event loop, so a heavy import stalls
every trigger of the deployment (a real 3.3 triggerer logged "async thread was blocked for
0.70 seconds" when the first Kling trigger arrived, nearly all of it aiohttp).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from kling_provider._wait.starting import import_off_loop


def test_the_trigger_module_leaves_the_http_stack_unimported() -> None:
    code = ("import sys, json, airflow.triggers.base\n"
            "import kling_provider.triggers.kling\n"
            "print(json.dumps([m for m in ('aiohttp', 'kling_provider._runtime.aiohttp_client', "
            "'kling_provider.hooks.kling') if m in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=120)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_the_hook_is_imported_in_a_worker_thread_once(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "kling_import_probe.py").write_text(
        "import threading\nTHREADS = [threading.current_thread().name]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "kling_import_probe", raising=False)

    async def twice() -> tuple[object, object]:
        return (await import_off_loop("kling_import_probe"),
                await import_off_loop("kling_import_probe"))

    first, second = asyncio.run(twice())
    assert first is second
    (imported_in,) = getattr(first, "THREADS")  # noqa: B009 - a module written by this test
    assert imported_in != threading.current_thread().name
