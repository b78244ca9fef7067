"""Leakage, end to end: loading later days into the warehouse (new events, late fraud labels, late
reviews of day-D orders) changes nothing in day D's extract or features."""
from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from demo.synthetic import generate_warehouse
from etl.extract import ExtractWindow, extract_sources
from etl.config import FeatureConfig
from etl.build_features import build_features
from etl.labels import label_orders
from etl.warehouse import bind_timestamp, create_warehouse_engine, read_frame

DS = date(2026, 1, 14)


def build_day(warehouse_url: str, out_dir: Path) -> dict[str, pl.DataFrame]:
    extract_sources(warehouse_url, ExtractWindow(ds=DS, window_days=10), out_dir / "extract")
    build_features(out_dir / "extract", out_dir / "features", DS, FeatureConfig(maturity_days=4, fraud_eval_days=2))
    return {
        name: pl.read_parquet(path)
        for folder in ("extract", "features")
        for path in sorted((out_dir / folder).glob("*.parquet"))
        for name in [f"{folder}/{path.stem}"]
    }


@pytest.mark.slow
def test_later_days_in_the_warehouse_change_nothing_for_day_d(sqlite_url, tmp_path):
    generate_warehouse(sqlite_url, date(2026, 1, 1), DS, scale=0.2, seed=5)
    before = build_day(sqlite_url, tmp_path / "before")
    generate_warehouse(sqlite_url, DS + timedelta(days=1), DS + timedelta(days=20), scale=0.2, seed=5)
    after = build_day(sqlite_url, tmp_path / "after")
    assert before.keys() == after.keys()
    for name, frame in before.items():
        assert frame.equals(after[name]), f"{name} changed when later days were loaded"
    # The warehouse does hold the future for the window's orders (labels and reviews that arrive
    # after D): the extract left all of it out.
    window = ExtractWindow(ds=DS, window_days=10)
    engine = create_warehouse_engine(sqlite_url)
    with engine.connect() as conn:
        params = {"start": bind_timestamp(conn, window.window_start), "end": bind_timestamp(conn, window.window_end)}
        late_labels = read_frame(conn, "SELECT fl.order_id FROM fraud_labels fl JOIN orders o ON o.order_id = fl.order_id "
                                       "WHERE o.created_at >= :start AND o.created_at < :end AND fl.labeled_at >= :end", params)
    engine.dispose()
    assert late_labels.height > 0
    assert not set(late_labels["order_id"]) & set(before["extract/fraud_labels"]["order_id"])


def test_an_unmatured_label_changes_nothing():
    cutoff_day = date(2026, 3, 30)
    orders = pl.LazyFrame({"order_id": [1, 2], "created_at": [datetime(2026, 3, 1), datetime(2026, 3, 29)]})
    no_labels = pl.LazyFrame(schema={"order_id": pl.Int64, "is_fraud": pl.Boolean, "labeled_at": pl.Datetime("us")})
    late_labels = pl.LazyFrame(
        {"order_id": [1, 2], "is_fraud": [True, True], "labeled_at": [datetime(2026, 3, 31), datetime(2026, 4, 2)]}
    )
    # Polars joins do not promise row order: compare in order_id order.
    without = label_orders(orders, no_labels, cutoff_day).collect().sort("order_id")
    with_late = label_orders(orders, late_labels, cutoff_day).collect().sort("order_id")
    assert without.equals(with_late)
    assert without["is_fraud"].to_list() == [0, None]
