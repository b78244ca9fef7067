"""docker-compose.yml (which cannot run here) parses and agrees with the code."""
from __future__ import annotations

from pathlib import Path

import yaml

from etl.contract import WAREHOUSE_CONN_ID

REPO_DIR = Path(__file__).resolve().parents[2]


def test_compose_file_parses_and_wires_the_warehouse_connection():
    compose = yaml.safe_load((REPO_DIR / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"} <= set(services)
    for name in ("airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"):
        environment = services[name]["environment"]
        assert f"AIRFLOW_CONN_{WAREHOUSE_CONN_ID.upper()}" in environment
        assert environment["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/shopmtl-src/dags"
        assert "SHOPMTL_HOME" in environment


def test_image_installs_every_package_the_dags_import():
    dockerfile = (REPO_DIR / "Dockerfile").read_text()
    for folder in ("etl", "training", "validation", "sql", "dags"):
        assert f"COPY {folder} ./{folder}" in dockerfile
    assert "-c requirements.lock" in dockerfile
