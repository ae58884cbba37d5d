"""Start a whole local Airflow (api-server, scheduler, dag-processor, triggerer) against a Kling API.

One place for what every process of a local cluster must share, used by ``make airflow``
(``tools/local_airflow.py``) and by the integration tests that start real Airflow
(``tests/test_real_airflow.py`` and the tests built on it):

- the same Fernet key (trigger kwargs are encrypted by the scheduler and decrypted by the
  triggerer), task-token secret (``[api_auth] jwt_secret``) and ``[api] secret_key`` (the
  api-server signs its requests to the log servers with it: a mismatch is a 403 in the Logs tab);
- the Execution API URL on loopback (without it a worker calls the default port and its task
  token is refused: ``Invalid auth token``);
- log-server ports of their own, so the Logs tab of a running or deferred task reads the
  scheduler's and the triggerer's log servers of *this* cluster, never another one on the machine.

Stdlib and httpx only: the tests import it as ``tools.cluster``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
AIRFLOW = str(Path(sys.executable).parent / "airflow")
#: An extra process for :meth:`AirflowCluster.start_core`: log name, then the command.
TRIGGERER = ("triggerer", "triggerer")


class ClusterError(RuntimeError):
    """A process exited, or something did not happen in time; the message holds the log tails."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def connection_json(host: str, key: str, **extra: Any) -> str:
    """``kling_default`` in the JSON form of an ``AIRFLOW_CONN_*`` variable."""
    return json.dumps({"conn_type": "kling", "host": host, "password": key, "extra": extra})


def shared_secrets() -> dict[str, str]:
    """Fresh secrets every process of one cluster must hold the same."""
    return {
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
        "AIRFLOW__API__SECRET_KEY": secrets.token_hex(32),
        # Without one, each process that finds no airflow.cfg generates its own while they start
        # together; the triggerer then fails to decrypt a trigger the scheduler wrote and exits.
        "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
    }


def cluster_env(home: Path, port: int, *, connection: str, videos: Path,
                dags_folder: Path = ROOT / "dags", poll_interval: str = "1",
                overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of every process of one cluster (SQLite and LocalExecutor unless
    ``overrides`` say otherwise; ``overrides`` win)."""
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        **shared_secrets(),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "3",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "1",
        # A task's calls to the execution API (its start above all) wait up to 5 s by default.
        # On a loaded 2-core machine SQLite's api-server took longer: the supervisor gave up,
        # its retry of the start met 409 "already running" and the try failed before any of
        # the provider's code ran (seen in a CI-equivalent run at a load of 12). Airflow's
        # advice for high load is this setting.
        "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "60",
        "AIRFLOW_CONN_KLING_DEFAULT": connection,
        "AIRFLOW_VAR_KLING_OUTPUT_DIR": str(videos),
        # The videos page serves stored videos only from under these roots (docs/security.rst).
        "AIRFLOW__KLING__VIDEO_ROOTS": str(videos),
        "KLING_POLL_INTERVAL": poll_interval,
        **(overrides or {}),
    }


def stop_groups(pids: Iterable[int], timeout: float = 30) -> None:
    """SIGTERM each process group, then SIGKILL what is still there after ``timeout``."""
    alive = []
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGTERM)
            alive.append(pid)
        except ProcessLookupError:
            pass
    end = time.monotonic() + timeout
    while alive and time.monotonic() < end:
        alive = [pid for pid in alive if _exists(pid)]
        time.sleep(0.2)
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def _exists(pid: int) -> bool:
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)  # our child: reap it, or it lingers as a zombie
        if reaped:
            return False
    except ChildProcessError:
        pass  # not our child (``make stop`` in a later shell)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class AirflowCluster:
    """The Airflow processes of one home, their logs, and an authenticated REST client."""

    def __init__(self, home: Path, env: dict[str, str], port: int) -> None:
        self.home = home
        self.env = env
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.api = httpx.Client(base_url=self.url, timeout=30)

    def start(self, name: str, *args: str) -> None:
        with (self.home / f"{name}.log").open("wb") as log:
            self.processes[name] = subprocess.Popen(
                [AIRFLOW, *args], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)  # its own process group: stopping it stops its children

    def start_core(self, *extra: tuple[str, ...], credentials: tuple[str, str] | None = None
                   ) -> None:
        """Start api-server, scheduler, dag-processor and ``extra`` commands; authenticate the
        REST client (as ``credentials``, or as the all-admins user when none are given)."""
        self.start("api-server", "api-server", "--port", str(self.port), "--host", "127.0.0.1")
        for name, *args in (("scheduler", "scheduler"), ("dag-processor", "dag-processor"), *extra):
            self.start(name, *args)

        def token() -> Any:
            if credentials is None:
                return self.api.get("/auth/token").json().get("access_token")
            username, password = credentials
            answer = self.api.post("/auth/token", json={"username": username, "password": password})
            return answer.json().get("access_token") if answer.status_code < 300 else None

        self.api.headers["Authorization"] = f"Bearer {self.wait_for('the API server', token)}"

    def log_tail(self, name: str, size: int = 3000) -> str:
        return (self.home / f"{name}.log").read_text(errors="replace")[-size:]

    def diagnostics(self) -> str:
        return "\n".join(f"--- {n} ---\n{self.log_tail(n)}" for n in self.processes)

    def wait_for(self, what: str, check: Callable[[], Any], timeout: float = 240) -> Any:
        """``check()``'s first truthy answer; :class:`ClusterError` if a process exits first or
        ``timeout`` passes (HTTP errors count as "not yet").

        The pause between checks grows from 0.25 s to 1 s: most checks are REST calls, and each
        costs the api-server 10-60 ms of CPU that the cluster's own processes wait for (at a
        fixed 0.25 s, a test's polls were 40% of its api-server's requests)."""
        end = time.monotonic() + timeout
        pause = 0.25
        while time.monotonic() < end:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise ClusterError(f"airflow {name} exited ({process.returncode}) while "
                                       f"waiting for {what}\n{self.diagnostics()}")
            try:
                result = check()
            except (httpx.HTTPError, ValueError):  # not up yet, or not JSON yet
                result = None
            if result:
                return result
            time.sleep(pause)
            pause = min(pause * 1.25, 1.0)
        raise ClusterError(f"timed out waiting for {what}\n{self.diagnostics()}")

    def healthy(self) -> bool:
        """Whether ``/api/v2/monitor/health`` reports every component healthy."""
        health = self.api.get("/api/v2/monitor/health").json()
        return all(part.get("status") == "healthy" for part in health.values()
                   if isinstance(part, dict))

    def pids(self) -> dict[str, int]:
        return {name: process.pid for name, process in self.processes.items()}

    def stop(self) -> None:
        stop_groups([p.pid for p in self.processes.values() if p.poll() is None])
        for process in self.processes.values():
            process.wait(timeout=10)
        self.api.close()
