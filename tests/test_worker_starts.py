"""Worker starts per generation, counted in real Airflow (issue 9, part 4).

One run of ``tests/dags/kling_worker_starts.py`` in a real cluster (api-server, scheduler,
dag-processor, triggerer, LocalExecutor; see ``test_real_airflow``) against the simulator. A
worker start is one ``PATCH /execution/task-instances/<id>/run`` answered 200: the first run of a
task and every resume after a deferral. The counts per task are printed as a table and checked:

- the default deferrable generate starts a worker twice (submit, then resume);
- ``end_from_trigger=True`` once (submit; the success ends in the triggerer), mapped too;
- a failed generation resumes on a worker even so (to fail with the API's message, or retry);
- the sensor with ``start_from_trigger`` and ``end_from_trigger`` never starts one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.test_real_airflow import ROOT, local_cluster, run_to_the_end

pytestmark = pytest.mark.integration

#: task id -> (worker starts per task instance, final state)
EXPECTED: dict[str, tuple[int, str]] = {
    "resumes_on_worker": (2, "success"),
    "ends_in_triggerer": (1, "success"),
    "mapped_ends_in_triggerer": (1, "success"),
    "fails_on_worker": (2, "failed"),
    "submit": (1, "success"),
    "sensor_in_triggerer": (0, "success"),
}


def test_worker_starts_per_generation(tmp_path: Path, airflow_db_template: Path) -> None:
    with local_cluster(tmp_path, airflow_db_template, ROOT / "tests" / "dags") as (airflow, sim):
        api = airflow.api
        run, instances = run_to_the_end(airflow, "kling_worker_starts")
        rows = sorted((ti["task_id"], ti["map_index"], ti["state"], airflow.worker_starts(ti["id"]))
                      for ti in instances)
        print("\nworker starts per task instance (real Airflow, LocalExecutor)")
        print(f"{'task':<28}{'map index':>10}{'state':>10}{'worker starts':>15}")
        for task_id, map_index, state, starts in rows:
            print(f"{task_id:<28}{map_index:>10}{state:>10}{starts:>15}")

        seen = {(task_id, map_index): (starts, state) for task_id, map_index, state, starts in rows}
        expected = {(task_id, index): EXPECTED[task_id]
                    for task_id, index in seen if task_id in EXPECTED}
        assert seen == expected, airflow.diagnostics()
        assert {task_id for task_id, _ in seen} == set(EXPECTED)
        assert sorted(index for task_id, index in seen
                      if task_id == "mapped_ends_in_triggerer") == [0, 1]

        # What the triggerer pushed is what a worker would have: the return value and video URL.
        def xcom(task_id: str, key: str, map_index: int = -1) -> Any:
            entry = api.get(f"{run}/taskInstances/{task_id}/xcomEntries/{key}",
                            params={"map_index": map_index}).json()
            value = entry["value"]  # the REST API serialises values as JSON text
            return json.loads(value) if isinstance(value, str) else value

        for task_id, map_index in (("ends_in_triggerer", -1), ("mapped_ends_in_triggerer", 1),
                                   ("sensor_in_triggerer", -1)):
            result = xcom(task_id, "return_value", map_index)
            assert result["status"] == "completed"
            assert result["video_url"].startswith(sim.cdn_url)
            assert xcom(task_id, "video_url", map_index) == result["video_url"]
        submitted = xcom("submit", "return_value")
        assert xcom("sensor_in_triggerer", "return_value")["generation_id"] == \
            submitted["generation_id"]
        assert sim.ledger.count(method="POST") == 6  # one paid create per generate instance

        # The spend line the triggerer logs when it ends a paying task carries the DAG run's
        # running total, read through the triggerer's XCom access, like a worker's.
        logs = [p for p in (airflow.home / "logs").rglob("attempt=*.log*")
                if p.parent.name == "task_id=ends_in_triggerer" and ".trigger." in p.name]
        ended = "".join(p.read_text(errors="replace") for p in logs)
        generation_id = xcom("ends_in_triggerer", "return_value")["generation_id"]
        assert f"Generation {generation_id} finished in " in ended, [p.name for p in logs]
        assert "This DAG run so far: " in ended, ended[-2000:]
