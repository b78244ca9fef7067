"""The whole nightly DAG with its artifacts on S3 (a local S3 server over HTTP) and its warehouse on
PostgreSQL, every task starting on an empty worker: what one task writes reaches the next only
through the store, as on workers that share nothing but PostgreSQL, the broker and the object store."""
from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest

from etl.warehouse import create_warehouse_engine, read_frame
from tests.dags.test_nightly_dag import DS, SCORE_TABLES, START, assert_published_day, run_day

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.integration]

RUN_METADATA = ("run_id", "created_at", "published_at")  # differ between two runs by nature


def empty(home: Path) -> None:
    for child in home.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def test_the_dag_on_s3_artifacts_with_every_task_on_an_empty_worker_twice_gives_identical_rows(
    nightly_dag, shopmtl_home, postgres_url, s3_artifacts, monkeypatch
):
    from demo.synthetic import generate_warehouse
    from etl.artifacts import load_artifact_store

    generate_warehouse(postgres_url, START, DS, scale=0.3, seed=3)
    monkeypatch.setenv("AIRFLOW_CONN_SHOPMTL_WAREHOUSE", postgres_url.replace("postgresql+psycopg://", "postgresql://"))
    started: list[str] = []

    def start_on_an_empty_worker(context) -> None:
        empty(shopmtl_home)  # nothing on local disk from earlier tasks: only the store carries files
        started.append(context["ti"].task_id)

    for task in nightly_dag.tasks:  # Airflow's pre_execute hook runs in the task, just before it executes
        if hasattr(task, "partial_kwargs"):  # a mapped task builds its operators from these
            monkeypatch.setitem(task.partial_kwargs, "pre_execute", start_on_an_empty_worker)
        else:
            monkeypatch.setattr(task, "_pre_execute_hook", start_on_an_empty_worker)

    assert run_day(nightly_dag, DS) == "success"
    assert {"extract", "build_features", "train_multitask", "gate_multitask", "publish", "report"} <= set(started)
    first = assert_published_day(postgres_url, DS)
    assert run_day(nightly_dag, DS) == "success"  # the same day again, from the store alone
    second = assert_published_day(postgres_url, DS)
    for table in SCORE_TABLES:
        drop = [column for column in RUN_METADATA if column in first[table].columns]
        assert first[table].drop(drop).equals(second[table].drop(drop)), f"{table} differs between the two runs"

    store = load_artifact_store()
    assert store.shared and store.url == s3_artifacts
    run = shopmtl_home / "runs" / DS.isoformat()
    for folder in ("data_docs", "features", "report"):
        assert store.read_commit(run / folder) is not None, f"runs/{DS}/{folder} was not committed to the store"
    assert store.fs.exists(store.key(run / "report.html"))
    engine = create_warehouse_engine(postgres_url)
    with engine.connect() as conn:
        registry = read_frame(conn, "SELECT model_name, artifact_path FROM model_registry ORDER BY model_name")
    engine.dispose()
    assert registry.height > 0
    assert registry["artifact_path"].str.starts_with(f"{s3_artifacts}/runs/{DS.isoformat()}/models/").all(), registry
    for location in registry["artifact_path"].unique():
        assert store.read_commit(store.local_path(location)) is not None
    # The features refer to the kept impression days rather than storing them twice.
    record = store.read_commit(run / "features")
    referred = [entry for name, entry in record["files"].items() if name.startswith("impressions.parquet/") and "same_as" in entry]
    assert referred and all("/partitions/" in entry["same_as"] for entry in referred)
    assert pl.Series([entry["size"] for entry in referred]).min() > 0
