"""The nightly DAG as the DAG processor parses it, for dag.test() runs."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO_DIR = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def nightly_dag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO_DIR / "dags"))
    assert bag.import_errors == {}
    return bag.dags["nightly_retrain"]
