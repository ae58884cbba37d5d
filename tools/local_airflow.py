"""``make airflow`` / ``make stop``: a whole local Airflow against the offline simulator.

``start`` runs, in the background, the simulator and Airflow's api-server, scheduler,
dag-processor and triggerer (LocalExecutor, SQLite) on a project-local home (``.airflow-local/``)
with the example DAGs and ``kling_default`` pointing at the simulator; it returns once every
component reports healthy and the example DAGs are parsed, printing the URL and the login.
``stop`` stops every process it started (their process groups, by the ids it recorded).

The processes share their secrets through ``tools.cluster`` (the same module the integration tests
start Airflow with); the secrets and the admin password are made once per home and kept in it, so
a restart decrypts what the previous run stored.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tools.cluster import (  # the repo root is on sys.path first
    AIRFLOW,
    ROOT,
    TRIGGERER,
    AirflowCluster,
    ClusterError,
    cluster_env,
    connection_json,
    free_port,
    shared_secrets,
    stop_groups,
)

#: The default home (``KLING_AIRFLOW_HOME`` or ``--home`` choose another): the metadata DB, the
#: logs, the secrets, the videos (``videos/``) and what is running (``running.json``).
HOME = ROOT / ".airflow-local"
#: ``make demo``'s home: ``make gallery`` starts the same cluster on it.
DEMO_HOME = ROOT / ".airflow-demo"
USERNAME = "admin"
#: DAGs unpaused at start: the ones a user triggers by hand, and the catalog their downloads feed.
UNPAUSED = ("kling_raccoon", "kling_dragon", "kling_submit_then_sense", "kling_image_to_video",
            "kling_video_catalog")
#: The simulator's model: 20 s in the queue, then 300 s generating (5 s videos).
SIMULATED_SECONDS = 320


def _private_json(path: Path, make: dict[str, str]) -> dict[str, str]:
    """``path``'s JSON, written first (owner-only) from ``make`` if it does not exist yet."""
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(json.dumps(make))
    loaded: dict[str, str] = json.loads(path.read_text())
    return loaded


def running(home: Path) -> dict[str, Any] | None:
    """The recorded cluster if its api-server is still alive, else ``None``."""
    if not (home / "running.json").exists():
        return None
    state: dict[str, Any] = json.loads((home / "running.json").read_text())
    try:
        os.kill(int(state["pids"]["api-server"]), 0)
    except (ProcessLookupError, KeyError):
        return None
    return state


def announce(state: dict[str, Any]) -> None:
    url = state["url"]
    print(f"airflow: Airflow UI     {url}/  (login {state['username']} / {state['password']})")
    print(f"airflow: Kling videos   {url}/plugin/kling-videos")
    print(f"airflow: simulator      {state['simulator']} ({state['time_scale']}x: a 5 s video "
          f"takes {SIMULATED_SECONDS / state['time_scale']:.0f} s); kling_default points at it")
    print(f"airflow: videos under   {state['videos']}; logs under {state['home']}")
    print("airflow: trigger kling_raccoon in the UI and watch it defer; `make stop` stops it all")


def start_simulator(home: Path, time_scale: float, api_key: str
                    ) -> tuple[subprocess.Popen[bytes], str]:
    """The simulator in its own process group; its API base URL once it listens."""
    log = home / "simulator.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "kling_provider.testing.simulator", "--port", "0",
             "--time-scale", str(time_scale), "--api-key", api_key],
            stdout=sink, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)
    end = time.monotonic() + 60
    while time.monotonic() < end and process.poll() is None:
        first = log.read_text().split("\n", 1)
        if len(first) == 2 and first[0].startswith("{"):
            return process, str(json.loads(first[0])["base_url"])
        time.sleep(0.1)
    stop_groups([process.pid])
    sys.exit(f"airflow: the simulator did not start; see {log}:\n{log.read_text()[-2000:]}")


def start(home: Path, time_scale: float, port: int, videos: Path) -> None:
    began = time.monotonic()
    if (state := running(home)) is not None:
        print("airflow: already running.")
        announce(state)
        return
    videos.mkdir(parents=True, exist_ok=True)
    kept = _private_json(home / "secrets.json", {
        **shared_secrets(), "KLING_SIMULATOR_KEY": f"sk-local-{secrets.token_hex(8)}"})
    password = _private_json(home / "passwords.json",
                             {USERNAME: secrets.token_urlsafe(12)})[USERNAME]
    api_key = kept.pop("KLING_SIMULATOR_KEY")
    simulator, base_url = start_simulator(home, time_scale, api_key)
    env = cluster_env(home, port, connection=connection_json(base_url, api_key), videos=videos,
                      poll_interval=str(max(1.0, min(60.0, 30 / time_scale))), overrides={
                          **kept,
                          "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USERNAME}:admin",
                          "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE":
                              str(home / "passwords.json"),
                      })
    airflow = AirflowCluster(home, env, port)
    try:
        if not (home / ".migrated").exists():
            print("airflow: creating the metadata database (first start only)...")
            subprocess.run([AIRFLOW, "db", "migrate"], env=env, check=True, timeout=600,
                           stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            (home / ".migrated").touch()
        print("airflow: starting api-server, scheduler, dag-processor, triggerer...")
        airflow.start_core(TRIGGERER, credentials=(USERNAME, password))
        for dag_id in UNPAUSED:
            url = f"/api/v2/dags/{dag_id}"
            airflow.wait_for(f"DAG {dag_id} to be parsed", lambda: airflow.api.get(url).is_success)  # noqa: B023 - called before the loop moves on
            airflow.api.patch(url, json={"is_paused": False})
        airflow.wait_for("every component to report healthy", airflow.healthy, timeout=120)
    except (ClusterError, subprocess.SubprocessError) as error:
        airflow.stop()
        stop_groups([simulator.pid])
        sys.exit(f"airflow: start-up failed: {error}")
    state = {"url": airflow.url, "username": USERNAME, "password": password,
             "simulator": base_url, "time_scale": time_scale, "home": str(home),
             "videos": str(videos), "pids": {**airflow.pids(), "simulator": simulator.pid}}
    (home / "running.json").write_text(json.dumps(state, indent=2))
    announce(state)
    print(f"airflow: ready in {time.monotonic() - began:.1f} s")


def stop(home: Path) -> None:
    state = home / "running.json"
    if not state.exists():
        print(f"airflow: nothing recorded as running in {home}.")
        return
    pids = json.loads(state.read_text())["pids"]
    stop_groups(pids.values())
    state.unlink()
    print(f"airflow: stopped {', '.join(sorted(pids))}.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["start", "stop"])
    parser.add_argument("--home", type=Path, default=os.environ.get("KLING_AIRFLOW_HOME"),
                        help=f"Airflow's home (default {HOME}; stop: every home it knows)")
    parser.add_argument("--videos", type=Path,
                        help="where downloads go and the videos page serves from (default: "
                             "videos/ in the home; make gallery: the demo's demo-output/)")
    parser.add_argument("--time-scale", type=float,
                        default=float(os.environ.get("TIME_SCALE", "10")),
                        help="simulated seconds per real second (1: real speed; default 10)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("AIRFLOW_PORT", "0")),
                        help="the api-server's port (default: 8080 when free, else any)")
    args = parser.parse_args()
    if args.command == "stop":
        for home in [args.home] if args.home else [HOME, DEMO_HOME]:
            stop(Path(home).resolve())
        return
    if args.time_scale <= 0:
        sys.exit(f"airflow: --time-scale={args.time_scale} must be > 0 (1 = real speed).")
    home = Path(args.home or HOME).resolve()
    start(home, args.time_scale, args.port or _default_port(),
          (args.videos or home / "videos").resolve())


def _default_port() -> int:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", 8080))
            return 8080
        except OSError:
            return free_port()


if __name__ == "__main__":
    main()
