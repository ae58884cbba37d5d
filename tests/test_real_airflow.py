"""Proof in real Airflow: scheduler, dag-processor, triggerer and api-server as separate processes.

``airflow dags test`` runs triggers inline, where connections resolve differently than in a real
triggerer, so this test starts the real processes (SQLite metadata DB, LocalExecutor) against the
simulator, triggers the raccoon DAG through the REST API and checks, through the REST API, that
the task deferred, the triggerer completed it, the run succeeded, XCom holds the video URL, the
extra link resolves, the download's Asset event ran the catalog DAG, and exactly one paid POST
was made. Every process started is stopped (process groups) at the end.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kling_provider.gallery import gallery_link
from kling_provider.testing.simulator import KlingSimulator
from tests.conftest import SECRET_KEY, connection_json
from tools import cluster as shared
from tools.cluster import AIRFLOW, ROOT, free_port

__all__ = ["AIRFLOW", "ROOT", "AirflowCluster", "cluster_env", "free_port", "local_cluster"]

pytestmark = pytest.mark.integration


class AirflowCluster(shared.AirflowCluster):
    """The shared local cluster (``tools.cluster``) plus what only the tests read of it."""

    def worker_starts(self, ti_id: str) -> int:
        """How many times a worker started this task instance, read off the API server's access
        log (Airflow 3.3's ``http.access`` lines). Each start (a first run, or a resume after a
        deferral) begins with ``PATCH /execution/task-instances/<id>/run``; a worker whose call
        timed out sends it again, so consecutive ``run`` calls with no other request of that task
        instance between them are one start."""
        prefix = f"path=/execution/task-instances/{ti_id}/"
        starts, previous_was_run = 0, False
        for line in self.log_tail("api-server", size=50_000_000).splitlines():
            if prefix not in line:
                continue
            is_run = "method=PATCH" in line and f"{prefix}run " in line
            starts += is_run and not previous_was_run
            previous_was_run = is_run
        return starts


def cluster_env(home: Path, port: int, sim: KlingSimulator, videos: Path,
                overrides: dict[str, str]) -> dict[str, str]:
    """Settings every test cluster shares (``tools.cluster``), against ``sim``; the tests'
    clusters let every caller act as an admin and parse each DAG file once."""
    return shared.cluster_env(home, port, connection=connection_json(sim.base_url),
                               videos=videos, overrides={
                                   "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                                   # Each DAG file parsed once: no test edits one while its
                                   # cluster runs, and re-parsing every file every 30 s was a
                                   # tenth of a cluster's CPU (the dag-processor's forks).
                                   "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
                                   **overrides})


@contextlib.contextmanager
def local_cluster(tmp_path: Path, airflow_db_template: Path, dags_folder: Path = ROOT / "dags",
                  ) -> Iterator[tuple[AirflowCluster, KlingSimulator]]:
    """SQLite + LocalExecutor cluster with a triggerer, against a simulator; all stopped after."""
    # A real clock here: real processes poll. 320 simulated seconds take 20 s. Not less: a trigger
    # firing seconds after the deferral races the scheduler's handling of the deferring try's
    # executor event, and Airflow 3.3.2 then fails the task (apache/airflow#67287, #72716).
    with KlingSimulator(time_scale=16, api_keys={SECRET_KEY}) as sim:
        port = free_port()
        home = tmp_path / "airflow"
        home.mkdir()
        env = cluster_env(home, port, sim, tmp_path / "videos",
                          {"AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder)})
        shutil.copy(airflow_db_template, home / "airflow.db")
        airflow = AirflowCluster(home, env, port)
        try:
            airflow.start_core(shared.TRIGGERER)
            yield airflow, sim
        finally:
            airflow.stop()
    leftovers = [n for n, p in airflow.processes.items() if p.poll() is None]
    assert leftovers == []


def run_to_the_end(airflow: AirflowCluster, dag_id: str) -> tuple[str, list[dict[str, Any]]]:
    """Unpause ``dag_id`` once parsed, trigger one run and wait for it to end; return the run's
    API path and its task instances."""
    api = airflow.api
    dag = f"/api/v2/dags/{dag_id}"
    airflow.wait_for("the DAG to be parsed", lambda: api.get(dag).status_code == 200)
    assert api.patch(dag, json={"is_paused": False}).status_code == 200
    answer = api.post(f"{dag}/dagRuns", json={"logical_date": None})
    assert answer.status_code == 200, answer.text
    run = f"{dag}/dagRuns/{answer.json()['dag_run_id']}"

    def finished() -> bool:
        return api.get(run).json()["state"] in ("success", "failed")

    airflow.wait_for("the run to finish", finished)
    instances: list[dict[str, Any]] = api.get(f"{run}/taskInstances").json()["task_instances"]
    return run, instances


@pytest.fixture
def cluster(tmp_path: Path,
            airflow_db_template: Path) -> Iterator[tuple[AirflowCluster, KlingSimulator]]:
    with local_cluster(tmp_path, airflow_db_template) as running:
        yield running


def test_raccoon_dag_in_real_airflow(cluster: tuple[AirflowCluster, KlingSimulator],
                                     tmp_path: Path) -> None:
    airflow, sim = cluster
    api = airflow.api
    started = time.monotonic()
    for dag_id in ("kling_raccoon", "kling_video_catalog"):
        url = f"/api/v2/dags/{dag_id}"

        def parsed(url: str = url) -> bool:
            return api.get(url).status_code == 200

        airflow.wait_for(f"DAG {dag_id} to be parsed", parsed)
        assert api.patch(f"/api/v2/dags/{dag_id}", json={"is_paused": False}).status_code == 200
    run = api.post("/api/v2/dags/kling_raccoon/dagRuns", json={"logical_date": None})
    assert run.status_code == 200, run.text
    run_id = run.json()["dag_run_id"]
    base = f"/api/v2/dags/kling_raccoon/dagRuns/{run_id}"

    seen: list[str] = []
    deferred_links: list[dict[str, Any]] = []

    def run_finished() -> str | None:
        ti = api.get(f"{base}/taskInstances/generate").json()
        if ti.get("state") and (not seen or seen[-1] != ti["state"]):
            seen.append(ti["state"])
        if ti.get("state") == "deferred" and not deferred_links:
            # The worker writes the links (finalize) just after it reports the deferral, so the
            # first look at a deferred task can come before them: look until they are there.
            links = api.get(f"{base}/taskInstances/generate/links").json()
            if links.get("extra_links", {}).get("Kling video") is not None:
                deferred_links.append(links)
        state = api.get(base).json()["state"]
        return str(state) if state in ("success", "failed") else None

    assert airflow.wait_for("the DAG run to finish", run_finished) == "success", \
        f"states seen: {seen}\n{airflow.diagnostics()}"
    assert "deferred" in seen, seen  # the wait left the worker ...

    generation_id = sim.generation_ids()[0]
    # ... and the triggerer polled for it: Airflow writes a trigger's log beside the task's
    # (attempt=N.log.trigger.<triggerer id>.log); the wait's own line must be there and only
    # there, and the simulator must have answered those polls.
    task_logs = [p for p in (airflow.home / "logs").rglob("attempt=*.log*")
                 if p.parent.name == "task_id=generate"]
    trigger_text = "".join(p.read_text(errors="replace") for p in task_logs if ".trigger." in p.name)
    worker_text = "".join(p.read_text(errors="replace") for p in task_logs
                          if ".trigger." not in p.name)
    waiting_line = f"Generation {generation_id} is "
    assert waiting_line in trigger_text and "(poll " in trigger_text, \
        f"triggerer did not poll: {[p.name for p in task_logs]}"
    assert "Trigger fired event" in trigger_text
    assert "(poll " not in worker_text  # the worker never polled
    assert sim.ledger.count(method="GET", origin="api", generation_id=generation_id) >= 1

    xcom = api.get(f"{base}/taskInstances/generate/xcomEntries/return_value").json()
    value = xcom["value"] if isinstance(xcom["value"], dict) else json.loads(xcom["value"])
    assert value["video_url"].startswith(sim.cdn_url)
    assert value["generation_id"] == generation_id
    links = api.get(f"{base}/taskInstances/generate/links").json()
    # The connection form the UI renders, built from provider info alone.
    forms = {m["connection_type"]: m for m in api.get("/ui/connections/hook_meta").json()}
    form = forms["kling"]
    assert form["hook_name"] == "Kling (AI/ML API)"
    assert form["standard_fields"]["password"]["title"] == "API Key"
    assert form["standard_fields"]["login"]["hidden"] is True
    assert {"endpoint_family", "timeout", "max_retries"} <= set(form["extra_fields"])
    # The link opens the gallery at the generation, not the expiring CDN URL; inside Airflow's
    # navigation, and already while the task is deferred (its card in flight).
    assert links["extra_links"]["Kling video"] == gallery_link(generation_id)
    assert gallery_link(generation_id).startswith("/plugin/kling-videos/kling/?")
    assert [d["extra_links"].get("Kling video") for d in deferred_links] == \
        [gallery_link(generation_id)]
    assert sim.ledger.count(method="POST") == 1

    videos = list((tmp_path / "videos").rglob("*.mp4"))
    assert len(videos) == 1
    assert videos[0].read_bytes()[4:8] == b"ftyp"

    # The download's Asset event schedules the catalog DAG, which writes a manifest.
    def catalog_done() -> bool:
        runs = api.get("/api/v2/dags/kling_video_catalog/dagRuns").json()["dag_runs"]
        return any(r["state"] == "success" for r in runs)

    airflow.wait_for("the Asset-scheduled catalog run", catalog_done)
    manifests = list((tmp_path / "videos").rglob("manifest*.json"))
    assert manifests, list((tmp_path / "videos").rglob("*"))
    manifest = json.loads(manifests[0].read_text())
    assert manifest["videos"][0]["generation_id"] == generation_id
    assert SECRET_KEY not in json.dumps(value) + manifests[0].read_text()
    print(f"real-Airflow run: {time.monotonic() - started:.1f} s after start-up; states {seen}")
