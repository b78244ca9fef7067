"""A 3-day backfill of ``nightly_retrain`` under a real Airflow 3 scheduler, and its reprocessing.

Real components in subprocesses (``airflow_stack.AirflowStack``): scheduler (LocalExecutor),
dag-processor and api-server on a fresh PostgreSQL metadata database, with a PostgreSQL warehouse
(the ``shopmtl_warehouse`` connection) seeded by the demo generator. The backfill is created the way
the UI creates it, through ``POST /api/v2/backfills``, with ``max_active_runs`` 3 so the days run at
the same time. The test checks that every day succeeds and is published exactly once, that the runs
overlapped and kept to their own run directories, and that reprocessing the completed backfill
(``reprocess_behavior: completed``) publishes identical rows.

The scheduler does not create the DAG's own scheduled runs here (``[scheduler] use_job_schedule``
False): unpausing a ``catchup=False`` DAG would otherwise start a run for yesterday, a day the demo
warehouse has no data for. Backfill runs need the DAG unpaused all the same.
"""
from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import polars as pl
import pytest
import sqlalchemy as sa

from airflow_stack import AirflowStack, StackError, dump_json
from etl.warehouse import bind_date, bind_timestamp, create_warehouse_engine, read_frame

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.postgres]

DAG_ID = "nightly_retrain"
START = date(2026, 1, 1)
DAYS = [date(2026, 1, 22), date(2026, 1, 23), date(2026, 1, 24)]
RUN_CONF = {"window_days": 21, "maturity_days": 7, "fraud_eval_days": 5, "seed": 3}
SCORE_TABLES = {  # table -> the key that is unique per day, and the order rows are compared in
    "score_user_item": ("user_id", "scenario", "item_id"),
    "score_order_fraud": ("order_id",),
    "score_review_sentiment": ("review_id",),
    "score_item_category": ("item_id",),
    "model_runs": ("model_name", "task", "metric", "scenario"),
}
CHECKSUM_COLUMNS = {  # the scores whose per-day sums are printed and compared
    "score_user_item": ("p_click", "p_purchase", "rank", "item_id"),
    "score_order_fraud": ("p_fraud_mtl", "p_fraud_lgbm"),
    "score_review_sentiment": ("p_negative",),
    "score_item_category": ("confidence", "item_id"),
    "model_runs": ("value", "n_rows"),
}
# Bounded waits. The whole test stays under TOTAL_BUDGET_S: a task that fails waits 2 minutes per
# retry (the DAG's retry_delay), so a failing day still ends inside one backfill's wait.
STARTUP_TIMEOUT_S = 240
BACKFILL_TIMEOUT_S = 420
TOTAL_BUDGET_S = 15 * 60
TERMINAL = {"success", "failed"}


# --- fixtures ------------------------------------------------------------------------------------------


@pytest.fixture
def metadata_db_url(postgres_url: str, database_names):
    """A fresh, empty PostgreSQL database for Airflow's metadata on the tests' server, dropped after."""
    server = sa.make_url(postgres_url)
    name = database_names("airflow_")
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")  # any database can create another
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture
def shopmtl_home(tmp_path: Path) -> Path:
    home = tmp_path / "shopmtl_home"
    home.mkdir()
    return home


@pytest.fixture
def airflow_stack(tmp_path: Path, metadata_db_url: str, postgres_url: str, shopmtl_home: Path):
    """Scheduler, dag-processor and api-server running; stopped (and checked for leftovers) after the test."""
    stack = AirflowStack(
        home=tmp_path / "airflow_home",
        metadata_url=metadata_db_url,
        extra_env={
            "SHOPMTL_HOME": str(shopmtl_home),
            "AIRFLOW_CONN_SHOPMTL_WAREHOUSE": postgres_url.replace("postgresql+psycopg://", "postgresql://", 1),
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        },
    )
    try:
        stack.start(ready_timeout=STARTUP_TIMEOUT_S)
        yield stack
    finally:
        started = time.monotonic()
        problems = stack.stop()
        print(f"\n[backfill test] Airflow stack stopped in {time.monotonic() - started:.1f}s")
        assert not problems, "processes were left behind by the Airflow stack:\n" + "\n".join(problems)


# --- helpers -------------------------------------------------------------------------------------------


def midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def iso(day: date) -> str:
    return midnight(day).isoformat().replace("+00:00", "Z")


def parse_ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def backfill_runs(stack: AirflowStack) -> dict[date, dict]:
    """The DAG's runs for DAYS, by day."""
    runs = stack.api("GET", f"/dags/{DAG_ID}/dagRuns", params={"limit": 100})["dag_runs"]
    by_day = {parse_ts(run["logical_date"]).date(): run for run in runs if run["logical_date"]}
    unexpected = set(by_day) - set(DAYS)
    assert not unexpected, f"dag runs for days nobody asked for: {sorted(unexpected)}\n{dump_json(runs)}"
    return {day: by_day[day] for day in DAYS if day in by_day}


def task_instances(stack: AirflowStack, run_id: str) -> list[dict]:
    return stack.api("GET", f"/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}/taskInstances", params={"limit": 100})[
        "task_instances"
    ]


def create_backfill(stack: AirflowStack, reprocess_behavior: str) -> dict:
    body = {
        "dag_id": DAG_ID,
        "from_date": iso(DAYS[0]),
        "to_date": iso(DAYS[-1]),
        "max_active_runs": len(DAYS),
        "dag_run_conf": RUN_CONF,
        "reprocess_behavior": reprocess_behavior,
        "run_backwards": False,
    }
    planned = stack.api("POST", "/backfills/dry_run", json=body)["backfills"]
    assert [parse_ts(b["logical_date"]).date() for b in planned] == DAYS, dump_json(planned)
    return stack.api("POST", "/backfills", json=body)


def wait_for_backfill(stack: AirflowStack, backfill: dict, deadline: float, label: str) -> tuple[dict[date, dict], float]:
    """Poll until the backfill's three runs have ended and the scheduler marked it complete; (runs, wall s)."""
    started = time.monotonic()
    timeout = min(BACKFILL_TIMEOUT_S, deadline - started)
    assert timeout > 30, f"not enough of the {TOTAL_BUDGET_S}s budget left for the {label}"
    last_print = 0.0
    reported: set[tuple[str, str, int, int]] = set()

    def finished():
        nonlocal last_print
        stack.check_alive()
        runs = backfill_runs(stack)
        states = {day.isoformat(): run["state"] for day, run in runs.items()}
        if time.monotonic() - last_print > 30:
            last_print = time.monotonic()
            print(f"[backfill test] {label} after {time.monotonic() - started:.0f}s: {states}", flush=True)
            report_failed_tries(stack, runs, reported)
        if len(runs) < len(DAYS) or not all(state in TERMINAL for state in states.values()):
            return None
        # A reprocessed run is cleared back to queued when the backfill is created: only believe a
        # terminal state once the run ended after this backfill was created.
        created = parse_ts(backfill["created_at"])
        if any(parse_ts(run["end_date"]) is None or parse_ts(run["end_date"]) < created for run in runs.values()):
            return None
        return runs

    try:
        runs = stack.wait_for(finished, timeout, f"the {label}'s dag runs {[d.isoformat() for d in DAYS]} to finish", 3)
    except StackError as error:
        raise StackError(f"{error}\n{describe_runs(stack)}") from None
    wall_s = time.monotonic() - started
    failed = {day: run for day, run in runs.items() if run["state"] != "success"}
    if failed:
        report = []
        for day, run in failed.items():
            tis = task_instances(stack, run["dag_run_id"])
            bad = [ti["task_id"] for ti in tis if ti["state"] not in ("success", "skipped")]
            report.append(f"===== {day} {run['dag_run_id']} {run['state']}: tasks not successful {bad}")
            report.append(stack.task_logs(run["dag_run_id"], bad))
        pytest.fail(f"the {label} failed for {sorted(map(str, failed))}:\n" + "\n".join(report))
    stack.wait_for(
        lambda: stack.api("GET", f"/backfills/{backfill['id']}")["completed_at"],
        max(30.0, min(120.0, deadline - time.monotonic())),
        f"the scheduler to mark backfill {backfill['id']} complete",
    )
    return runs, wall_s


def report_failed_tries(stack: AirflowStack, runs: dict[date, dict], reported: set) -> None:
    """Print, once each, the log of every task try that failed while the backfill goes on (retries may still pass)."""
    for run in runs.values():
        if run["state"] in TERMINAL:
            continue
        for ti in task_instances(stack, run["dag_run_id"]):
            if ti["state"] in ("up_for_retry", "failed", "upstream_failed"):
                key = (run["dag_run_id"], ti["task_id"], ti["map_index"], ti["try_number"])
                if key not in reported:
                    reported.add(key)
                    print(f"[backfill test] {ti['state']}: {key}\n{stack.task_logs(run['dag_run_id'], [ti['task_id']], 2500)}", flush=True)


def describe_runs(stack: AirflowStack) -> str:
    lines = []
    for day, run in backfill_runs(stack).items():
        tis = task_instances(stack, run["dag_run_id"])
        lines.append(f"{day} {run['dag_run_id']} {run['state']}: " + ", ".join(
            f"{ti['task_id']}{'' if ti['map_index'] < 0 else '[%d]' % ti['map_index']}={ti['state']}" for ti in tis
        ))
        failing = [ti["task_id"] for ti in tis if ti["state"] in ("failed", "up_for_retry", "upstream_failed")]
        if failing:
            lines.append(stack.task_logs(run["dag_run_id"], failing))
    return "\n".join(lines)


def run_span(tis: list[dict]) -> tuple[datetime, datetime]:
    starts = [parse_ts(ti["start_date"]) for ti in tis if ti["start_date"]]
    ends = [parse_ts(ti["end_date"]) for ti in tis if ti["end_date"]]
    return min(starts), max(ends)


def max_overlap(spans: dict[date, tuple[datetime, datetime]]) -> int:
    """The largest number of runs active at the same instant."""
    events = sorted([(start, 1) for start, _ in spans.values()] + [(end, -1) for _, end in spans.values()])
    active = best = 0
    for _, step in events:  # ends sort before starts at the same instant (-1 < 1): touching is not overlapping
        active += step
        best = max(best, active)
    return best


def plan_xcom(stack: AirflowStack, run_id: str) -> dict:
    entry = stack.api("GET", f"/dags/{DAG_ID}/dagRuns/{quote(run_id, safe='')}/taskInstances/plan/xcomEntries/return_value")
    value = entry["value"]
    return json.loads(value) if isinstance(value, str) else value


def read_published(warehouse_url: str) -> dict[str, pl.DataFrame]:
    """Every published row of DAYS, per table, in key order (created_at left out: it is the write time)."""
    engine = create_warehouse_engine(warehouse_url)
    frames = {}
    with engine.connect() as conn:
        for table, key in SCORE_TABLES.items():
            frame = read_frame(conn, f"SELECT * FROM {table} ORDER BY ds, {', '.join(key)}", table=table)
            frames[table] = frame.drop("created_at", strict=False)
    engine.dispose()
    return frames


def checksums(frames: dict[str, pl.DataFrame]) -> dict[str, dict[str, dict]]:
    """Per table and day: the row count, sums of the score columns, and a hash of every ordered row."""
    result: dict[str, dict[str, dict]] = {}
    for table, frame in frames.items():
        per_day = {}
        for (ds,), rows in sorted(frame.group_by("ds"), key=lambda item: str(item[0][0])):
            digest = hashlib.sha256(rows.write_csv().encode()).hexdigest()[:16]
            sums = {col: repr(round(float(rows[col].cast(pl.Float64).sum()), 9)) for col in CHECKSUM_COLUMNS[table] if col in rows.columns}
            per_day[str(ds)] = {"rows": rows.height, **sums, "sha256": digest}
        result[table] = per_day
    return result


def assert_published_once_per_day(warehouse_url: str, frames: dict[str, pl.DataFrame]) -> None:
    expected_days = [day.isoformat() for day in DAYS]
    for table, key in SCORE_TABLES.items():
        frame = frames[table]
        days = sorted({str(ds) for ds in frame["ds"]})
        assert days == expected_days, f"{table} holds days {days}, expected exactly {expected_days}"
        duplicated = frame.select("ds", *key).is_duplicated()
        assert not duplicated.any(), f"{table}: duplicate ({', '.join(('ds', *key))}) rows:\n{frame.filter(duplicated)}"
    engine = create_warehouse_engine(warehouse_url)
    with engine.connect() as conn:
        for day in DAYS:
            window = {"start": bind_timestamp(conn, day), "end": bind_timestamp(conn, day + timedelta(days=1))}
            orders = read_frame(conn, "SELECT order_id FROM orders WHERE created_at >= :start AND created_at < :end ORDER BY order_id", window)
            reviews = read_frame(conn, "SELECT review_id FROM reviews WHERE created_at >= :start AND created_at < :end ORDER BY review_id", window)
            ds = bind_date(conn, day)
            fraud = read_frame(conn, "SELECT order_id FROM score_order_fraud WHERE ds = :ds ORDER BY order_id", {"ds": ds})
            sentiment = read_frame(conn, "SELECT review_id FROM score_review_sentiment WHERE ds = :ds ORDER BY review_id", {"ds": ds})
            assert orders.height > 0 and fraud["order_id"].to_list() == orders["order_id"].to_list(), (
                f"{day}: {fraud.height} fraud scores for {orders.height} orders of the day"
            )
            assert sentiment["review_id"].to_list() == reviews["review_id"].to_list(), (
                f"{day}: {sentiment.height} sentiment scores for {reviews.height} reviews of the day"
            )
            runs = frames["model_runs"].filter(pl.col("ds").cast(pl.String) == day.isoformat())
            assert set(runs["model_name"]) == {"multitask", "fraud_lgbm"}, runs
            assert set(runs["task"]) == {"click", "purchase", "review", "category", "fraud"}, runs
            assert runs["run_id"].n_unique() == 1, f"{day}: model_runs rows of several runs {runs['run_id'].unique().to_list()}"
    engine.dispose()
    recommendations = frames["score_user_item"]
    per_user = recommendations.group_by("ds", "user_id", "scenario").agg(pl.len().alias("n"), pl.col("rank").max().alias("max_rank"))
    assert per_user["n"].max() <= 20 and (per_user["n"] == per_user["max_rank"]).all()


# --- the test ------------------------------------------------------------------------------------------


def test_three_day_backfill_runs_days_concurrently_publishes_each_once_and_reprocesses_identically(
    airflow_stack: AirflowStack, postgres_url: str, shopmtl_home: Path
):
    from demo.synthetic import generate_warehouse

    test_started = time.monotonic()
    deadline = test_started + TOTAL_BUDGET_S
    stack = airflow_stack
    generate_warehouse(postgres_url, START, DAYS[-1], scale=0.3, seed=3)

    # The dag-processor has parsed the DAG folder and the DAG is serialized: the UI can show and backfill it.
    stack.wait_for(
        lambda: stack.check_alive() or stack.api("GET", f"/dags/{DAG_ID}", expect=(200, 404)).get("dag_id"),
        STARTUP_TIMEOUT_S,
        f"the dag-processor to serialize {DAG_ID}",
    )
    import_errors = stack.api("GET", "/importErrors")
    assert import_errors["total_entries"] == 0, dump_json(import_errors)
    assert stack.api("PATCH", f"/dags/{DAG_ID}", json={"is_paused": False})["is_paused"] is False

    # --- the backfill ----------------------------------------------------------------------------------
    first = create_backfill(stack, "none")
    assert first["max_active_runs"] == len(DAYS) and first["dag_run_conf"] == RUN_CONF, dump_json(first)
    runs, backfill_wall_s = wait_for_backfill(stack, first, deadline, "3-day backfill")
    print(f"\n[backfill test] 3-day backfill (max_active_runs={len(DAYS)}): {backfill_wall_s:.1f}s wall", flush=True)
    assert {run["run_type"] for run in runs.values()} == {"backfill"}
    assert all(run["conf"] == RUN_CONF for run in runs.values()), dump_json(runs)

    # The days ran at the same time, each in its own run directory.
    spans = {day: run_span(task_instances(stack, run["dag_run_id"])) for day, run in runs.items()}
    for day, (start, end) in spans.items():
        print(f"[backfill test]   {day}: tasks from {start:%H:%M:%S} to {end:%H:%M:%S} ({(end - start).total_seconds():.0f}s)")
    overlap = max_overlap(spans)
    print(f"[backfill test]   at most {overlap} runs active at once")
    assert overlap >= 2, f"the backfill's runs did not overlap in time: {spans}"
    for day, run in runs.items():
        plan = plan_xcom(stack, run["dag_run_id"])
        run_dir = shopmtl_home / "runs" / day.isoformat()
        assert plan["ds"] == day.isoformat() and Path(plan["run_dir"]) == run_dir, plan
        assert (run_dir / "features" / "manifest.json").is_file()
        assert (run_dir / "models" / "multitask" / "model.pt").is_file()
        assert (run_dir / "models" / "fraud_lgbm" / "model.txt").is_file()
        manifest = json.loads((run_dir / "features" / "manifest.json").read_text())
        assert manifest["ds"] == day.isoformat(), manifest
    assert sorted(path.name for path in (shopmtl_home / "runs").iterdir()) == [day.isoformat() for day in DAYS]
    assert not (shopmtl_home / "warehouse.db").exists(), "a task used the embedded warehouse instead of the connection"

    published = read_published(postgres_url)
    assert_published_once_per_day(postgres_url, published)
    before = checksums(published)
    print("[backfill test] published:", json.dumps({t: {d: v["rows"] for d, v in days.items()} for t, days in before.items()}))

    # --- reprocessing the completed backfill -----------------------------------------------------------
    second = create_backfill(stack, "completed")
    assert second["id"] != first["id"] and second["reprocess_behavior"] == "completed", dump_json(second)
    rerun, reprocess_wall_s = wait_for_backfill(stack, second, deadline, "reprocess backfill")
    print(f"[backfill test] reprocess of the completed backfill: {reprocess_wall_s:.1f}s wall", flush=True)
    assert {day: run["dag_run_id"] for day, run in rerun.items()} == {day: run["dag_run_id"] for day, run in runs.items()}
    for day, run in rerun.items():  # the runs really ran again: their tasks are on a second try
        tis = task_instances(stack, run["dag_run_id"])
        assert all(ti["try_number"] >= 2 for ti in tis if ti["state"] == "success"), dump_json(tis)

    republished = read_published(postgres_url)
    assert_published_once_per_day(postgres_url, republished)
    after = checksums(republished)
    differing = {
        table: {day: {"first": before[table].get(day), "reprocess": after[table].get(day)}}
        for table in SCORE_TABLES
        for day in sorted(set(before[table]) | set(after[table]))
        if before[table].get(day) != after[table].get(day)
    }
    assert not differing, "reprocessing changed published rows:\n" + json.dumps(differing, indent=1)
    for table in SCORE_TABLES:
        assert published[table].write_csv() == republished[table].write_csv(), f"{table} changed on reprocessing"

    print(
        f"[backfill test] wall times: 3-day backfill {backfill_wall_s:.1f}s, reprocess {reprocess_wall_s:.1f}s, "
        f"test body {time.monotonic() - test_started:.1f}s",
        flush=True,
    )
