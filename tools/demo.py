"""``make demo``: run the raccoon example DAG end to end and say where the MP4 is.

Without a key it starts the offline simulator and points ``kling_default`` at it; with
``AIMLAPI_KEY`` set in the environment it uses the real AI/ML API (that costs credits). Airflow
runs from a project-local home (``.airflow-demo/``, SQLite) via ``airflow dags test``, which
executes the deferral's trigger inline; each task's lines of its output are then written where
the api-server reads task logs. ``--pipeline`` runs the media pipeline DAG instead. ``make
gallery`` starts a whole local Airflow on that same home (``tools/local_airflow.py``), so the UI
shows the demo's runs, their task logs, and the "Kling videos" page with their spend.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOME = ROOT / ".airflow-demo"
OUTPUT = ROOT / "demo-output"
BIN = Path(sys.executable).parent


def airflow_env(connection: str, poll_interval: str, *, home: Path = HOME,
                output: Path = OUTPUT) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "AIRFLOW_CONN_KLING_DEFAULT": connection,
        "AIRFLOW_VAR_KLING_OUTPUT_DIR": str(output),
        # The videos page serves stored videos only from under these roots (docs/security.rst).
        "AIRFLOW__KLING__VIDEO_ROOTS": str(output),
        "KLING_POLL_INTERVAL": poll_interval,
    })
    return env


_RUNNING = re.compile(r"\[DAG TEST\] running task <TaskInstance: ([^ .]+)\.(\S+) (\S+) "
                      r"(?:map_index=(\d+) )?\[")


def task_logs(text: str) -> dict[str, list[str]]:
    """``airflow dags test``'s output split per task instance, keyed by the log file's path under
    the logs folder (Airflow's default ``log_filename_template``, first attempt).

    ``dags test`` runs each task in its own process and prints the task's lines between its
    ``[DAG TEST] starting`` and ``end task`` lines (the inline trigger's too) but writes no task
    log files, so the UI's Logs tab of a demo run would be empty.
    """
    found: dict[str, list[str]] = {}
    lines: list[str] | None = None
    for line in text.splitlines():
        if "[DAG TEST] starting task_id=" in line:
            lines = []
        if lines is None:
            continue
        lines.append(line)
        if (match := _RUNNING.search(line)) and len(lines) <= 2:
            dag_id, task_id, run_id, map_index = match.groups()
            mapped = f"map_index={map_index}/" if map_index else ""
            found[f"dag_id={dag_id}/run_id={run_id}/task_id={task_id}/{mapped}attempt=1.log"] = \
                lines
        if "[DAG TEST] end task task_id=" in line:
            lines = None
    return found


def write_task_logs(log: Path, home: Path) -> None:
    """Each task's lines of the ``dags test`` log where the api-server reads task logs."""
    for relative, lines in task_logs(log.read_text(errors="replace")).items():
        path = home / "logs" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")


def run(args: list[str], env: dict[str, str], log: Path) -> None:
    with log.open("w") as sink:
        code = subprocess.call(args, env=env, stdout=sink, stderr=subprocess.STDOUT)
    if code != 0:
        print(log.read_text()[-6000:])
        sys.exit(f"demo: {' '.join(args[:3])} failed (exit {code}); full log: {log}")


def describe(video: Path) -> str:
    if not shutil.which("ffprobe"):
        return "ffprobe not installed: not probed"
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
         "stream=codec_name,width,height:format=duration", "-of", "json", str(video)],
        capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return f"ffprobe could not read it: {probe.stderr.strip()[:200]}"
    info = json.loads(probe.stdout)
    stream = info["streams"][0]
    return (f"{stream['codec_name']} {stream['width']}x{stream['height']}, "
            f"{float(info['format']['duration']):.1f} s (playable)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pipeline", action="store_true", help="run kling_media_pipeline")
    # make screenshots runs the demo on a fresh home of its own (tools/screenshots.py).
    parser.add_argument("--home", type=Path, default=HOME, help=f"Airflow's home ({HOME})")
    parser.add_argument("--output", type=Path, default=OUTPUT, help=f"the videos ({OUTPUT})")
    args = parser.parse_args()
    dag_id = "kling_media_pipeline" if args.pipeline else "kling_raccoon"
    started = time.monotonic()
    home, output = args.home.resolve(), args.output.resolve()
    home.mkdir(parents=True, exist_ok=True)
    output.mkdir(parents=True, exist_ok=True)
    key = os.environ.get("AIMLAPI_KEY", "").strip()
    simulator = None
    if key:
        print("demo: AIMLAPI_KEY is set: using the real AI/ML API (this costs credits).")
        connection = json.dumps({"conn_type": "kling", "host": "https://api.aimlapi.com",
                                 "password": key})
        poll = "60"  # the provider default: the adaptive schedule places the polls
    else:
        sys.path.insert(0, str(ROOT))
        from kling_provider.testing.simulator import KlingSimulator

        # 320 simulated seconds of queue + generation take 2 s of wall time here.
        simulator = KlingSimulator(time_scale=160).start()
        print(f"demo: offline simulator at {simulator.base_url} (videos from {simulator.cdn_url})")
        connection = simulator.connection_uri()
        poll = "0.5"
    env = airflow_env(connection, poll, home=home, output=output)
    airflow = str(BIN / "airflow")
    try:
        if not (home / ".migrated").exists():
            print("demo: creating the Airflow metadata database (first run only)...")
            run([airflow, "db", "migrate"], env, home / "migrate.log")
            (home / ".migrated").touch()
        before = set(output.rglob("*.mp4"))
        print(f"demo: airflow dags test {dag_id} (generate -> wait in trigger -> download)...")
        run([airflow, "dags", "test", dag_id], env, home / f"{dag_id}.log")
        write_task_logs(home / f"{dag_id}.log", home)
    finally:
        posts = simulator.ledger.count(method="POST") if simulator else None
        if simulator:
            simulator.stop()
    # Every run makes new generations, stored under their own names: new files each time.
    videos = sorted(set(output.rglob("*.mp4")) - before, key=lambda p: p.stat().st_mtime)
    if not videos:
        sys.exit(f"demo: the DAG run finished but no new MP4 is under {output}; "
                 f"see {home / (dag_id + '.log')}")
    for video in videos:
        print(f"demo: video: {video} ({video.stat().st_size} bytes; {describe(video)})")
    if args.pipeline:
        for report in sorted(output.rglob("*.probe.json")):
            if report.stat().st_mtime >= videos[0].stat().st_mtime - 60:
                print(f"demo: pipeline report: {report}")
    if posts is not None:
        print(f"demo: the simulator received {posts} create request(s).")
    if not args.pipeline:
        print("demo: `make pipeline` runs the media pipeline (3 prompts -> videos -> ffprobe + "
              f"thumbnails) the same way; its results land in {output / 'pipeline'}.")
    print(f"demo: done in {time.monotonic() - started:.1f} s; Airflow log: "
          f"{home / (dag_id + '.log')}")
    print("demo: see the videos, their spend and the task logs in Airflow: `make gallery` (then "
          "`make stop`)")


if __name__ == "__main__":
    main()
