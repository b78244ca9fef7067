"""``make airflow`` for real: ``python -m local.airflow`` starts Airflow's components from this
virtualenv, seeds the empty embedded warehouse up to yesterday, prints the UI's URL and login; the
printed login works against the REST API (the DAG is there, paused), unpausing it gives a green
scheduled run for yesterday, and Ctrl-C (SIGINT) stops every process it started."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import sqlalchemy as sa

from etl.contract import SOURCE_TABLES
from local.airflow import processes_of

REPO_DIR = Path(__file__).resolve().parents[2]


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_until(process: subprocess.Popen, pattern: str, timeout_s: float, seen: list[str]) -> re.Match:
    """Lines of the launcher's output until one matches ``pattern``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            if process.poll() is not None:
                break
            continue
        seen.append(line)
        if match := re.search(pattern, line):
            return match
    raise AssertionError(f"no line matching {pattern!r}; output:\n{''.join(seen)}")


def test_a_port_in_use_is_refused_before_anything_starts(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {**os.environ, "SHOPMTL_HOME": str(tmp_path / "home")}
        result = subprocess.run([sys.executable, "-m", "local.airflow", "--port", str(port)], cwd=REPO_DIR, env=env,
                                capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 2 and f"port {port} is in use" in result.stderr
    assert not (tmp_path / "home" / "warehouse.db").exists()  # refused before seeding


@pytest.mark.slow
@pytest.mark.integration
def test_make_airflow_prints_a_working_login_and_ctrl_c_stops_everything(tmp_path):
    home = tmp_path / "shopmtl_home"
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW", "SHOPMTL_", "PYTEST"))}
    env.update(
        SHOPMTL_HOME=str(home),
        # the components' log servers on free ports: another Airflow on this machine keeps its own
        AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()),
        AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(free_port()),
    )
    launcher = subprocess.Popen(
        [sys.executable, "-m", "local.airflow", "--port", str(port), "--scale", "0.05"],
        cwd=REPO_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    seen: list[str] = []
    try:
        url = read_until(launcher, r"^Airflow UI: (http://\S+)$", 300, seen)[1]
        user, password = read_until(launcher, r"^Login: (\S+) / (\S+)$", 10, seen).groups()
        assert url == f"http://127.0.0.1:{port}"
        token = httpx.post(f"{url}/auth/token", json={"username": user, "password": password}, timeout=30)
        assert token.status_code in (200, 201), token.text
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        deadline, dag = time.monotonic() + 120, None
        while time.monotonic() < deadline:  # the dag-processor parses the DAG folder after start-up
            dag = httpx.get(f"{url}/api/v2/dags/nightly_retrain", headers=headers, timeout=30)
            if dag.status_code == 200:
                break
            time.sleep(3)
        assert dag is not None and dag.status_code == 200, dag.text if dag is not None else "no answer"
        assert dag.json()["is_paused"] is True  # nothing runs until an operator unpauses it
        assert httpx.post(f"{url}/auth/token", json={"username": user, "password": "wrong"}, timeout=30).status_code == 401
        engine = sa.create_engine(f"sqlite:///{home / 'warehouse.db'}")
        with engine.connect() as conn:  # seeded up to yesterday: the first scheduled run has its day
            newest = conn.execute(sa.text("SELECT MAX(created_at) FROM orders")).scalar()
        engine.dispose()
        assert newest is not None and seen[0].startswith("Seeded the embedded warehouse")
        # Unpausing schedules the newest complete day, yesterday: the seeded data makes it a green run.
        assert httpx.patch(f"{url}/api/v2/dags/nightly_retrain", json={"is_paused": False}, headers=headers, timeout=30).status_code == 200
        deadline, runs = time.monotonic() + 600, []
        while time.monotonic() < deadline:
            runs = httpx.get(f"{url}/api/v2/dags/nightly_retrain/dagRuns", headers=headers, timeout=30).json()["dag_runs"]
            if runs and all(run["state"] in ("success", "failed") for run in runs):
                break
            time.sleep(10)
        assert [(run["run_type"], run["state"]) for run in runs] == [("scheduled", "success")], runs
        yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
        assert runs[0]["logical_date"].startswith(yesterday)
        instances = httpx.get(
            f"{url}/api/v2/dags/nightly_retrain/dagRuns/{quote(runs[0]['dag_run_id'], safe='')}/taskInstances",
            params={"limit": 100}, headers=headers, timeout=30,
        ).json()["task_instances"]  # fmt: skip
        # The UI names each mapped extract by its table.
        assert {ti["rendered_map_index"] for ti in instances if ti["task_id"] == "extract"} == set(SOURCE_TABLES)
    finally:
        launcher.send_signal(signal.SIGINT)  # what Ctrl-C sends
        try:
            output, _ = launcher.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            launcher.kill()
            output, _ = launcher.communicate()
        seen.append(output)
    assert launcher.returncode == 0, "".join(seen)
    assert "Stopped." in "".join(seen), "".join(seen)  # and nothing had to be killed
    assert processes_of(home / "airflow") == [], "processes outlived the launcher"
