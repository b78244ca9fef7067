"""``make demo``: seed the embedded demo warehouse, run the nightly DAG for its last day through
Airflow (``airflow dags test``), and show what was published.

    python -m demo --start 2026-01-01 --end 2026-02-04 --scale 1 --seed 7
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import polars as pl

from demo.progress import TaskProgress, stream_command
from etl.config import load_settings
from etl.contract import DAG_ID, PUBLISHED_TABLES
from etl.layout import RunLayout
from etl.warehouse import bind_date, create_warehouse_engine, read_frame

REPO_DIR = Path(__file__).resolve().parents[1]

# Reads only what the read-only analyst role may read (score tables and views, no source tables).
EXAMPLE_QUERY = """\
-- The top 5 recommendations of the day for three users, with the item's listed category
SELECT s.user_id, s.scenario, s.rank, s.item_id, c.listed_category, ROUND(CAST(s.p_click AS NUMERIC), 3) AS p_click,
       ROUND(CAST(s.p_purchase AS NUMERIC), 4) AS p_purchase
FROM score_user_item s LEFT JOIN score_item_category c ON c.ds = s.ds AND c.item_id = s.item_id
WHERE s.ds = :ds AND s.rank <= 5 AND s.user_id IN (
    SELECT DISTINCT user_id FROM score_user_item WHERE ds = :ds ORDER BY user_id LIMIT 3)
ORDER BY s.user_id, s.scenario, s.rank"""


def airflow_environment(airflow_home: Path) -> dict[str, str]:
    """Environment for the Airflow CLI: our DAG folder, no examples, the embedded warehouse."""
    env = dict(os.environ)
    env.update(
        AIRFLOW_HOME=str(airflow_home),
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO_DIR / "dags"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
    )
    # The demo seeds the embedded warehouse, so the DAG must not be pointed elsewhere.
    env.pop("AIRFLOW_CONN_SHOPMTL_WAREHOUSE", None)
    return env


def run_airflow(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.CompletedProcess[str]:
    """Run the Airflow CLI from this virtualenv, keeping its output in ``log_path``."""
    airflow = Path(sys.executable).with_name("airflow")
    result = subprocess.run([str(airflow), *args], env=env, capture_output=True, text=True)
    with log_path.open("a") as log_file:
        log_file.write(f"$ airflow {' '.join(args)}\n{result.stdout}\n{result.stderr}\n")
    return result


def parse_json_output(stdout: str) -> list[dict[str, object]]:
    """The JSON list an Airflow CLI command printed (Airflow may print warnings before it)."""
    return json.loads(next(line for line in stdout.splitlines() if line.startswith("[")))


def read_task_instances(env: dict[str, str], log_path: Path) -> pl.DataFrame:
    """Every task instance of the latest run (mapped ones apart) with its UTC start, end and seconds,
    from Airflow's own records; shared with ``python -m bench``."""
    runs = run_airflow(["dags", "list-runs", DAG_ID, "-o", "json"], env, log_path)
    run_id = parse_json_output(runs.stdout)[0]["run_id"]
    states = run_airflow(["tasks", "states-for-dag-run", DAG_ID, run_id, "-o", "json"], env, log_path)
    records = pl.DataFrame(parse_json_output(states.stdout))
    return records.with_columns(
        pl.col("start_date").str.to_datetime(time_zone="UTC", strict=False),
        pl.col("end_date").str.to_datetime(time_zone="UTC", strict=False),
    ).with_columns(((pl.col("end_date") - pl.col("start_date")).dt.total_milliseconds() / 1000).alias("seconds"))


def read_task_durations(env: dict[str, str], log_path: Path) -> pl.DataFrame:
    """Per-task wall time of the latest run, from Airflow's own task-instance records."""
    times = read_task_instances(env, log_path)
    return times.group_by("task_id", maintain_order=True).agg(pl.col("seconds").max().round(1), pl.len().alias("instances"))


def print_published(warehouse_url: str, ds: date) -> None:
    """Row counts, headline metrics and an analyst's query for day ``ds``."""
    engine = create_warehouse_engine(warehouse_url)
    with engine.connect() as conn, pl.Config(tbl_rows=40, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True):
        params = {"ds": bind_date(conn, ds)}
        print(f"\nPublished for ds={ds}:")
        for table in PUBLISHED_TABLES:
            count = read_frame(conn, f"SELECT COUNT(*) AS n FROM {table} WHERE ds = :ds", params)["n"][0]
            print(f"  {table:<22} {count:>7} rows")
        registry = read_frame(
            conn,
            "SELECT model_name, model_version, objective, status FROM model_registry WHERE trained_ds = :ds "
            "ORDER BY model_name, objective",
            params,
        )
        print("\nModel registry (champion/challenger gate):")
        print(registry)
        metrics = read_frame(
            conn,
            "SELECT model_name, task, scenario, metric, value, n_rows FROM model_runs WHERE ds = :ds "
            "ORDER BY task, model_name, scenario, metric",
            params,
        ).pivot(on="metric", index=["task", "model_name", "scenario", "n_rows"], values="value")
        print("\nHeadline metrics on the day-D evaluation (model_runs):")
        print(metrics)
        print("\nAn analyst's query:\n" + EXAMPLE_QUERY.replace(":ds", f"'{ds}'") + "\n")
        print(read_frame(conn, EXAMPLE_QUERY, params))
    engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--start", type=date.fromisoformat, required=True)
    parser.add_argument("--end", type=date.fromisoformat, required=True, help="last seeded day; the DAG runs for it")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    from demo.oracle import compare_with_oracle
    from demo.synthetic import generate_warehouse

    settings = load_settings()
    warehouse_url = settings.embedded_warehouse_url
    airflow_home = settings.home / "airflow"
    airflow_home.mkdir(parents=True, exist_ok=True)
    log_path = settings.home / "demo.log"
    log_path.write_text("")
    started = time.perf_counter()

    print(f"SHOPMTL_HOME={settings.home}\nSeeding the demo warehouse {warehouse_url} ({args.start}..{args.end}, scale {args.scale}) ...")
    t0 = time.perf_counter()
    rows = generate_warehouse(warehouse_url, args.start, args.end, scale=args.scale, seed=args.seed)
    print(f"  {sum(rows.values())} rows in {time.perf_counter() - t0:.1f} s: " + ", ".join(f"{t}={n}" for t, n in rows.items()))

    env = airflow_environment(airflow_home)
    print(f"Migrating the Airflow metadata database in {airflow_home} ...")
    if run_airflow(["db", "migrate"], env, log_path).returncode != 0:
        print(f"airflow db migrate failed; see {log_path}", file=sys.stderr)
        return 1
    print(f"Running `airflow dags test {DAG_ID} {args.end}` (task logs in {log_path}, written as they come) ...")
    t0 = time.perf_counter()
    progress = TaskProgress()
    airflow = str(Path(sys.executable).with_name("airflow"))
    returncode = stream_command([airflow, "dags", "test", DAG_ID, args.end.isoformat()], env, log_path, progress)
    dag_seconds = time.perf_counter() - t0
    if returncode != 0 or not progress.succeeded:
        print("".join(progress.tail)[-6000:], file=sys.stderr)
        print(f"\nThe DAG run failed; full output in {log_path}", file=sys.stderr)
        return 1
    print(f"  DAG run succeeded in {dag_seconds:.1f} s. Time per task:")
    with pl.Config(tbl_rows=40, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True):
        print(read_task_durations(env, log_path))
        print_published(warehouse_url, args.end)
        print("\nModels next to the generator's truth (oracle) on the same evaluation rows:")
        print(compare_with_oracle(warehouse_url, settings.run_dir(args.end)).with_columns(pl.col(pl.Float64).round(4)))
    run_dir = settings.run_dir(args.end)
    print(f"\nRun directory: {run_dir}\nRun report: {RunLayout(run_dir).report_path}\nDemo wall time: {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
