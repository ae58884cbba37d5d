"""The hook snippet of the README and of the docs' quick start, run verbatim against the simulator
started from its CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parent.parent / "README.md"


def _readme_snippet() -> str:
    snippet = re.search(r"<!-- readme-snippet: hook -->\n```python\n(.*?)```", README.read_text(), re.S)
    assert snippet is not None
    return snippet.group(1)


@pytest.mark.parametrize("source", ["README", "docs/snippets/hook_quickstart.py"])
def test_readme_snippet_creates_waits_and_downloads(tmp_path: Path, source: str) -> None:
    code = _readme_snippet() if source == "README" else (README.parent / source).read_text()
    assert len(code.strip().splitlines()) <= 12
    simulator = subprocess.Popen(
        [sys.executable, "-m", "kling_provider.testing.simulator", "--port", "0",
         "--time-scale", "3000"], stdout=subprocess.PIPE, text=True)
    try:
        assert simulator.stdout is not None
        base_url = json.loads(simulator.stdout.readline())["base_url"]
        code = code.replace("http://127.0.0.1:8765", base_url)  # any free port, same snippet
        done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                              text=True, timeout=120)
    finally:
        simulator.terminate()
        simulator.wait(timeout=10)
    assert done.returncode == 0, done.stderr[-3000:]
    video = (tmp_path / "raccoon.mp4").read_bytes()
    assert video[4:8] == b"ftyp"
    assert "DownloadResult(uri='file://" in done.stdout
