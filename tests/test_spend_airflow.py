"""Spend as Airflow shows it, from a real task run: StatsD metrics, prompt labels, Asset graph.

``airflow dags test kling_media_pipeline`` (three mapped generations, mapped downloads) runs
against the simulator with Airflow's own StatsD backend pointed at a UDP socket on loopback
(``[metrics] statsd_on``, InfluxDB-style tags). Then the packets and the metadata database are
read: the metric names, tags and values; each mapped generate task's label (its prompt); the
mapped download registered as a producer of ``kling://videos`` (the Asset graph's edge); the
Asset events' extras with credits, USD and generation time.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from kling_provider.testing.simulator import KlingSimulator
from tests.conftest import SECRET_KEY
from tests.test_dag_runs import AIRFLOW, ROOT, airflow_env

pytestmark = pytest.mark.integration

MODEL = "klingai/v2.1-master-text-to-video"
PROMPTS = [line for line in (ROOT / "dags" / "kling_prompts.txt").read_text().splitlines()
           if line.strip() and not line.startswith("#")]


class StatsdListener:
    """A UDP socket on loopback collecting StatsD lines (one packet may hold several)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port: int = self.sock.getsockname()[1]
        self.lines: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                continue
            self.lines.extend(data.decode().splitlines())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()

    def kling(self) -> list[tuple[str, dict[str, str], str, str]]:
        """(name, tags, value, type) of every ``kling.*`` line."""
        found = []
        for line in self.lines:
            head, _, rest = line.partition(":")
            name, *tags = head.split(",")
            value, _, kind = rest.partition("|")
            if ".kling." in f".{name}":
                found.append((name, dict(t.split("=", 1) for t in tags), value, kind))
        return found

    def env(self) -> dict[str, str]:
        """Airflow's StatsD backend pointed at this socket, with InfluxDB-style tags."""
        return {"AIRFLOW__METRICS__STATSD_ON": "True",
                "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
                "AIRFLOW__METRICS__STATSD_PORT": str(self.port),
                "AIRFLOW__METRICS__STATSD_INFLUXDB_ENABLED": "True"}


@pytest.fixture
def statsd() -> Iterator[StatsdListener]:
    listener = StatsdListener()
    yield listener
    listener.close()


def test_media_pipeline_metrics_labels_and_asset_graph(
        statsd: StatsdListener, airflow_db_template: Path, tmp_path: Path) -> None:
    home = tmp_path / "airflow"
    home.mkdir()
    shutil.copy(airflow_db_template, home / "airflow.db")
    with KlingSimulator(time_scale=2000, api_keys={SECRET_KEY}) as sim:
        env = {**os.environ, **airflow_env(home),
               "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
               "AIRFLOW_CONN_KLING_DEFAULT": json.dumps(
                   {"conn_type": "kling", "host": sim.base_url, "password": SECRET_KEY}),
               "AIRFLOW_VAR_KLING_OUTPUT_DIR": str(tmp_path / "videos"),
               "KLING_POLL_INTERVAL": "0.2", **statsd.env()}
        done = subprocess.run([AIRFLOW, "dags", "test", "kling_media_pipeline"], env=env,
                              capture_output=True, text=True, timeout=300)
        output = done.stdout + done.stderr
        assert done.returncode == 0 and "state=success" in output, output[-5000:]
        assert sim.ledger.count(method="POST") == 3
    metrics = statsd.kling()
    tags = {"model": MODEL}

    def sent(name: str) -> list[tuple[str, str]]:
        return [(v, k) for n, t, v, k in metrics if n == f"airflow.{name}" and t == tags]

    # Three prompts, each one paid generation of a 5 s v2.1-master video: $1.40, 2,800,000 credits.
    assert sent("kling.generation.submitted") == [("1", "c")] * 3, metrics
    assert sent("kling.generation.completed") == [("1", "c")] * 3
    assert sent("kling.credits_used") == [("2800000", "c")] * 3
    assert [float(v) for v, k in sent("kling.usd_spent")] == [pytest.approx(1.40)] * 3
    durations = sent("kling.generation.duration")
    assert len(durations) == 3 and all(k == "ms" and float(v) > 0 for v, k in durations)
    assert not sent("kling.generation.failed")

    db = sqlite3.connect(home / "airflow.db")
    labels = sorted(row[0] for row in db.execute(
        "SELECT rendered_map_index FROM task_instance WHERE dag_id = 'kling_media_pipeline' "
        "AND task_id = 'generate'"))
    # Each task is labelled by its prompt, cut at 60 characters.
    assert labels == sorted(p if len(p) <= 60 else p[:59] + "…" for p in PROMPTS)
    assert any(label.endswith("…") for label in labels)  # the paper boat's prompt has 61
    producers = {row[0] for row in db.execute(
        "SELECT r.task_id FROM task_outlet_asset_reference r JOIN asset a ON a.id = r.asset_id "
        "WHERE r.dag_id = 'kling_media_pipeline' AND a.uri LIKE 'kling://videos%'")}
    assert producers == {"download"}  # the mapped download is in the Asset graph
    extras = [json.loads(row[0]) for row in db.execute(
        "SELECT e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id "
        "WHERE a.uri LIKE 'kling://videos%'")]
    assert len(extras) == 3
    for extra in extras:
        assert extra["model"] == MODEL and extra["prompt"] in PROMPTS
        assert (extra["credits_used"], extra["usd_spent"], extra["estimated_usd"]) == (
            2800000, pytest.approx(1.40), pytest.approx(1.40))
        assert extra["generation_seconds"] > 0
    assert "2,800,000 credits, $1.40 (estimated before submitting: $1.40)." in output or \
        any("2,800,000 credits, $1.40" in p.read_text(errors="replace") for p in (home / "logs").rglob("*"))
