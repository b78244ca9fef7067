"""Which rows of a window extract are tonight's (validation.day_rows), on the fixture of test_validation;
bad rows of earlier days were their own nights' job."""
from __future__ import annotations

from datetime import datetime

import polars as pl
import pytest

from tests.data.test_validation import WINDOW, build_valid_extracts, run_validation, with_rows, write_extracts
from validation.day_rows import read_day_rows
from validation.validate import DataQualityError


def day_ids(tmp_path, frames, table: str, key: str) -> list:
    extract_dir = write_extracts(frames, tmp_path / "extracts")
    return sorted(read_day_rows(extract_dir, table, WINDOW)[key].tolist(), key=str)


def test_tonights_rows_are_day_d_and_what_day_d_brings_along(tmp_path):
    frames = build_valid_extracts()
    assert day_ids(tmp_path, frames, "clicks", "event_id") == [104, 105, 106, 107]
    assert day_ids(tmp_path, frames, "orders", "order_id") == [1002, 1003]
    assert day_ids(tmp_path, frames, "order_items", "order_id") == [1002, 1003]
    assert day_ids(tmp_path, frames, "fraud_labels", "order_id") == [1001]  # labelled on D, ordered Jan 15
    assert day_ids(tmp_path, frames, "users", "user_id") == [2, 3, 4]  # active on D (user 2 by a review)
    assert day_ids(tmp_path, frames, "items", "item_id") == [10, 11, 12, 13]  # named by D's clicks, lines, reviews
    assert day_ids(tmp_path, frames, "item_images", "item_id") == []


def test_rows_the_extract_should_not_hold_are_tonights(tmp_path):
    frames = build_valid_extracts()
    frames["clicks"] = with_rows(frames["clicks"], "event_time", {0: None, 1: datetime(2025, 12, 1), 2: datetime(2026, 2, 1)})
    # a line of an order missing from the orders extract, and a user who signs up in the future
    frames["order_items"] = with_rows(frames["order_items"], "order_id", {0: 5555})
    frames["users"] = with_rows(frames["users"], "signup_at", {0: datetime(2026, 3, 1)})
    assert day_ids(tmp_path, frames, "clicks", "event_id") == [100, 101, 102, 104, 105, 106, 107]
    assert day_ids(tmp_path, frames, "order_items", "order_id") == [1002, 1003, 5555]
    assert day_ids(tmp_path, frames, "users", "user_id") == [1, 2, 3, 4]


def test_without_a_usable_time_column_every_row_is_tonights(tmp_path):
    frames = build_valid_extracts()
    frames["orders"] = frames["orders"].with_columns(pl.col("created_at").dt.strftime("%Y-%m-%d"))
    assert day_ids(tmp_path, frames, "orders", "order_id") == [1000, 1001, 1002, 1003]
    frames["reviews"] = frames["reviews"].drop("created_at")
    assert day_ids(tmp_path, frames, "reviews", "review_id") == [1, 2]
    # order lines then fall back to every line too
    assert day_ids(tmp_path, frames, "order_items", "order_id") == [1000, 1000, 1001, 1002, 1003]


def test_bad_rows_of_earlier_days_do_not_fail_tonight(tmp_path, sqlite_url):
    """Rows of Jan 1-27 were validated on their own nights (or their backfills): tonight leaves them alone."""
    valid = build_valid_extracts()
    frames = {
        **valid,
        "orders": with_rows(valid["orders"], "amount", {0: -5.0, 1: -1.0}),  # Jan 2, Jan 15
        "clicks": with_rows(valid["clicks"], "event_type", {2: "purchase"}),  # Jan 15
        "reviews": with_rows(valid["reviews"], "rating", {0: 6}),  # Jan 12
        "fraud_labels": with_rows(valid["fraud_labels"], "is_fraud", {0: None}),  # labelled Jan 10
        "order_items": with_rows(valid["order_items"], "quantity", {0: 0}),  # a line of order 1000, Jan 2
        "users": with_rows(valid["users"], "birth_year", {0: 1850}),  # user 1: not active on D
    }
    # ... and so does an orphan of an earlier day in the warehouse
    warehouse = {**frames, "clicks": with_rows(valid["clicks"], "user_id", {2: 98}), "fraud_labels": valid["fraud_labels"]}
    summary = run_validation(tmp_path, sqlite_url, frames, warehouse_frames=warehouse)
    assert (summary.n_failed, summary.n_critical_failed) == (0, 0)
    # the same rows on day D fail (the backfill of their own day would catch them the same way)
    tonight = {**frames, "orders": with_rows(valid["orders"], "amount", {3: -1.0})}
    with pytest.raises(DataQualityError, match=r"orders\.amount: expect_column_values_to_be_between failed: 1 unexpected of 2 rows"):
        run_validation(tmp_path, sqlite_url, tonight, tables=("orders",))
