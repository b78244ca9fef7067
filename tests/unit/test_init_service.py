"""docker-compose's airflow-init service, for real on this machine: docker/seed_demo_warehouse.py and
docker/airflow-init.sh with the compose file's init environment (SQLite for PostgreSQL, a local S3
server for MinIO). The compose file's own checks are tests/unit/test_deployment.py."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from etl.contract import SOURCE_TABLES, WAREHOUSE_CONN_ID
from tests.unit.test_deployment import REPO_DIR, WAREHOUSE_CONN_VAR, compose


def _load_seed_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("seed_demo_warehouse", REPO_DIR / "docker" / "seed_demo_warehouse.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_seeding_fills_an_empty_warehouse_once(sqlite_url: str, capsys: pytest.CaptureFixture):
    seed = _load_seed_script()
    args = ["--warehouse-url", sqlite_url, "--start", "2026-02-04", "--end", "2026-02-04", "--scale", "0.02"]
    assert seed.source_rows(sqlite_url) == {}
    assert seed.main(args) == 0
    first = seed.source_rows(sqlite_url)
    assert set(first) == set(SOURCE_TABLES) and first["orders"] > 0
    capsys.readouterr()
    # Second start, even asked for other days: the warehouse has rows, so nothing is written.
    assert seed.main([*args[:2], "--start", "2026-01-01", "--end", "2026-02-04"]) == 0
    assert "not seeding" in capsys.readouterr().out
    assert seed.source_rows(sqlite_url) == first


@pytest.mark.slow
def test_init_script_migrates_sets_the_admin_login_creates_the_bucket_and_seeds(tmp_path: Path, airflow_db: str, s3_endpoint: str):
    """docker/airflow-init.sh with the compose file's init environment, on SQLite instead of PostgreSQL
    and a local S3 server instead of MinIO."""
    import s3fs

    environment = compose({"AIRFLOW_ADMIN_PASSWORD": "s3cret-pw"})["services"]["airflow-init"]["environment"]
    warehouse = tmp_path / "warehouse.db"
    bucket = f"shopmtl-init-{tmp_path.name[-8:].replace('_', '-').lower()}-{os.getpid()}"
    environment.update(
        {
            # Host-side stand-ins for the containers' PostgreSQL, volumes and image paths.
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_db}/airflow.db",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+sqlite:///{airflow_db}/airflow.db",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(tmp_path / "auth" / "passwords.json"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_DIR / "dags"),
            WAREHOUSE_CONN_VAR: f"sqlite:///{warehouse}",
            "SHOPMTL_HOME": str(tmp_path / "home"),
            "AWS_ENDPOINT_URL": s3_endpoint,
            "SHOPMTL_ARTIFACTS_URL": f"s3://{bucket}/artifacts",
            "DEMO_START": "2026-02-04",
            "DEMO_SCALE": "0.02",
        }
    )
    env = {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "HOME": str(tmp_path), "AIRFLOW_HOME": airflow_db, **environment}
    script = REPO_DIR / "docker" / "airflow-init.sh"
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"Airflow connection '{WAREHOUSE_CONN_ID}' -> sqlite:///{warehouse} answers" in result.stdout
    assert _load_seed_script().source_rows(f"sqlite:///{warehouse}")["orders"] > 0
    assert f"Run artifacts in s3://{bucket}/artifacts" in result.stdout
    client = s3fs.S3FileSystem(endpoint_url=s3_endpoint, key=environment["AWS_ACCESS_KEY_ID"], secret=environment["AWS_SECRET_ACCESS_KEY"], skip_instance_cache=True)
    assert bucket in [name.rstrip("/") for name in client.ls("")]

    # The api-server's SimpleAuthManager reads the login airflow-init wrote.
    code = (
        "import json; from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager as M;"
        "print(json.dumps([M.get_passwords(), [(u.username, u.role) for u in M.get_users()]]))"
    )
    check = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert check.returncode == 0, check.stderr[-3000:]
    passwords, users = json.loads(check.stdout.strip().splitlines()[-1])
    assert passwords == {"admin": "s3cret-pw"}
    assert users == [["admin", "admin"]]
