"""Issue 7's acceptance: chaos on the production-shaped cluster, exactly one generation per task.

PostgreSQL + CeleryExecutor on Redis + triggerers, the ``kling_chaos`` DAG (``tests/dags``):
24 mapped generations with ``retries=3`` and a templated ``duration`` whose creates are answered
with the simulator's faults (answer lost after creating, 502 after creating, 429 before
creating, 5xx bursts while polling, a definite 403 refusal that creates nothing), the Celery
worker SIGKILLed while one create request is in flight, and the triggerer holding the waits
SIGKILLed mid-wait (a second one takes over). Meanwhile a neighbouring DAG generates the same
model, and the usage logs show each video only ``LOGS_LAG`` simulated seconds after it finished,
so every recovery searches late logs full of strangers' rows. Then a download of every video.
The test prints the figures: generations per task, videos downloaded and verified, tasks that
needed a human, wall time.
"""

from __future__ import annotations

import os
import re
import signal
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.test_production_cluster import production_cluster
from tests.test_real_airflow import ROOT
from tools.cluster import ClusterError

pytestmark = pytest.mark.integration

TASKS = 24
IN_FLIGHT_INDEX = 4  # tests/dags/kling_chaos.py: its create is answered 25 s late
#: 320 simulated seconds per generation take 20 s: a run of a few minutes, past Airflow's
#: defer/executor-event race (apache/airflow#67287) for most tasks.
TIME_SCALE = 16
#: Simulated seconds between a video finishing and its usage-logs row (15 s at TIME_SCALE).
LOGS_LAG = 240
NEIGHBOURS = 6  # tests/dags/kling_chaos.py: kling_chaos_neighbour's mapped tasks
REFUSED = [i for i in range(TASKS) if i % 6 == 5 and i != IN_FLIGHT_INDEX]  # first create: 403


def test_chaos_exactly_one_generation_per_task(tmp_path: Path) -> None:
    extra = {"KLING_CHAOS_TASKS": str(TASKS), "KLING_CHAOS_IN_FLIGHT": "25",
             "AIRFLOW__CORE__PARALLELISM": "32",
             # A SIGKILLed worker's tasks are noticed after 10 s without heartbeat, then retried.
             "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "10",
             "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2"}
    started_up = time.monotonic()
    with production_cluster(tmp_path, time_scale=TIME_SCALE, dags_folder=ROOT / "tests" / "dags",
                            extra_env=extra, concurrency=4) as (airflow, sim, queue):
        api = airflow.api
        sim.logs_lag = LOGS_LAG
        for dag_id in ("kling_chaos", "kling_chaos_neighbour"):
            dag_url = f"/api/v2/dags/{dag_id}"
            airflow.wait_for(f"DAG {dag_id} to be parsed", partial(_found, api, dag_url))
            api.patch(dag_url, json={"is_paused": False}).raise_for_status()
        run = api.post("/api/v2/dags/kling_chaos/dagRuns", json={"logical_date": None})
        run.raise_for_status()
        started = time.monotonic()
        run_url = f"/api/v2/dags/kling_chaos/dagRuns/{run.json()['dag_run_id']}"
        # The neighbour starts once the chaos run creates: same model, same minutes.
        airflow.wait_for("the chaos run's first create",
                         lambda: sim.ledger.count(method="POST", origin="api") > 0)
        neighbour = api.post("/api/v2/dags/kling_chaos_neighbour/dagRuns",
                             json={"logical_date": None})
        neighbour.raise_for_status()
        neighbour_url = (f"/api/v2/dags/kling_chaos_neighbour/dagRuns/"
                         f"{neighbour.json()['dag_run_id']}")

        # 1. The Celery worker dies (SIGKILL) while generate[4]'s create request is in flight.
        def in_flight() -> bool:
            return any(e.status is None and f":generate:{IN_FLIGHT_INDEX}"
                       in e.headers.get("x-client-request-id", "")
                       for e in sim.ledger.entries(method="POST", origin="api"))

        airflow.wait_for(f"generate[{IN_FLIGHT_INDEX}]'s create to be in flight", in_flight)
        os.killpg(airflow.processes["celery-worker"].pid, signal.SIGKILL)
        airflow.processes.pop("celery-worker").wait(timeout=10)
        worker_killed_at = time.monotonic() - started
        airflow.start("celery-worker-2", "celery", "worker", "--queues", queue,
                      "--concurrency", "4")

        # 2. The triggerer holding the waits dies (SIGKILL) mid-wait; a second one takes over.
        def tis() -> list[dict[str, Any]]:
            answer = api.get(f"{run_url}/taskInstances", params={"limit": 100}).json()
            return list(answer["task_instances"])

        def waits_held() -> int:
            polled = sim.ledger.count(method="GET", origin="api") > 0
            held = [t for t in tis() if t["state"] == "deferred" and t.get("triggerer_job")]
            return len(held) if polled and len(held) >= 3 else 0

        held_at_kill = airflow.wait_for("triggerer A to hold waits", waits_held)
        airflow.start("triggerer-b", "triggerer")
        time.sleep(3)  # let B register and heartbeat before A disappears
        os.killpg(airflow.processes["triggerer-a"].pid, signal.SIGKILL)
        airflow.processes.pop("triggerer-a").wait(timeout=10)
        triggerer_killed_at = time.monotonic() - started

        try:
            state = airflow.wait_for("the chaos run to finish", partial(_ended, api, run_url),
                                     timeout=420)
        except ClusterError as stuck:  # say which tasks held the run, beside the processes' logs
            left = sorted((t["task_id"], t["map_index"], t["state"], t["try_number"])
                          for t in tis() if t["state"] not in ("success", "failed", "skipped"))
            raise ClusterError(f"tasks not ended: {left}\n{stuck}") from None
        neighbour_state = airflow.wait_for("the neighbour run to finish",
                                           partial(_ended, api, neighbour_url), timeout=240)
        wall = time.monotonic() - started
        final = [t for t in tis() if t["task_id"] != "generate_timeout"]
        by_task = sim.generations_by_client_request_id()
        refusals = [e.headers.get("x-client-request-id", "") for e in sim.ledger.entries(
            method="POST", origin="api") if e.status == 403]
        durations = {g: sim._generations[g].duration
                     for ids in _per_index(by_task).values() for g in ids}
        videos = sorted((tmp_path / "videos").rglob("*.mp4"))
        verified = [v for v in videos
                    if v.read_bytes() == sim.video_of(_generation_of(v.stem, by_task))]
        diagnostics = airflow.diagnostics()

        # 3. Clearing, in real Airflow: generate_timeout failed (5 s timeout) while its paid
        # generation ran on; generate[0] succeeded. Clearing both: the first continues its
        # generation (no second payment), the second makes a new video.
        timed_out = api.get(f"{run_url}/taskInstances/generate_timeout").json()["state"]
        cleared = api.post("/api/v2/dags/kling_chaos/clearTaskInstances", json={
            "dag_run_id": run.json()["dag_run_id"], "dry_run": False, "only_failed": False,
            "task_ids": ["generate_timeout", ["generate", 0]]})
        cleared.raise_for_status()
        airflow.wait_for("the cleared tasks to run again",
                         lambda: api.get(run_url).json()["state"] == "success"
                         and api.get(f"{run_url}/taskInstances/generate/0").json()["state"]
                         == "success", timeout=240)
        after_clear = sim.generations_by_client_request_id()

    generations = _per_index(by_task)
    neighbours = _per_index(by_task, dag_id="kling_chaos_neighbour")
    human = sorted(f"{t['task_id']}[{t['map_index']}]={t['state']}" for t in final
                   if t["state"] != "success")
    retried = sorted(f"{t['task_id']}[{t['map_index']}]x{t['try_number']}" for t in final
                     if t["try_number"] > 1)
    per_task = [len(generations.get(i, [])) for i in range(TASKS)]
    print(f"\nchaos: {TASKS} mapped generate tasks, retries=3, time_scale={TIME_SCALE}; "
          f"worker SIGKILLed at {worker_killed_at:.0f} s with generate[{IN_FLIGHT_INDEX}]'s "
          f"create in flight; triggerer A SIGKILLed at {triggerer_killed_at:.0f} s holding "
          f"{held_at_kill} waits")
    print(f"chaos: generations created per task: {per_task} "
          f"(min {min(per_task)}, max {max(per_task)})")
    print(f"chaos: videos downloaded and verified: {len(verified)}/{TASKS} "
          f"({len(videos)} files)")
    print(f"chaos: tasks that needed a human: {len(human)} {human}")
    print(f"chaos: neighbouring DAG ({neighbour_state}): generations per task "
          f"{[len(ids) for ids in neighbours.values()]}; usage logs {LOGS_LAG} simulated s late")
    print(f"chaos: definite refusals (403, nothing created): {len(refusals)}, then one "
          f"generation each for generate{REFUSED}; templated duration: "
          f"{sorted(set(durations.values()))} s")
    print(f"chaos: tasks retried by Airflow: {len(retried)} {retried}")
    print(f"chaos: wall time: {wall:.0f} s for the run, "
          f"{time.monotonic() - started_up:.0f} s with cluster start and stop")
    assert human == [], diagnostics
    assert per_task == [1] * TASKS
    assert neighbour_state == "success"
    assert [len(ids) for ids in neighbours.values()] == [1] * NEIGHBOURS
    assert sorted(int(re.search(r":generate:(\d+)[.-]", c)[1]) for c in refusals  # type: ignore[index]
                  ) == REFUSED, refusals
    assert set(durations.values()) == {10}  # "{{ params.duration }}", rendered: 10 s videos
    assert len(verified) == len(videos) == TASKS
    assert timed_out == "failed" and state == "failed"  # only generate_timeout, on purpose
    timeout_intents = [ids for cri, ids in after_clear.items() if ":generate_timeout:" in (cri or "")]
    assert timeout_intents == [timeout_intents[0]] and len(timeout_intents[0]) == 1, after_clear
    assert [len(ids) for ids in _per_index(after_clear).values()] == [2] + [1] * (TASKS - 1)
    print("chaos: clearing: the failed generate_timeout continued its one generation; "
          "the successful generate[0] made a new one")


def _found(api: Any, url: str) -> bool:
    return bool(api.get(url).status_code == 200)


def _ended(api: Any, run_url: str) -> str | None:
    """The run's final state, or ``None`` while it runs."""
    state = api.get(run_url).json()["state"]
    return str(state) if state in ("success", "failed") else None


def _per_index(by_task: dict[str | None, list[str]],
               dag_id: str = "kling_chaos") -> dict[int, list[str]]:
    """Generation ids per map index of ``dag_id``'s ``generate`` (from client request ids)."""
    generations: dict[int, list[str]] = {}
    for cri, ids in by_task.items():
        if ":generate_timeout:" in (cri or "") or (cri or "").startswith(
                "kling:kling_chaos_neighbour:") != (dag_id == "kling_chaos_neighbour"):
            continue
        found = re.search(r":generate:(\d+)[.-]", cri or "")
        assert found, f"a generation without this run's client request id: {cri!r} {ids}"
        generations.setdefault(int(found[1]), []).extend(ids)
    return dict(sorted(generations.items()))


def _generation_of(stem: str, by_task: dict[str | None, list[str]]) -> str:
    """The generation whose uuid names a downloaded file (``<generation uuid>.mp4``)."""
    matches = [g for ids in by_task.values() for g in ids if g.split(":", 1)[0] == stem]
    assert len(matches) == 1, (stem, matches)
    return matches[0]
