"""A production-shaped Airflow: PostgreSQL metadata DB, CeleryExecutor on Redis, two triggerers.

The raccoon DAG runs while the triggerer that holds its trigger is killed (SIGKILL, no clean
shutdown). A second triggerer must adopt the same trigger row (same serialised kwargs: same
generation id, same absolute deadline), finish polling, and the run must succeed with exactly one
paid POST. Skips, saying why, when PostgreSQL or Redis is not reachable on loopback or the Celery
provider is not installed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import secrets
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kling_provider.testing.simulator import KlingSimulator
from tests.conftest import SECRET_KEY, file_lock, installed_packages_key
from tests.test_real_airflow import AIRFLOW, ROOT, AirflowCluster, cluster_env, free_port

pytestmark = pytest.mark.integration

PG = "postgresql+psycopg2://postgres@127.0.0.1:5432"
REDIS = "redis://127.0.0.1:6379/0"


def _require_services() -> None:
    if importlib.util.find_spec("airflow.providers.celery") is None:
        pytest.skip("apache-airflow-providers-celery is not installed")
    import psycopg2
    import redis

    try:
        psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres",
                         connect_timeout=3).close()
    except psycopg2.OperationalError as exc:
        pytest.skip(f"PostgreSQL is not reachable on 127.0.0.1:5432 ({exc}".strip() + ")")
    try:
        redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis is not reachable on 127.0.0.1:6379 ({exc})")


def _admin(sql: str) -> None:
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute(sql)
    conn.close()


def _create_migrated(database: str) -> None:
    """Create ``database`` holding a migrated Airflow metadata schema: a copy (``CREATE DATABASE
    ... TEMPLATE``, 0.1 s) of ``kling_it_template_<key>``, which is migrated (~7 s of CPU) once per
    set of installed packages and kept between runs. ``make test`` starts up to two
    production-shaped clusters at once, so both steps run under a lock."""
    template = f"kling_it_template_{installed_packages_key()}"
    with file_lock(ROOT / "test-artifacts" / f"{template}.lock"):
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
        with conn.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (template,))
            exists = cursor.fetchone() is not None
        conn.close()
        if not exists:
            partial = f"{template}_partial"  # renamed once migrated: a template is whole or absent
            _admin(f"DROP DATABASE IF EXISTS {partial}")
            _admin(f"CREATE DATABASE {partial}")
            with tempfile.TemporaryDirectory() as home:
                env = {**os.environ, "AIRFLOW_HOME": home, "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                       "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"{PG}/{partial}"}
                subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True,
                               capture_output=True, timeout=600)
            _admin(f"ALTER DATABASE {partial} RENAME TO {template}")
        _admin(f"CREATE DATABASE {database} TEMPLATE {template}")


@contextlib.contextmanager
def production_cluster(tmp_path: Path, *, time_scale: float, dags_folder: Path = ROOT / "dags",
                       extra_env: dict[str, str] | None = None, concurrency: int = 2,
                       ) -> Iterator[tuple[AirflowCluster, KlingSimulator, str]]:
    """The cluster, its simulator and its Celery queue; everything is removed afterwards."""
    _require_services()
    database = f"kling_it_{secrets.token_hex(4)}"
    queue = f"kling-it-{secrets.token_hex(4)}"  # our own Celery queue on the shared Redis
    _create_migrated(database)
    with KlingSimulator(time_scale=time_scale, api_keys={SECRET_KEY}) as sim:
        port = free_port()
        home = tmp_path / "airflow"
        home.mkdir()
        env = cluster_env(home, port, sim, tmp_path / "videos", {
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"{PG}/{database}",
            "AIRFLOW__CELERY__BROKER_URL": REDIS,
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{PG}/{database}",
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue,
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "5",
            **(extra_env or {}),
        })
        airflow = AirflowCluster(home, env, port)
        try:
            airflow.start_core(
                ("celery-worker", "celery", "worker", "--queues", queue, "--concurrency",
                 str(concurrency)),
                ("triggerer-a", "triggerer"))
            yield airflow, sim, queue
        finally:
            airflow.stop()
            _admin(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


@pytest.fixture
def production(tmp_path: Path) -> Iterator[tuple[AirflowCluster, KlingSimulator]]:
    # 320 simulated seconds take ~55 s: time to kill a triggerer mid-wait and hand over.
    with production_cluster(tmp_path, time_scale=6) as (airflow, sim, _):
        yield airflow, sim


def test_triggerer_killed_mid_wait_hands_over(production: tuple[AirflowCluster, KlingSimulator],
                                              tmp_path: Path) -> None:
    airflow, sim = production
    api = airflow.api
    airflow.wait_for("DAG kling_raccoon to be parsed",
                     lambda: api.get("/api/v2/dags/kling_raccoon").status_code == 200)
    api.patch("/api/v2/dags/kling_raccoon", json={"is_paused": False}).raise_for_status()
    run = api.post("/api/v2/dags/kling_raccoon/dagRuns", json={"logical_date": None})
    run.raise_for_status()
    ti_url = f"/api/v2/dags/kling_raccoon/dagRuns/{run.json()['dag_run_id']}"

    def held_trigger() -> tuple[int, int] | None:
        ti: dict[str, Any] = api.get(f"{ti_url}/taskInstances/generate").json()
        job = ti.get("triggerer_job") or {}
        polled = sim.ledger.count(method="GET", origin="api") > 0
        if ti.get("state") == "deferred" and ti.get("trigger") and job.get("id") and polled:
            return int(ti["trigger"]["id"]), int(job["id"])
        return None

    trigger_id, first_job = airflow.wait_for("the trigger to run in triggerer A", held_trigger)
    airflow.start("triggerer-b", "triggerer")
    time.sleep(3)  # let B register and heartbeat before A disappears
    os.killpg(airflow.processes["triggerer-a"].pid, signal.SIGKILL)
    airflow.processes["triggerer-a"].wait(timeout=10)
    del airflow.processes["triggerer-a"]  # gone on purpose: not a failure to report
    polls_at_kill = sim.ledger.count(method="GET", origin="api")

    def adopted() -> tuple[int, int] | None:
        held = held_trigger()
        return held if held and held[1] != first_job else None

    adopted_trigger, second_job = airflow.wait_for("triggerer B to adopt the trigger", adopted,
                                                   timeout=120)
    assert adopted_trigger == trigger_id  # the same row: same generation id and deadline

    def finished() -> str | None:
        state = api.get(ti_url).json()["state"]
        return str(state) if state in ("success", "failed") else None

    assert airflow.wait_for("the run to finish", finished, timeout=240) == "success", \
        airflow.diagnostics()
    assert sim.ledger.count(method="GET", origin="api") > polls_at_kill
    assert sim.ledger.count(method="POST") == 1
    assert len(list((tmp_path / "videos").rglob("*.mp4"))) == 1
    print(f"hand-over: trigger {trigger_id} moved from triggerer job {first_job} to {second_job}")
