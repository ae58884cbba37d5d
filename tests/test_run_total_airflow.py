"""The spend line's running total in real Airflow, mapped generate tasks included (issue 18).

One run of ``tests/dags/kling_run_total.py`` in a real cluster (api-server, scheduler,
dag-processor, triggerer, LocalExecutor; see ``test_real_airflow``) against the simulator: two
mapped $1.40 variants, then a task ending in the triggerer, then one resuming on a worker. The
triggerer's line must count the mapped variants (read through its supervisor, which answers
single XCom reads only), and so must the worker's (one read per task id), although Airflow
3.3.2 gives back what the triggerer pushed as JSON text; the same text, given to a download as
``generation``, stores that generation's video.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_real_airflow import ROOT, local_cluster, run_to_the_end

pytestmark = pytest.mark.integration


def test_the_running_total_counts_mapped_variants(tmp_path: Path,
                                                  airflow_db_template: Path) -> None:
    with local_cluster(tmp_path, airflow_db_template, ROOT / "tests" / "dags") as (airflow, sim):
        _, instances = run_to_the_end(airflow, "kling_run_total")
        assert sorted(ti["state"] for ti in instances) == ["success"] * 5, airflow.diagnostics()

        def spend_lines(task_id: str) -> list[str]:
            logs = [p for p in (airflow.home / "logs").rglob("attempt=*.log*")
                    if p.parent.name == f"task_id={task_id}"]
            text = "".join(p.read_text(errors="replace") for p in logs)
            return [line for line in text.splitlines() if "This DAG run so far" in line]

        in_triggerer, on_worker = spend_lines("ends_in_triggerer"), spend_lines(
            "resumes_on_worker")
        print("\n" + "\n".join(in_triggerer + on_worker))
        assert len(in_triggerer) == 1 and "This DAG run so far: $4.20 for 3 generations" in \
            in_triggerer[0], in_triggerer
        assert len(on_worker) == 1 and "This DAG run so far: $5.60 for 4 generations" in \
            on_worker[0], on_worker
        assert sim.ledger.count(method="POST") == 4
        stored = list((tmp_path / "videos" / "run_total").glob("*.mp4"))
        assert len(stored) == 1, stored
        sidecar = json.loads(stored[0].with_name(stored[0].name + ".kling.json").read_text())
        assert sidecar["generation_id"].split(":")[0] == stored[0].stem
        assert stored[0].read_bytes() == sim.video_of(sidecar["generation_id"])
