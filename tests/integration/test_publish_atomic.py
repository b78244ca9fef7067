"""Publishing is atomic: a publisher killed mid-write leaves the day's previous rows intact,
readers keep reading them while the write is in progress, and the retried publish replaces them.

The publisher is a real ``publish_scores`` in a child process, writing a day big enough to take a few
seconds; the test waits until the child holds the table's write lock (PostgreSQL: a RowExclusiveLock
in pg_locks; SQLite: the database's write lock), reads the table as an analyst would, then SIGKILLs
the child: no clean-up code runs, as when a worker dies or the OOM killer strikes.
"""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa

from etl.publish import publish_scores
from etl.warehouse import bind_date, create_warehouse_engine, read_frame

pytestmark = pytest.mark.integration

DS = date(2026, 2, 4)
N_USERS = 150_000  # x 20 recommendations: ~3M rows, several seconds to write on either database
TOP_K = 20
OLD_VERSION, NEW_VERSION = "old-model", "new-model"
REPO_DIR = Path(__file__).resolve().parents[2]

# The child runs this module's publish(), with arguments from argv.
PUBLISHER = """
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from test_publish_atomic import publish
args = json.loads(sys.argv[1])
publish(args["url"], Path(args["dir"]), args["version"])
"""


def write_candidates(model_dir: Path, n_users: int, seed: int) -> None:
    """A model output directory whose candidates give ``n_users`` x TOP_K recommendations."""
    predictions = model_dir / "predictions"
    predictions.mkdir(parents=True)
    users = pl.int_range(1, n_users + 1, eager=True, dtype=pl.Int64)
    candidates = pl.DataFrame({"user_id": users}).join(
        pl.DataFrame({"item_id": pl.int_range(1, TOP_K + 1, eager=True, dtype=pl.Int64)}), how="cross"
    )
    noise = pl.int_range(0, candidates.height, eager=True).hash(seed) % 1000 / 1000.0
    candidates = candidates.with_columns(p_click=noise * 0.5 + 0.4, p_purchase=noise * 0.3, scenario=pl.lit("home_feed"))
    candidates.write_parquet(predictions / "candidates.parquet")


def publish(url: str, model_dir: Path, version: str) -> None:
    publish_scores(url, DS, f"run-{version}", ["click", "purchase"], model_dir,
                   {"multitask": dict.fromkeys(("click", "purchase"), {"output_dir": str(model_dir), "model_version": version})}, [])


def day_summary(url: str) -> tuple[int, set[str], float]:
    """(rows, model versions, sum of p_purchase) of day DS in score_user_item."""
    engine = create_warehouse_engine(url)
    try:
        with engine.connect() as conn:
            frame = read_frame(
                conn,
                "SELECT COUNT(*) AS n, MIN(model_version) AS lo, MAX(model_version) AS hi, SUM(p_purchase) AS total "
                "FROM score_user_item WHERE ds = :ds",
                {"ds": bind_date(conn, DS)},
            )
    finally:
        engine.dispose()
    row = frame.row(0, named=True)
    return int(row["n"]), {v for v in (row["lo"], row["hi"]) if v is not None}, float(row["total"] or 0.0)


def start_publisher(url: str, model_dir: Path) -> subprocess.Popen:
    args = json.dumps({"url": url, "dir": str(model_dir), "version": NEW_VERSION})
    return subprocess.Popen(
        [sys.executable, "-c", PUBLISHER, args, str(Path(__file__).parent)],
        cwd=REPO_DIR,
        env={**os.environ, "PYTHONPATH": str(REPO_DIR)},
    )


def postgres_writer_holds_lock(admin: sa.Engine) -> bool:
    with admin.connect() as conn:
        return bool(conn.execute(sa.text(
            "SELECT COUNT(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
            "WHERE c.relname = 'score_user_item' AND l.mode = 'RowExclusiveLock' AND l.pid <> pg_backend_pid()"
        )).scalar())


def sqlite_writer_holds_lock(path: str) -> bool:
    probe = sqlite3.connect(path, timeout=0)
    try:
        probe.execute("BEGIN IMMEDIATE")  # fails at once while another connection is writing
        probe.rollback()
        return False
    except sqlite3.OperationalError as error:
        assert "locked" in str(error), error
        return True
    finally:
        probe.close()


def wait_for_write_in_progress(child: subprocess.Popen, holds_lock, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child.poll() is not None:
            pytest.fail(f"the publisher finished (exit {child.returncode}) before the test saw its write in progress")
        if holds_lock():
            return
        time.sleep(0.01)
    child.kill()
    pytest.fail(f"the publisher did not start writing score_user_item within {timeout_s} s")


def read_while_writing(url: str) -> tuple[int, float]:
    """An analyst's query during the write: (rows of DS, seconds it took)."""
    engine = create_warehouse_engine(url)
    try:
        started = time.monotonic()
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT COUNT(*) FROM score_user_item WHERE ds = :ds"), {"ds": bind_date(conn, DS)}).scalar()
        return int(rows), time.monotonic() - started
    finally:
        engine.dispose()


def test_a_publisher_killed_mid_write_leaves_the_previous_rows_of_the_day(warehouse_url, tmp_path):
    old_dir, new_dir = tmp_path / "old_model", tmp_path / "new_model"
    write_candidates(old_dir, n_users=1_000, seed=1)
    write_candidates(new_dir, n_users=N_USERS, seed=2)
    publish(warehouse_url, old_dir, OLD_VERSION)
    before = day_summary(warehouse_url)
    assert before[:2] == (1_000 * TOP_K, {OLD_VERSION})

    if warehouse_url.startswith("sqlite"):
        path = sa.make_url(warehouse_url).database
        holds_lock = lambda: sqlite_writer_holds_lock(path)  # noqa: E731
    else:
        admin = create_warehouse_engine(warehouse_url)
        holds_lock = lambda: postgres_writer_holds_lock(admin)  # noqa: E731

    child = start_publisher(warehouse_url, new_dir)
    try:
        wait_for_write_in_progress(child, holds_lock)
        # Readers see the previous rows, without waiting for the writer.
        rows_seen, read_s = read_while_writing(warehouse_url)
        assert rows_seen == before[0]
        assert child.poll() is None, "the publish finished while the test was reading: make the day bigger"
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    print(f"\nread during the write took {read_s:.3f} s")  # noqa: T201

    if not warehouse_url.startswith("sqlite"):
        # The server rolls back once it notices the client is gone; wait for that before checking.
        deadline = time.monotonic() + 30
        while postgres_writer_holds_lock(admin) and time.monotonic() < deadline:
            time.sleep(0.05)
        admin.dispose()
    assert day_summary(warehouse_url) == before, "the killed publish changed the day's rows"

    # A retry (Airflow re-runs the task) publishes the new day once, replacing the old rows.
    publish(warehouse_url, new_dir, NEW_VERSION)
    rows, versions, _ = day_summary(warehouse_url)
    assert (rows, versions) == (N_USERS * TOP_K, {NEW_VERSION})
    publish(warehouse_url, new_dir, NEW_VERSION)
    assert day_summary(warehouse_url)[:2] == (N_USERS * TOP_K, {NEW_VERSION})
