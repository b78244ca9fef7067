"""``make demo``'s live progress: each task's start and end printed as the run's lines arrive, and
every line in the log file at once."""
from __future__ import annotations

import sys
from itertools import count

from demo.progress import TaskProgress, stream_command

RUNNER_LINES = [
    "2026-12-05T19:42:29Z [info] [DAG TEST] starting task_id=plan map_index=-1 [airflow.sdk.definitions.dag]\n",
    "[DAG TEST] running task <TaskInstance: nightly_retrain.plan manual__2026 [TaskInstanceState.SCHEDULED]>\n",
    "2026-12-05T19:42:30Z [info] [DAG TEST] end task task_id=plan map_index=-1\n",
    "[DAG TEST] starting task_id=extract map_index=3\n",
    "[DAG TEST] end task task_id=extract map_index=3\n",
    "[DAG TEST] starting task_id=validate map_index=-1\n",
    "[error] Task failed with exception [airflow.task]\n",
    "[DAG TEST] end task task_id=validate map_index=-1\n",
]


def test_each_task_start_and_end_is_printed_with_its_duration_and_a_failure_says_so():
    printed: list[str] = []
    ticks = count(0, 2.5)
    progress = TaskProgress(out=printed.append, clock=lambda: float(next(ticks)))
    for line in RUNNER_LINES:
        progress.feed(line)
    assert [line.split("  ", 2)[2] for line in printed] == [
        "started  plan", "finished plan (2.5 s)", "started  extract[3]", "finished extract[3] (2.5 s)",
        "started  validate", "FAILED  validate (2.5 s)",
    ]  # fmt: skip
    assert not progress.succeeded


def test_lines_reach_the_log_file_as_the_command_prints_them(tmp_path):
    log_path = tmp_path / "demo.log"
    seen_in_log: list[bool] = []
    script = (
        "import sys, time\n"
        "print('[DAG TEST] starting task_id=plan map_index=-1', flush=True)\n"
        "time.sleep(0.3)\n"
        "print('[DAG TEST] end task task_id=plan map_index=-1', flush=True)\n"
        "print('DagRun Finished: state=success', flush=True)\n"
    )

    def out(line: str) -> None:  # when a task starts, its line is already in the log
        seen_in_log.append("starting task_id=plan" in log_path.read_text())

    progress = TaskProgress(out=out)
    assert stream_command([sys.executable, "-c", script], {}, log_path, progress) == 0
    assert seen_in_log == [True, True] and progress.succeeded
    assert log_path.read_text().splitlines()[-1] == "DagRun Finished: state=success"
