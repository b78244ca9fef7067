"""Every DAG file imports cleanly, has tags and retries, and does no work at parse time."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_DIR = Path(__file__).resolve().parents[2]
DAG_FILES = sorted((REPO_DIR / "dags").glob("*.py"))


@pytest.fixture(scope="module")
def dag_bag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO_DIR / "dags"))


def test_every_dag_file_imports_without_errors(dag_bag):
    assert DAG_FILES, "no DAG files found"
    assert dag_bag.import_errors == {}
    assert "nightly_retrain" in dag_bag.dags


def test_every_dag_has_tags_retries_and_docs(dag_bag):
    for dag_id, dag in dag_bag.dags.items():
        assert dag.tags, f"{dag_id} has no tags"
        assert dag.doc_md, f"{dag_id} has no doc_md"
        for task in dag.tasks:
            assert task.retries >= 1, f"{dag_id}.{task.task_id} has no retries"


def test_nightly_retrain_uses_a_daily_data_interval_timetable(dag_bag):
    from airflow.timetables.interval import CronDataIntervalTimetable

    dag = dag_bag.dags["nightly_retrain"]
    assert isinstance(dag.timetable, CronDataIntervalTimetable)
    assert set(dag.params.keys()) >= {"window_days", "maturity_days", "seed", "ds"}
    assert dag.params["window_days"] == 28 and dag.params["maturity_days"] == 14


def test_dag_extracts_exactly_the_contract_tables(dag_bag):
    from etl.warehouse import TABLE_SCHEMAS
    from etl.contract import SOURCE_TABLES

    assert set(SOURCE_TABLES) <= set(TABLE_SCHEMAS)
    task_ids = set(dag_bag.dags["nightly_retrain"].task_ids)
    assert {"plan", "extract", "validate", "build_features", "train_multitask", "train_fraud_baseline", "publish", "report"} <= task_ids
    assert "publish" in dag_bag.dags["nightly_retrain"].get_task("report").upstream_task_ids


PARSE_PROBE = r"""
import importlib.util, json, sys
from airflow.sdk import Connection
calls = []
original = Connection.get
Connection.get = classmethod(lambda cls, *a, **k: calls.append(a) or original.__func__(cls, *a, **k))
for path in sys.argv[1:]:
    spec = importlib.util.spec_from_file_location("dag_module", path)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
heavy = [m for m in ("polars", "torch", "lightgbm", "great_expectations", "etl.warehouse", "training") if m in sys.modules]
print(json.dumps({"connection_calls": len(calls), "heavy_modules": heavy}))
"""


def test_publish_declares_every_published_table_as_an_asset(dag_bag):
    from etl.contract import PUBLISHED_TABLES

    publish = dag_bag.dags["nightly_retrain"].get_task("publish")
    assert sorted((asset.name, asset.uri, asset.group) for asset in publish.outlets) == sorted(
        (table, f"x-shopmtl://warehouse/{table}", "shopmtl") for table in PUBLISHED_TABLES
    )


def test_the_readme_dag_scheduled_on_a_published_table_parses_and_waits_for_its_asset(tmp_path):
    from airflow.dag_processing.dagbag import DagBag

    readme = (REPO_DIR / "README.md").read_text()
    source = readme.split("<!-- asset-consumer-dag -->\n```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "fraud_review_queue.py").write_text(source)
    bag = DagBag(dag_folder=str(tmp_path))
    assert bag.import_errors == {}
    condition = bag.dags["fraud_review_queue"].timetable.asset_condition
    assert [asset.uri for asset in condition.objects] == ["x-shopmtl://warehouse/score_order_fraud"]


def test_dag_files_touch_no_connection_and_import_nothing_heavy_at_parse_time(airflow_db):
    result = subprocess.run(
        [sys.executable, "-c", PARSE_PROBE, *map(str, DAG_FILES)],
        capture_output=True, text=True, env=os.environ.copy(), cwd=REPO_DIR,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"connection_calls": 0, "heavy_modules": []}
