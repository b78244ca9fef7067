"""Side-by-side peers on one scale's warehouse and run directory, alternating A B A B; medians.

Absolute seconds on a shared machine drift with load; the figure that counts is
``ratio = shopmtl time / peer time`` of runs taken next to each other.
"""
from __future__ import annotations

import io
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import psycopg
import sqlalchemy as sa
from psycopg import sql

from bench.pandas_features import add_trailing_sums_pandas
from etl.extract import ExtractWindow, extract_query, extract_source
from etl.features import add_trailing_sums
from etl.layout import extract_path
from etl.warehouse import TEXT_TIMESTAMP_FORMAT, insert_frame, select_table

PUBLISH_ROWS_PER_SCALE = 100_000  # rows published in peer (b) per unit of scale...
PUBLISH_ROWS_MAX = 1_000_000  # ...up to this many (scale 10)
TRAINING_STEPS = 20  # timed optimizer steps per batch kind in training.benchmark


def time_call(function: Callable[[], object]) -> float:
    """Wall seconds of one call."""
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def compare_alternating(shopmtl: Callable[[], float], peer: Callable[[], float], repeats: int) -> dict[str, object]:
    """Run A B A B ``repeats`` times after one untimed warm-up of each; each callable returns its seconds."""
    shopmtl(), peer()  # warm-up: imports, connections, page cache
    shopmtl_s, peer_s = [], []
    for _ in range(repeats):
        shopmtl_s.append(shopmtl())
        peer_s.append(peer())
    median_shopmtl, median_peer = statistics.median(shopmtl_s), statistics.median(peer_s)
    return {
        "shopmtl_s": median_shopmtl,
        "peer_s": median_peer,
        "ratio": median_shopmtl / median_peer,
        "shopmtl_all_s": shopmtl_s,
        "peer_all_s": peer_s,
    }


# ------------------------------------------------------------------------ (a) extract vs COPY


def bind_window(query: str, window: ExtractWindow, conn: psycopg.Connection) -> str:
    """The extract query with its window as literals: COPY takes no bind parameters."""
    text = query.strip().rstrip(";").replace(":window_start", "{window_start}").replace(":window_end", "{window_end}")
    return sql.SQL(text).format(window_start=window.window_start, window_end=window.window_end).as_string(conn)


def compare_extract(db_url: str, libpq_url: str, ds: date, repeats: int) -> dict[str, object]:
    """(a) ``extract_source('clicks')`` (to Parquet) vs ``COPY (the same query) TO STDOUT`` into memory."""
    window = ExtractWindow(ds)
    with psycopg.connect(libpq_url) as conn:
        copy_sql = f"COPY (\n{bind_window(extract_query('clicks'), window, conn)}\n) TO STDOUT"
    scratch = Path(tempfile.mkdtemp(prefix="shopmtl_bench_extract_"))

    def run_shopmtl() -> float:
        return time_call(lambda: extract_source("clicks", db_url, window, scratch))

    def run_copy() -> float:
        def copy_out() -> None:
            buffer = io.BytesIO()
            with psycopg.connect(libpq_url) as conn, conn.cursor().copy(copy_sql) as copy:
                for block in copy:
                    buffer.write(block)

        return time_call(copy_out)

    try:
        result = compare_alternating(run_shopmtl, run_copy, repeats)
        rows = pl.scan_parquet(extract_path(scratch, "clicks")).select(pl.len()).collect().item()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"name": "extract clicks", "shopmtl": "etl.extract.extract_source", "peer": "psycopg COPY (query) TO STDOUT, in memory", "rows": rows, **result}


# --------------------------------------------------------------------- (b) publish vs COPY FROM


def build_score_frame(n_rows: int, ds: date, seed: int = 7) -> pl.DataFrame:
    """``n_rows`` of ``score_user_item``'s shape: 20 ranked items per user."""
    rng = np.random.default_rng(seed)
    index = np.arange(n_rows)
    p_click = rng.random(n_rows)
    return select_table("score_user_item", pl.DataFrame(
        {"ds": [ds] * n_rows, "user_id": index // 20, "scenario": ["home_feed"] * n_rows,
         "item_id": index % 20 + 1000 * (index // 20 % 7),
         "p_click": p_click, "p_purchase": p_click * rng.random(n_rows) * 0.1, "rank": index % 20 + 1,
         "model_version": ["multitask-bench"] * n_rows}  # fmt: skip
    ))


def compare_publish(db_url: str, libpq_url: str, scale: float, repeats: int) -> dict[str, object]:
    """(b) ``etl.warehouse.insert_frame`` vs raw ``COPY score_user_item FROM STDIN`` of the same CSV bytes.

    Each insert goes into a table emptied by ``TRUNCATE`` inside its transaction and is rolled back:
    every repeat writes into the same empty table, and the run's own published rows stay.
    """
    n_rows = int(min(PUBLISH_ROWS_MAX, max(1_000, round(PUBLISH_ROWS_PER_SCALE * scale))))
    frame = build_score_frame(n_rows, date(2099, 1, 1))
    buffer = io.BytesIO()
    frame.write_csv(buffer, include_header=False, null_value="", quote_style="necessary", datetime_format=TEXT_TIMESTAMP_FORMAT)
    csv_bytes = buffer.getvalue()
    columns = ", ".join(frame.columns)
    engine = sa.create_engine(db_url)

    def run_insert_frame() -> float:
        with engine.connect() as conn:
            conn.exec_driver_sql("TRUNCATE score_user_item")
            elapsed = time_call(lambda: insert_frame(conn, "score_user_item", frame))
            conn.rollback()
        return elapsed

    def run_copy() -> float:
        with psycopg.connect(libpq_url) as conn:
            conn.execute("TRUNCATE score_user_item")

            def copy_in() -> None:
                with conn.cursor().copy(f"COPY score_user_item ({columns}) FROM STDIN WITH (FORMAT csv)") as copy:
                    copy.write(csv_bytes)

            elapsed = time_call(copy_in)
            conn.rollback()
        return elapsed

    try:
        result = compare_alternating(run_insert_frame, run_copy, repeats)
    finally:
        engine.dispose()
    return {"name": "publish score_user_item", "shopmtl": "etl.warehouse.insert_frame", "peer": "psycopg COPY FROM STDIN, same CSV bytes", "rows": n_rows, **result}


# ------------------------------------------------------------------- (c) trailing sums vs pandas


def build_trailing_inputs(extract_dir: Path) -> dict[str, pl.DataFrame]:
    """Impressions as (user, item, as_of) pairs and the daily user and item counts, from the run's clicks."""
    clicks = pl.read_parquet(extract_path(extract_dir, "clicks")).with_columns(
        pl.col("event_time").dt.date().alias("day"),
        (pl.col("event_type") == "impression").cast(pl.Float64).alias("imp"),
        (pl.col("event_type") == "click").cast(pl.Float64).alias("clk"),
    )
    return {
        "pairs": clicks.filter(pl.col("event_type") == "impression").select("event_id", "user_id", "item_id", pl.col("day").alias("as_of")),
        "user": clicks.group_by("user_id", "day").agg(pl.col("imp").sum(), pl.col("clk").sum()),
        "item": clicks.group_by("item_id", "day").agg(pl.col("imp").sum(), pl.col("clk").sum()),
    }


def compute_trailing_polars(inputs: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """7/28-day user and item impression/click sums with ``etl.features.add_trailing_sums``."""
    pairs = add_trailing_sums(inputs["pairs"].lazy(), inputs["user"].lazy(), ["user_id"], ["imp", "clk"], "user")
    return add_trailing_sums(pairs, inputs["item"].lazy(), ["item_id"], ["imp", "clk"], "item").collect()


def compute_trailing_pandas(inputs: dict) -> object:
    """The same sums with the pandas peer."""
    pairs = add_trailing_sums_pandas(inputs["pairs"], inputs["user"], ["user_id"], ["imp", "clk"], "user")
    return add_trailing_sums_pandas(pairs, inputs["item"], ["item_id"], ["imp", "clk"], "item")


def compare_features(extract_dir: Path, repeats: int) -> dict[str, object]:
    """(c) the trailing-window rule in Polars (shopmtl) vs pandas, inputs already in memory for both."""
    inputs = build_trailing_inputs(extract_dir)
    pandas_inputs = {name: frame.to_pandas() for name, frame in inputs.items()}
    result = compare_alternating(
        lambda: time_call(lambda: compute_trailing_polars(inputs)),
        lambda: time_call(lambda: compute_trailing_pandas(pandas_inputs)),
        repeats,
    )
    return {"name": "trailing 7/28-day sums", "shopmtl": "etl.features.add_trailing_sums (Polars)", "peer": "pandas calendar + rolling (bench/pandas_features.py)", "rows": inputs["pairs"].height, **result}


# ---------------------------------------------------------------- (d) training, mixed vs alone


def compare_training(features_dir: Path, repeats: int) -> dict[str, object]:
    """(d) samples/s per objective (``training.benchmark``); ratio: one joint epoch as the nightly run
    trains it vs the same rows trained one batch kind at a time at the measured per-kind speeds."""
    from training.benchmark import benchmark
    from training.config import MultiTaskConfig
    from training.data import OBJECTIVE_KIND

    runs = [benchmark(features_dir, MultiTaskConfig(), TRAINING_STEPS) for _ in range(repeats)]
    joint_s, alone_s = [], []
    for run in runs:
        *alone, joint = run  # the benchmark lists each kind alone, then the joint epoch
        kind_rate = {row["kind"]: row["rows_per_s"] for row in alone}
        # The joint epoch's rows of each kind (click and purchase share the impressions' rows).
        kind_rows = {OBJECTIVE_KIND[name]: rate * joint["epoch_s"] for name, rate in joint["rows_per_s_by_objective"].items()}
        joint_s.append(joint["epoch_s"])
        alone_s.append(sum(rows / kind_rate[kind] for kind, rows in kind_rows.items()))
    objectives = list(runs[0][-1]["rows_per_s_by_objective"])
    samples_per_s = {
        name: {"kind": OBJECTIVE_KIND[name],
               "alone": statistics.median(next(r["rows_per_s"] for r in run if r["kind"] == OBJECTIVE_KIND[name]) for run in runs),
               "joint_epoch": statistics.median(run[-1]["rows_per_s_by_objective"][name] for run in runs)}
        for name in objectives
    }  # fmt: skip
    joint, alone = statistics.median(joint_s), statistics.median(alone_s)
    return {
        "name": "training epoch",
        "shopmtl": "joint multi-task epoch (training.loop)",
        "peer": "the same rows, one batch kind at a time",
        "rows": round(runs[0][-1]["rows_per_s"] * runs[0][-1]["epoch_s"]),
        "shopmtl_s": joint,
        "peer_s": alone,
        "ratio": joint / alone,
        "shopmtl_all_s": joint_s,
        "peer_all_s": alone_s,
        "samples_per_s": samples_per_s,  # per objective: its batch kind trained alone, and in the joint epoch
        "joint_samples_per_s": statistics.median(run[-1]["rows_per_s"] for run in runs),
    }


def run_peers(db_url: str, libpq_url: str, run_dir: Path, ds: date, scale: float, repeats: int) -> dict[str, dict]:
    """All four comparisons for one scale."""
    from etl.layout import RunLayout

    layout = RunLayout(run_dir)
    return {
        "extract": compare_extract(db_url, libpq_url, ds, repeats),
        "publish": compare_publish(db_url, libpq_url, scale, repeats),
        "features": compare_features(layout.extract_dir, repeats),
        "training": compare_training(layout.features_dir, repeats),
    }
