"""The documentation site: every code block in it comes from a tested file, and those files run.

`make docs` builds it with warnings as errors (and `make test` runs `make docs`); here: no code is
written inline in a page, each included snippet is run by a test in this file (or is an example
DAG, which the DAG tests run), and the pages that list data agree with the code.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from docs.snippets.test_my_dag import test_my_video_task  # run here, as a user's test
from kling_provider.operators.kling import KlingDownloadVideoOperator, KlingGenerateVideoOperator
from kling_provider.testing.simulator import KlingSimulator
from tests.conftest import context_for

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.rst") if not p.relative_to(DOCS).parts[0].startswith("_"))
BIN = Path(sys.executable).parent

# Collected here as a test of this suite; it starts a real server, so it is an integration test.
test_my_video_task = pytest.mark.integration(test_my_video_task)


def _included(page: Path) -> list[Path]:
    return [(page.parent / m).resolve()
            for m in re.findall(r"^\s*\.\. literalinclude:: (\S+)", page.read_text(), re.M)]


def test_pages_have_no_inline_code_only_included_files_that_tests_use() -> None:
    assert len(PAGES) >= 10
    tests_text = "\n".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py"))
    for page in PAGES:
        text = page.read_text()
        inline = re.findall(r"^\s*\.\. (?:code-block|code|sourcecode|highlight)::.*$", text, re.M)
        inline += [line for line in text.splitlines()
                   if line.rstrip().endswith("::") and not line.lstrip().startswith("..")]
        assert not inline, f"{page.name}: inline code {inline}; include a tested file instead"
        for target in _included(page):
            assert target.exists(), f"{page.name} includes missing {target}"
            where = target.relative_to(ROOT)
            if where.parts[0] == "dags":
                continue  # every example DAG is imported and run by the DAG tests
            assert where.parts[:2] == ("docs", "snippets"), f"{page.name} includes {where}"
            module = ".".join(where.with_suffix("").parts)
            assert target.name in tests_text or module in tests_text, f"no test runs {where}"


def test_every_snippet_is_shown_somewhere() -> None:
    shown = {target for page in PAGES for target in _included(page)}
    assert set((DOCS / "snippets").iterdir()) - {DOCS / "snippets" / "__pycache__"} <= shown


def _table_keys(page: str, css_class: str) -> list[str]:
    text = (DOCS / page).read_text()
    block = text.split(f":class: {css_class}", 1)[1].split("\n\n", 2)[1]
    return re.findall(r"^   \* - ``(\w+)``", block, re.M)


@pytest.mark.integration
def test_returns_page_lists_exactly_what_the_operators_return(
        airflow_sim: KlingSimulator, tmp_path: Path) -> None:
    generate = KlingGenerateVideoOperator(task_id="g", model="klingai/v2.1-master-text-to-video",
                                          prompt="p", deferrable=False, poll_interval=60)
    result = generate.execute(context_for(None))
    assert list(result) == _table_keys("returns.rst", "kling-generation-result")
    download = KlingDownloadVideoOperator(task_id="d", generation=result,
                                          destination=str(tmp_path / "v.mp4"))
    stored = download.execute(context_for(None))
    assert list(stored) == _table_keys("returns.rst", "kling-download-result")


@pytest.mark.integration
def test_hook_quickstart_snippet_runs_against_the_simulator_cli(tmp_path: Path) -> None:
    code = (DOCS / "snippets" / "hook_quickstart.py").read_text()
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
    assert (tmp_path / "raccoon.mp4").read_bytes()[4:8] == b"ftyp"
    assert "DownloadResult(uri='file://" in done.stdout


@pytest.mark.integration
def test_connection_env_snippet_configures_the_hook() -> None:
    probe = ("from kling_provider.hooks.kling import KlingHook; s = KlingHook().settings; "
             "print(s.endpoint_family, s.base_url, s.api_key)")
    done = subprocess.run(
        ["bash", "-c", f'source "{DOCS / "snippets" / "connection_env.sh"}" && '
                       f'"{sys.executable}" -c "{probe}"'],
        capture_output=True, text=True, timeout=120, check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN")})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-4:] == ["legacy", "https://api.aimlapi.com", "<your", "key>"]


@pytest.mark.integration
def test_test_connection_snippet_enables_the_button(tmp_path: Path) -> None:
    (tmp_path / "airflow.cfg").write_text((DOCS / "snippets" / "test_connection.cfg").read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["AIRFLOW_HOME"] = str(tmp_path)
    got = subprocess.run([str(BIN / "airflow"), "config", "get-value", "core", "test_connection"],
                         capture_output=True, text=True, env=env, timeout=120, check=False)
    assert got.stdout.strip().splitlines()[-1] == "Enabled", got.stderr[-2000:]
    (tmp_path / "airflow.cfg").write_text("")
    default = subprocess.run([str(BIN / "airflow"), "config", "get-value", "core", "test_connection"],
                             capture_output=True, text=True, env=env, timeout=120, check=False)
    assert default.stdout.strip().splitlines()[-1] == "Disabled"  # what the docs say is the default


def test_docstrings_name_one_parameter_per_field() -> None:
    """``:param a: / :param b:`` renders as one garbled entry in the API reference."""
    merged = [f"{path.relative_to(ROOT)}:{number}"
              for path in (ROOT / "kling_provider").rglob("*.py")
              for number, line in enumerate(path.read_text().splitlines(), 1)
              if re.search(r":param \w+: /", line)]
    assert merged == []


README = ROOT / "README.md"


def test_readme_install_commands_are_the_tested_snippet() -> None:
    block = re.search(r"## Install\n.*?```bash\n(.*?)```", README.read_text(), re.S)
    assert block is not None
    snippet = (DOCS / "snippets" / "install.sh").read_text().splitlines()
    assert block.group(1).splitlines() == [line for line in snippet if not line.startswith("#")]


def test_readme_model_counts_are_the_catalogues() -> None:
    from kling_provider.catalogue import get_model, list_models

    models = list_models()
    pairs = sum(len(spec.families) for spec in map(get_model, models) if spec is not None)
    assert f"{len(models)} Kling models, {pairs} model x endpoint combinations" in README.read_text()


def test_readme_links_lead_somewhere() -> None:
    links = re.findall(r"\]\(((?!https?://)[^)#]+)", README.read_text())
    assert links
    missing = [link for link in links if not (ROOT / link).exists()]
    assert missing == []


def test_make_commands_the_readme_and_docs_name_are_makefile_targets() -> None:
    targets = set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.M))
    named = set()
    for page in (README, DOCS / "development.rst", DOCS / "gallery.rst"):
        named |= set(re.findall(r"\bmake ([a-z][a-z-]*)", page.read_text()))
    assert {"demo", "airflow", "stop"} <= named
    assert named - targets == set()


def test_make_bench_runs_every_benchmark() -> None:
    makefile = (ROOT / "Makefile").read_text()
    recipe = makefile.split("\nbench:", 1)[1].split("\n\n", 1)[0]
    run = set(re.findall(r"benchmarks/(\w+\.py)", recipe))
    assert run == {path.name for path in (ROOT / "benchmarks").glob("*.py")}
