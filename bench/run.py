"""One scale of the benchmark: a fresh PostgreSQL warehouse, seeded; the real DAG run through
``airflow dags test`` with the RSS of its process tree sampled; per-stage seconds, rows and peak RSS.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import sqlalchemy as sa

from demo.__main__ import airflow_environment, read_task_instances, run_airflow
from etl.contract import DAG_ID, FRAUD_LGBM, MULTITASK, PUBLISHED_TABLES, SOURCE_TABLES, WAREHOUSE_CONN_ID
from etl.layout import FEATURE_TABLES, METRICS_FILE, RunLayout, extract_path, feature_path, parquet_files
from etl.warehouse import bind_date, normalize_url

SAMPLE_INTERVAL_S = 0.2
# The Airflow tasks reported, in DAG order (list_sources only hands the plan's list to the mapping).
STAGES = (
    "plan", "extract", "validate", "build_features", "train_multitask", "train_fraud_baseline",
    "gate_multitask", "gate_fraud_baseline", "publish", "report",
)  # fmt: skip
RUN = "run"  # the whole run: first task start to last task end


@dataclass(frozen=True)
class BenchDatabase:
    name: str
    url: str  # SQLAlchemy URL (psycopg 3)
    libpq_url: str  # postgresql://... for psycopg.connect and the Airflow connection


@contextmanager
def bench_database(admin_url: str, scale: float, keep: bool = False) -> Iterator[BenchDatabase]:
    """A fresh database ``shopmtl_bench_<scale>_<random>`` on the server of ``admin_url``; dropped after unless ``keep``."""
    name = f"shopmtl_bench_{str(scale).replace('.', '_')}_{uuid.uuid4().hex[:6]}"
    admin = sa.create_engine(normalize_url(admin_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    base = sa.make_url(normalize_url(admin_url)).set(database=name)
    database = BenchDatabase(
        name=name,
        url=base.render_as_string(hide_password=False),
        libpq_url=base.set(drivername="postgresql").render_as_string(hide_password=False),
    )
    try:
        yield database
    finally:
        if not keep:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def seed_warehouse(url: str, start: date, end: date, scale: float, seed: int) -> dict[str, object]:
    """Fill the warehouse with the demo generator; rows per table and seconds."""
    from demo.synthetic import generate_warehouse

    started = time.perf_counter()
    rows = generate_warehouse(url, start, end, scale=scale, seed=seed)
    return {"rows": rows, "seconds": time.perf_counter() - started}


def read_tree_rss(process: psutil.Process) -> tuple[int, int]:
    """(resident bytes, anonymous resident bytes) of a process and all its descendants, each shared page
    counted once: sums of their proportional set sizes (PSS). Summing RSS would count twice the training
    data that forked data-parallel replicas share copy-on-write with their parent (training/parallel.py).
    The anonymous part (``Pss_Anon``) is the memory the processes own; the rest is mapped files (the
    training impressions' memory maps, training/impression_rows.py), page cache the kernel can drop."""
    total = anonymous = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            rollup = Path(f"/proc/{member.pid}/smaps_rollup").read_text()
        except OSError:  # exited between listing and reading
            continue
        fields = dict(line.split(":", 1) for line in rollup.splitlines()[1:] if ":" in line)
        total += int(fields.get("Pss", "0 kB").split()[0]) * 1024
        anonymous += int(fields.get("Pss_Anon", "0 kB").split()[0]) * 1024
    return total, anonymous


def run_dag_sampled(env: dict[str, str], ds: date, log_path: Path) -> dict[str, object]:
    """``airflow dags test`` for day ``ds``, sampling its process tree's RSS every ``SAMPLE_INTERVAL_S``."""
    airflow = Path(sys.executable).with_name("airflow")
    # (epoch seconds, PSS bytes, anonymous PSS bytes): epoch time, to match Airflow's task times
    samples: list[tuple[float, int, int]] = []
    started = time.perf_counter()
    with log_path.open("a") as log_file:
        log_file.write(f"$ airflow dags test {DAG_ID} {ds}\n")
        log_file.flush()
        child = subprocess.Popen(
            [str(airflow), "dags", "test", DAG_ID, ds.isoformat()], env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
        process = psutil.Process(child.pid)
        while child.poll() is None:
            try:
                samples.append((time.time(), *read_tree_rss(process)))
            except psutil.Error:
                pass
            time.sleep(SAMPLE_INTERVAL_S)
    wall_s = time.perf_counter() - started
    output = log_path.read_text()
    succeeded = child.returncode == 0 and "state=success" in output.rsplit(f"$ airflow dags test {DAG_ID}", 1)[-1]
    return {"returncode": child.returncode, "succeeded": succeeded, "wall_s": wall_s, "samples": samples}


def summarize_stages(instances: list[dict[str, object]], samples: list[tuple[float, int, int]]) -> dict[str, dict]:
    """Seconds (max and sum over mapped instances) and peak tree PSS (all, anonymous) within each stage's [start, end]."""
    stages: dict[str, dict] = {}
    spans = [row for row in instances if row["start"] is not None and row["end"] is not None]
    for stage in (*STAGES, RUN):
        rows = spans if stage == RUN else [row for row in spans if row["task_id"] == stage]
        if not rows:
            stages[stage] = {
                "seconds": None, "seconds_sum": None, "instances": 0, "peak_rss_bytes": None, "peak_anon_bytes": None,
            }
            continue
        start, end = min(row["start"] for row in rows), max(row["end"] for row in rows)
        seconds = [row["end"] - row["start"] for row in rows]
        # A sub-second task can fall between two samples: take the sample just before it too.
        inside = [(rss, anon) for at, rss, anon in samples if start - SAMPLE_INTERVAL_S <= at <= end]
        stages[stage] = {
            "seconds": end - start if stage == RUN else max(seconds),
            "seconds_sum": end - start if stage == RUN else sum(seconds),
            "instances": len(rows),
            "peak_rss_bytes": max(rss for rss, _ in inside) if inside else None,
            "peak_anon_bytes": max(anon for _, anon in inside) if inside else None,
        }
    return stages


def count_parquet_rows(paths: list[Path]) -> int:
    """Rows of the Parquet files and dataset folders that exist (footer metadata only)."""
    return sum(pq.read_metadata(file).num_rows for path in paths for file in parquet_files(path))


def read_metrics(layout: RunLayout, model_name: str) -> dict:
    """A model's ``metrics.json`` in the run, or {} when the model did not train."""
    path = layout.model_dir(model_name) / METRICS_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def count_training_rows(metrics: dict) -> int:
    """Training rows of a model: click and purchase share the impressions, so each kind counts once."""
    from training.data import OBJECTIVE_KIND

    per_kind: dict[str, int] = {}
    for objective, rows in metrics.get("n_train", {}).items():
        per_kind[OBJECTIVE_KIND[objective]] = int(rows)
    return sum(per_kind.values())


def count_eval_rows(metrics: dict) -> int:
    """Day-D evaluation rows a gate compares on: the largest ``n_rows`` of each objective's metrics."""
    per_task: dict[str, int] = {}
    for row in metrics.get("metrics", []):
        per_task[row["task"]] = max(per_task.get(row["task"], 0), int(row.get("n_rows") or 0))
    return sum(per_task.values())


def count_published_rows(url: str, ds: date) -> int:
    """Rows the run published for ``ds`` in the score tables and ``model_runs``."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            params = {"ds": bind_date(conn, ds)}
            return sum(conn.execute(sa.text(f"SELECT COUNT(*) FROM {table} WHERE ds = :ds"), params).scalar() for table in PUBLISHED_TABLES)
    finally:
        engine.dispose()


def count_stage_rows(layout: RunLayout, url: str, ds: date) -> dict[str, dict[str, object]]:
    """Rows each stage handled, and what they are (the basis of rows/s and of the growth exponents)."""
    clicks = count_parquet_rows([extract_path(layout.extract_dir, "clicks")])
    extracted = count_parquet_rows([extract_path(layout.extract_dir, table) for table in SOURCE_TABLES])
    features = count_parquet_rows([feature_path(layout.features_dir, table) for table in FEATURE_TABLES])
    multitask, lgbm = read_metrics(layout, MULTITASK), read_metrics(layout, FRAUD_LGBM)
    published = count_published_rows(url, ds)
    counted = {
        "plan": (clicks, "clicks in the window"),
        "extract": (extracted, "extracted rows, all sources"),
        "validate": (extracted, "extracted rows, all sources"),
        "build_features": (features, "feature rows, all files"),
        "train_multitask": (count_training_rows(multitask), "training rows (n_train per batch kind)"),
        "train_fraud_baseline": (count_training_rows(lgbm), "training rows (n_train)"),
        "gate_multitask": (count_eval_rows(multitask), "day-D evaluation rows"),
        "gate_fraud_baseline": (count_eval_rows(lgbm), "day-D evaluation rows"),
        "publish": (published, "published rows (score tables + model_runs)"),
        "report": (published, "published rows (score tables + model_runs)"),
        RUN: (extracted, "extracted rows, all sources"),
    }
    return {stage: {"rows": rows, "rows_what": what} for stage, (rows, what) in counted.items()}


def run_scale(
    database: BenchDatabase, scale: float, start: date, end: date, seed: int, home: Path, nights: int = 1
) -> dict[str, object]:
    """Seed ``database`` at ``scale`` and run the DAG for the ``nights`` days ending with ``end`` under a
    private ``home``; per-stage figures of the last night.

    With ``nights`` > 1 the earlier nights fill the daily partitions of the event sources, so the
    measured night is a steady-state one (it extracts one day of events, as every night after the
    first does); their wall times are recorded too.
    """
    (home / "airflow").mkdir(parents=True, exist_ok=True)
    log_path = home / "bench.log"
    log_path.write_text("")
    seeded = seed_warehouse(database.url, start, end, scale, seed)
    env = airflow_environment(home / "airflow")
    env.update({f"AIRFLOW_CONN_{WAREHOUSE_CONN_ID.upper()}": database.libpq_url, "SHOPMTL_HOME": str(home)})
    # `dags test` runs every task in one process: a native crash (an abort, a segfault) ends the whole
    # run, so have Python print every thread's stack into the log when one happens.
    env["PYTHONFAULTHANDLER"] = "1"
    migrated = run_airflow(["db", "migrate"], env, log_path)
    if migrated.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed; see {log_path}")
    earlier_nights = []
    for back in range(nights - 1, 0, -1):
        night = run_dag_sampled(env, end - timedelta(days=back), log_path)
        if not night["succeeded"]:
            raise RuntimeError(f"the DAG run for {end - timedelta(days=back)} at scale {scale} failed; see {log_path}")
        earlier_nights.append({"ds": (end - timedelta(days=back)).isoformat(), "wall_s": night["wall_s"]})
    dag = run_dag_sampled(env, end, log_path)
    if not dag["succeeded"]:
        raise RuntimeError(f"the DAG run at scale {scale} failed; see {log_path}")
    frame = read_task_instances(env, log_path)
    instances = [
        {"task_id": row["task_id"], "state": row["state"],
         "start": row["start_date"].timestamp() if row["start_date"] else None,
         "end": row["end_date"].timestamp() if row["end_date"] else None}
        for row in frame.iter_rows(named=True)
    ]  # fmt: skip
    stages = summarize_stages(instances, dag["samples"])
    layout = RunLayout(home / "runs" / end.isoformat())
    for stage, counted in count_stage_rows(layout, database.url, end).items():
        stages[stage].update(counted)
        seconds = stages[stage]["seconds_sum"]
        stages[stage]["rows_per_s"] = counted["rows"] / seconds if seconds and counted["rows"] else None
    rss = [value for _, value, _ in dag["samples"]]
    anonymous = [value for _, _, value in dag["samples"]]
    intervals = [later[0] - earlier[0] for earlier, later in zip(dag["samples"], dag["samples"][1:])]
    n_train = read_metrics(layout, MULTITASK).get("n_train", {})
    return {
        "scale": scale,
        "database": database.name,
        "home": str(home),
        "run_dir": str(layout.run_dir),
        "seed_rows": seeded["rows"],
        "seed_s": seeded["seconds"],
        "clicks_window_rows": stages["plan"]["rows"],
        "nights": nights,
        "earlier_nights": earlier_nights,  # unmeasured nights before ``end`` (they fill the partitions)
        "dag_wall_s": dag["wall_s"],
        "dag_peak_rss_bytes": max(rss) if rss else None,
        "dag_peak_anon_bytes": max(anonymous) if anonymous else None,
        "rss_samples": len(rss),
        "rss_median_interval_s": statistics.median(intervals) if intervals else None,
        "n_train": n_train,  # the network's training rows per objective
        "stages": stages,
    }
