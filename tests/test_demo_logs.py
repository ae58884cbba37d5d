"""``make demo``'s task logs: ``airflow dags test`` output split where the UI's Logs tab reads."""

from __future__ import annotations

from tools.demo import task_logs

RUN = "manual__2026-11-30T00:15:52.772352+00:00"
OUTPUT = f"""migrating...
[info] [DAG TEST] starting task_id=generate map_index=-1
[info] [DAG TEST] running task <TaskInstance: kling_raccoon.generate {RUN} [queued]> ti_id=1
[info] Estimated price: $1.40
[info] [DAG TEST] running trigger in line
[info] Generation g1 is generating (poll 1)
[info] [DAG TEST] running task <TaskInstance: kling_raccoon.generate {RUN} [scheduled]> ti_id=1
[info] Generation g1 finished in 38 s: 2,800,000 credits, $1.40
[info] [DAG TEST] end task task_id=generate map_index=-1
[info] between tasks
[info] [DAG TEST] starting task_id=download map_index=2
[info] [DAG TEST] running task <TaskInstance: kling_raccoon.download {RUN} map_index=2 [queued]> ti_id=2
[info] Stored 1 MB
[info] [DAG TEST] end task task_id=download map_index=2
"""


def test_each_task_gets_its_own_lines_under_airflows_log_path() -> None:
    logs = task_logs(OUTPUT)
    generate = f"dag_id=kling_raccoon/run_id={RUN}/task_id=generate/attempt=1.log"
    download = f"dag_id=kling_raccoon/run_id={RUN}/task_id=download/map_index=2/attempt=1.log"
    assert set(logs) == {generate, download}
    assert logs[generate][0].endswith("starting task_id=generate map_index=-1")
    assert logs[generate][-1].endswith("end task task_id=generate map_index=-1")
    assert any("$1.40" in line and "finished" in line for line in logs[generate])  # after resume
    assert logs[download] == OUTPUT.splitlines()[-4:]
    assert not any("between tasks" in line or "migrating" in line
                   for lines in logs.values() for line in lines)
