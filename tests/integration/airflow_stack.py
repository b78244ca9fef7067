"""A real Airflow 3 deployment in subprocesses, for integration tests.

``AirflowStack`` runs ``airflow db migrate`` and then ``airflow scheduler`` (LocalExecutor),
``airflow dag-processor`` and ``airflow api-server`` against a fresh PostgreSQL metadata database,
with a private ``AIRFLOW_HOME`` and this repository's DAG folder. Each component is started in its own
session (``start_new_session=True``), so stopping it signals its whole process group: the
LocalExecutor's workers and the task processes they fork included. ``stop()`` sends SIGTERM, waits,
SIGKILLs stragglers, and then looks for any process left whose environment still names the stack's
``AIRFLOW_HOME``.

The REST API is used as the UI uses it. With ``[core] simple_auth_manager_all_admins`` every request is
an admin's, but a token is fetched from ``/auth/token`` anyway and sent, as a client of a real
deployment would.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO_DIR = Path(__file__).resolve().parents[2]
AIRFLOW_BIN = str(Path(sys.executable).with_name("airflow"))
COMPONENTS = {
    # --skip-serve-logs: task logs are read from files here; the log server would also take a fixed port.
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
}


def async_url(url: str) -> str:
    """The psycopg 3 async form of a PostgreSQL URL (postgresql+psycopg_async://...)."""
    scheme, rest = url.split(":", 1)
    if scheme.split("+", 1)[0] not in {"postgresql", "postgres"}:
        raise ValueError(f"not a PostgreSQL URL: {scheme}")
    return f"postgresql+psycopg_async:{rest}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class StackError(AssertionError):
    """Something in the Airflow stack did not come up or behave; the message carries the component logs."""


@dataclass
class AirflowStack:
    """Airflow components as subprocesses; ``start()``, use ``api()``, ``stop()``."""

    home: Path
    metadata_url: str  # postgresql+psycopg://... of an existing, empty database
    extra_env: Mapping[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    _token: str | None = None
    # One set of secrets and ports for every component: the api-server must accept the JWTs the
    # scheduler signs for its task workloads.
    _fixed: dict[str, str] = field(
        default_factory=lambda: {
            "AIRFLOW__API__SECRET_KEY": uuid.uuid4().hex,
            "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex + uuid.uuid4().hex,
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        }
    )

    # --- environment ---------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def component_logs_dir(self) -> Path:
        return self.home / "component_logs"

    def env(self) -> dict[str, str]:
        """The components' environment: nothing Airflow-related inherited from the test process."""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("AIRFLOW", "SHOPMTL_", "PYTEST")) and key != "PYTHONPATH"
        }
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.metadata_url,
                # Airflow derives postgresql+asyncpg for its async engine; asyncpg is not installed, psycopg 3 is.
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": async_url(self.metadata_url),
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_DIR / "dags"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__CORE__PARALLELISM": "8",  # 2 CPU cores: a bound on task processes alive at once
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__BASE_URL": self.base_url,
                "AIRFLOW__API__WORKERS": "1",
                **self._fixed,
                "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
                # Parse the DAG folder quickly and often enough; one parsing process on 2 cores.
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
                "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
                "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "1",
                "PYTHONPATH": str(REPO_DIR),
            }
        )
        env.update(self.extra_env)
        return env

    # --- lifecycle -----------------------------------------------------------------------------------

    def run_cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [AIRFLOW_BIN, *args], env=self.env(), cwd=self.home, capture_output=True, text=True, timeout=timeout
        )
        if result.returncode != 0:
            raise StackError(f"airflow {' '.join(args)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
        return result

    def start(self, ready_timeout: float = 240) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.component_logs_dir.mkdir(exist_ok=True)
        self.run_cli("db", "migrate", timeout=600)
        commands = {**COMPONENTS, "api-server": ["api-server", "--port", str(self.port), "--host", "127.0.0.1"]}
        for name, args in commands.items():
            log = (self.component_logs_dir / f"{name}.log").open("ab")
            self.processes[name] = subprocess.Popen(
                [AIRFLOW_BIN, *args],
                env=self.env(),
                cwd=self.home,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            log.close()
        self.wait_for(self._api_healthy, ready_timeout, "the api-server to answer /api/v2/monitor/health")

    def _api_healthy(self) -> bool:
        self.check_alive()
        try:
            return httpx.get(f"{self.base_url}/api/v2/monitor/health", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def check_alive(self) -> None:
        """Fail at once, with its log, when a component has exited."""
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise StackError(f"airflow {name} exited with {process.returncode}\n{self.component_log_tails()}")

    def stop(self, grace_s: float = 45) -> list[str]:
        """SIGTERM every component's process group, wait, SIGKILL what is left; returns the leftovers found.

        A leftover is a live process of one of the groups after SIGKILL, or any process whose
        environment names this stack's AIRFLOW_HOME (killed too, so the next test starts clean).
        """
        groups = {name: process.pid for name, process in self.processes.items()}  # pid == pgid (new session)
        for pgid in groups.values():
            _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        # Children of a component (task processes, uvicorn workers) may outlive its leader briefly.
        while time.monotonic() < deadline and any(_group_members(pgid) for pgid in groups.values()):
            time.sleep(0.5)
        stragglers = [f"{name} group {pgid}: pids {_group_members(pgid)}" for name, pgid in groups.items() if _group_members(pgid)]
        for pgid in groups.values():
            _signal_group(pgid, signal.SIGKILL)
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                stragglers.append(f"pid {process.pid} survived SIGKILL")
        time.sleep(0.5)
        leftovers = [f"{pid}: {cmd}" for pid, cmd in processes_with_env("AIRFLOW_HOME", str(self.home))]
        for pid, _ in processes_with_env("AIRFLOW_HOME", str(self.home)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.processes.clear()
        return [*(f"needed SIGKILL: {s}" for s in stragglers), *(f"left behind: {s}" for s in leftovers)]

    # --- diagnostics ---------------------------------------------------------------------------------

    def component_log_tails(self, chars: int = 3000) -> str:
        parts = []
        for path in sorted(self.component_logs_dir.glob("*.log")):
            parts.append(f"----- {path.name} (last {chars} chars) -----\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts)

    def task_logs(self, run_id: str, task_ids: Iterable[str] | None = None, chars: int = 6000) -> str:
        """The task log files of one dag run (all attempts), or of the given tasks only."""
        wanted = set(task_ids) if task_ids is not None else None
        parts = []
        for path in sorted(self.logs_dir.glob(f"dag_id=*/run_id={run_id}/task_id=*/**/*.log")):
            task_dir = next(p for p in path.parents if p.name.startswith("task_id="))
            if wanted is not None and task_dir.name.removeprefix("task_id=") not in wanted:
                continue
            parts.append(f"----- {path.relative_to(self.logs_dir)} -----\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts) or f"(no task logs under {self.logs_dir} for run {run_id})"

    # --- REST API ------------------------------------------------------------------------------------

    def token(self) -> str:
        if self._token is None:
            response = httpx.get(f"{self.base_url}/auth/token", timeout=30)
            if response.status_code != 201:
                raise StackError(f"GET /auth/token: {response.status_code} {response.text}")
            self._token = response.json()["access_token"]
        return self._token

    def api(self, method: str, path: str, expect: Iterable[int] = (200,), **kwargs: Any) -> Any:
        """Call the public REST API (``/api/v2`` + path); the JSON answer, or StackError on another status."""
        response = httpx.request(
            method,
            f"{self.base_url}/api/v2{path}",
            headers={"Authorization": f"Bearer {self.token()}"},
            timeout=60,
            **kwargs,
        )
        if response.status_code not in tuple(expect):
            raise StackError(f"{method} /api/v2{path} -> {response.status_code}: {response.text[:2000]}")
        return response.json() if response.content else None

    def wait_for(self, condition, timeout: float, what: str, interval: float = 2.0):
        """Poll ``condition()`` until it returns something truthy (returned); StackError after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise StackError(f"timed out after {timeout:.0f}s waiting for {what}\n{self.component_log_tails()}")
            time.sleep(interval)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) pids whose process group is ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces, so split after its closing parenthesis.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def processes_with_env(key: str, value: str) -> list[tuple[int, str]]:
    """(pid, command line) of every live process whose environment has ``key=value``."""
    needle = f"{key}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if needle in environ:
            found.append((int(entry.name), cmdline))
    return found


def dump_json(value: Any) -> str:
    return json.dumps(value, indent=1, default=str)[:4000]
