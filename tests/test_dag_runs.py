"""Example DAGs run by ``airflow dags test`` against the simulator, in a throwaway Airflow home.

Covers dynamic task mapping + deferral + download + ffprobe/ffmpeg in the media pipeline, and a
sweep of everything a run leaves behind (metadata DB with XCom, rendered templates and trigger
rows; every log file; the command's output) for the API key.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kling_provider.testing.simulator import KlingSimulator
from tests.conftest import SECRET_KEY

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
AIRFLOW = str(Path(sys.executable).parent / "airflow")

RunDag = Callable[[str], tuple[Path, Path, str, KlingSimulator]]


@pytest.fixture
def run_dag(airflow_db_template: Path, tmp_path: Path) -> Iterator[RunDag]:
    """Run one example DAG with ``airflow dags test``; return (home, videos, output, simulator)."""
    simulators: list[KlingSimulator] = []

    def run(dag_id: str) -> tuple[Path, Path, str, KlingSimulator]:
        home = tmp_path / "airflow"
        home.mkdir()
        shutil.copy(airflow_db_template, home / "airflow.db")
        videos = tmp_path / "videos"
        sim = KlingSimulator(time_scale=2000, api_keys={SECRET_KEY}).start()
        simulators.append(sim)
        env = {**os.environ, **airflow_env(home), "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
               "AIRFLOW_CONN_KLING_DEFAULT": json.dumps(
                   {"conn_type": "kling", "host": sim.base_url, "password": SECRET_KEY}),
               "AIRFLOW_VAR_KLING_OUTPUT_DIR": str(videos), "KLING_POLL_INTERVAL": "0.2"}
        done = subprocess.run([AIRFLOW, "dags", "test", dag_id], env=env, capture_output=True,
                              text=True, timeout=300)
        output = done.stdout + done.stderr
        assert done.returncode == 0, output[-5000:]
        assert "DagRun Finished" in output and "state=success" in output, output[-5000:]
        return home, videos, output, sim

    yield run
    for sim in simulators:
        sim.stop()


def airflow_env(home: Path) -> dict[str, str]:
    return {"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}"}


def test_media_pipeline_end_to_end(run_dag: RunDag) -> None:
    _, videos, output, sim = run_dag("kling_media_pipeline")
    clips = sorted(videos.rglob("*.mp4"))
    assert sim.ledger.count(method="POST") == 3
    ids = sim.generation_ids()
    # one per prompt, mapped, into one day folder, each named after and holding its generation
    assert sorted(c.name for c in clips) == sorted(f"{i.split(':')[0]}.mp4" for i in ids)
    assert len({c.parent for c in clips}) == 1
    for generation_id in ids:
        clip = clips[0].parent / f"{generation_id.split(':')[0]}.mp4"
        assert clip.read_bytes() == sim.video_of(generation_id)
    if shutil.which("ffprobe") and shutil.which("ffmpeg"):
        probes = [json.loads(c.with_suffix(".probe.json").read_text()) for c in clips]
        assert [(p["codec"], p["width"], p["height"]) for p in probes] == [("h264", 160, 90)] * 3
        assert all(p["duration"] == pytest.approx(1.0) for p in probes)
        assert all(Path(p["thumbnail"]).read_bytes()[:2] == b"\xff\xd8" for p in probes)  # JPEG
    else:
        assert "ffprobe is not installed" in output


def test_api_key_leaves_no_trace(run_dag: RunDag) -> None:
    home, videos, output, sim = run_dag("kling_raccoon")
    assert sim.ledger.count(method="POST") == 1
    assert len(list(videos.rglob("*.mp4"))) == 1
    key = SECRET_KEY.encode()
    leaks = [str(p.relative_to(home)) for p in home.rglob("*") if p.is_file()
             and key in p.read_bytes()]
    assert leaks == []  # airflow.db (XCom, rendered fields, triggers), task and trigger logs
    assert SECRET_KEY not in output
    # The sweep could find it: the key did reach the API, in the Authorization header.
    assert sim.ledger.entries(method="POST")[0].headers["authorization"] == f"Bearer {SECRET_KEY}"
