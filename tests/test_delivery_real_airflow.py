"""Every paid video reaches its destination, proven in real Airflow with runs without a logical date.

One real cluster (api-server, scheduler, dag-processor, triggerer; see ``test_real_airflow``)
against the simulator. Every example DAG is triggered through the REST API with
``logical_date: null`` (what ``airflow dags trigger`` and API clients do in Airflow 3; the
catalog DAG also runs Asset-triggered, which never has one): all must succeed. ``airflow dags
test`` would not do: it always sets a logical date (``args.logical_date or utcnow()``).

Then the media pipeline runs a second time: its three new generations go into the same day
folder, each under its own name with its own bytes, and no download reports a file of the first
run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kling_provider.testing.simulator import KlingSimulator
from tests import test_real_airflow
from tests.test_real_airflow import AirflowCluster

pytestmark = pytest.mark.integration
cluster = test_real_airflow.cluster  # the same real cluster fixture

EXAMPLES = ["kling_raccoon", "kling_dragon", "kling_image_to_video", "kling_submit_then_sense",
            "kling_media_pipeline", "kling_video_catalog"]


def trigger(airflow: AirflowCluster, dag_id: str) -> str:
    answer = airflow.api.post(f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None})
    assert answer.status_code == 200, answer.text
    run = answer.json()
    assert run["logical_date"] is None
    return str(run["dag_run_id"])


def finished(airflow: AirflowCluster, dag_id: str, run_id: str) -> str:
    def state() -> str | None:
        value = airflow.api.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}").json()["state"]
        return str(value) if value in ("success", "failed") else None

    result: str = airflow.wait_for(f"{dag_id} run {run_id} to finish", state)
    return result


def xcom(airflow: AirflowCluster, dag_id: str, run_id: str, task_id: str,
         map_index: int = -1) -> Any:
    entry = airflow.api.get(
        f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/"
        f"return_value", params={"map_index": map_index}).json()
    value = entry["value"]
    return json.loads(value) if isinstance(value, str) else value


def pipeline_downloads(airflow: AirflowCluster, run_id: str) -> list[dict[str, Any]]:
    return [xcom(airflow, "kling_media_pipeline", run_id, "download", i) for i in range(3)]


def check_delivered(downloads: list[dict[str, Any]], sim: KlingSimulator) -> None:
    """Each download names its own file holding exactly its own generation's bytes."""
    paths = [Path(d["uri"].removeprefix("file://")) for d in downloads]
    assert len(set(paths)) == len(paths) == 3
    assert len({p.parent for p in paths}) == 1  # one folder
    for download, path in zip(downloads, paths, strict=True):
        assert download["downloaded"] is True
        assert path.name == download["generation_id"].split(":")[0] + ".mp4"
        assert path.read_bytes() == sim.video_of(download["generation_id"])


def test_every_example_without_logical_date_and_pipeline_rerun(
        cluster: tuple[AirflowCluster, KlingSimulator], tmp_path: Path) -> None:
    airflow, sim = cluster
    for dag_id in EXAMPLES:
        def parsed(dag_id: str = dag_id) -> bool:
            return airflow.api.get(f"/api/v2/dags/{dag_id}").status_code == 200

        airflow.wait_for(f"DAG {dag_id} to be parsed", parsed)
        errors = airflow.api.get("/api/v2/importErrors").json()["import_errors"]
        assert errors == [], errors
        assert airflow.api.patch(f"/api/v2/dags/{dag_id}",
                                 json={"is_paused": False}).status_code == 200
    runs = {dag_id: trigger(airflow, dag_id) for dag_id in EXAMPLES}
    states = {dag_id: finished(airflow, dag_id, run_id) for dag_id, run_id in runs.items()}
    assert states == dict.fromkeys(EXAMPLES, "success"), airflow.diagnostics()
    # download_to stores the way the download operator does: its copy is a kling://videos event
    # too (the videos page plays only a video an event names).
    dragon = xcom(airflow, "kling_dragon", runs["kling_dragon"], "generate")
    events = airflow.api.get("/api/v2/assets/events", params={
        "source_dag_id": "kling_dragon", "source_run_id": runs["kling_dragon"]}).json()
    assert [(e["source_task_id"], e["uri"].rstrip("/"), e["extra"].get("generation_id"),
             e["extra"].get("uri")) for e in events["asset_events"]] == [
        ("generate", "kling://videos", dragon["generation_id"], dragon["uri"])]  # Airflow adds "/"

    first = pipeline_downloads(airflow, runs["kling_media_pipeline"])
    check_delivered(first, sim)
    # Unpausing the @daily pipeline also starts a scheduled run (with a logical date): it must
    # succeed as well. 3 generations per pipeline run, one for each other generating example.
    pipeline_runs = airflow.api.get("/api/v2/dags/kling_media_pipeline/dagRuns").json()["dag_runs"]
    for run in pipeline_runs:
        assert finished(airflow, "kling_media_pipeline", run["dag_run_id"]) == "success"
    assert sim.ledger.count(method="POST") == 4 + 3 * len(pipeline_runs)

    second_run = trigger(airflow, "kling_media_pipeline")
    assert finished(airflow, "kling_media_pipeline", second_run) == "success", \
        airflow.diagnostics()
    second = pipeline_downloads(airflow, second_run)
    check_delivered(second, sim)
    pipeline_folder = Path(first[0]["uri"].removeprefix("file://")).parent.parent
    stored = list(pipeline_folder.rglob("*.mp4"))  # day folders: nothing replaced, all kept
    assert len(stored) == 3 * (len(pipeline_runs) + 1)
    assert not {d["generation_id"] for d in first} & {d["generation_id"] for d in second}
    assert not {d["uri"] for d in first} & {d["uri"] for d in second}  # no old file reported
    for download in first:  # and the first run's videos are untouched
        path = Path(download["uri"].removeprefix("file://"))
        assert path.read_bytes() == sim.video_of(download["generation_id"])

    # The Asset-triggered catalog runs (no logical date either) all succeeded and list videos.
    catalog = airflow.api.get("/api/v2/dags/kling_video_catalog/dagRuns").json()["dag_runs"]
    assert {r["run_type"] for r in catalog} >= {"asset_triggered", "manual"}
    assert [r["logical_date"] for r in catalog] == [None] * len(catalog)
    assert all(r["state"] in ("success", "queued", "running") for r in catalog), catalog
    airflow.wait_for("every catalog run to finish", lambda: all(
        r["state"] == "success" for r in airflow.api.get(
            "/api/v2/dags/kling_video_catalog/dagRuns").json()["dag_runs"]))
    listed = {v["generation_id"] for m in (tmp_path / "videos").rglob("manifest*.json")
              for v in json.loads(m.read_text())["videos"]}
    assert {d["generation_id"] for d in first} <= listed
