"""Live progress of ``airflow dags test``: each task's start, end and duration printed as it happens,
read from the lines Airflow's in-process runner logs around every task (``[DAG TEST] starting
task_id=...`` and ``[DAG TEST] end task task_id=...``), while every line also goes to the log file
as it arrives (a run of minutes is no longer silent until it ends).
"""
from __future__ import annotations

import re
import subprocess
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TextIO

TASK_LINE = re.compile(r"\[DAG TEST\] (?P<event>starting|end task) task_id=(?P<task>\S+) map_index=(?P<index>-?\d+)")
FAILED_LINE = re.compile(r"Task failed with exception|\[DAG TEST\] Error running task")


def task_label(task_id: str, map_index: int) -> str:
    """``extract[3]`` for a mapped task instance, ``validate`` otherwise."""
    return task_id if map_index < 0 else f"{task_id}[{map_index}]"


@dataclass
class TaskProgress:
    """Turns the runner's lines into one printed line per task start and end."""

    out: Callable[[str], None] = print
    clock: Callable[[], float] = time.monotonic
    started: dict[str, float] = field(default_factory=dict)
    failed: set[str] = field(default_factory=set)
    current: str | None = None
    succeeded: bool = False  # the run's own "state=success" line was seen
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=200))  # for a failure's message

    def feed(self, line: str) -> None:
        self.tail.append(line)
        self.succeeded = self.succeeded or "state=success" in line
        match = TASK_LINE.search(line)
        if match is None:
            if self.current and FAILED_LINE.search(line):
                self.failed.add(self.current)
            return
        label = task_label(match["task"], int(match["index"]))
        now = datetime.now().strftime("%H:%M:%S")
        if match["event"] == "starting":
            self.started[label], self.current = self.clock(), label
            self.out(f"  {now}  started  {label}")
            return
        seconds = self.clock() - self.started.pop(label, self.clock())
        outcome = "FAILED " if label in self.failed else "finished"
        self.out(f"  {now}  {outcome} {label} ({seconds:.1f} s)")
        self.current = None


def stream_command(command: list[str], env: dict[str, str], log_path: Path, progress: TaskProgress) -> int:
    """Run ``command``, appending each output line to ``log_path`` as it comes and feeding it to
    ``progress``; returns the exit code."""
    with log_path.open("a") as log_file:
        log_file.write(f"$ {' '.join(command)}\n")
        with subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        ) as process:
            copy_lines(process.stdout, log_file, progress)
            return process.wait()


def copy_lines(lines: Iterable[str] | None, log_file: TextIO, progress: TaskProgress) -> None:
    for line in lines or ():
        log_file.write(line)
        log_file.flush()
        progress.feed(line)
