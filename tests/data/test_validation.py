"""validate_extracts end to end: real GX Core, real Parquet extracts, referential checks and results in a
real SQLite / PostgreSQL warehouse. Day D is 2026-01-28; rows of earlier days were validated on their nights."""
from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path

import pendulum
import polars as pl
import pytest
import sqlalchemy as sa

from etl.warehouse import SOURCE_TABLES, TABLE_SCHEMAS, create_tables, create_warehouse_engine, insert_frame
from validation.suites import REFERENCE_CHECKS, TEMPORAL_CHECKS, WINDOW_CHECKS, ValidationWindow, build_suite
from validation.validate import DataQualityError, ValidationSummary, validate_extracts

DS = date(2026, 1, 28)
WINDOW_END = datetime(2026, 1, 29)
WINDOW_START = WINDOW_END - timedelta(days=28)
DAY_D = datetime(2026, 1, 28)


def png(side: int) -> bytes:
    """A real PNG of ``side`` x ``side`` pixels."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (200, 80, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


PNG_BYTES = png(16)


def build_valid_extracts() -> dict[str, pl.DataFrame]:
    """One frame per source table, typed exactly like the warehouse contract and mutually consistent."""
    rows: dict[str, dict[str, list]] = {
        "users": {
            "user_id": [1, 2, 3, 4],
            "signup_at": [datetime(2025, 3, 1), datetime(2025, 6, 2), datetime(2025, 12, 24), datetime(2026, 1, 5)],
            "country": ["CA", "US", "FR", "CA"],
            "birth_year": [1980, 1995, None, 1970],
        },
        "items": {
            "item_id": [10, 11, 12, 13],
            "category": ["books", "toys", "garden", "books"],
            "price": [12.5, 30.0, 7.25, 0.0],
            "seller_id": [500, 501, 500, 502],
            "title": ["Novel", "Robot", "Shovel", "Free e-book"],
            "created_at": [datetime(2025, 1, 1), datetime(2025, 5, 5), datetime(2025, 9, 9), datetime(2026, 1, 27)],
        },
        "item_images": {
            "item_id": [10, 11, 12, 13],
            "image": [PNG_BYTES] * 4,
            "updated_at": [datetime(2025, 1, 2), datetime(2025, 5, 6), datetime(2025, 9, 10), datetime(2026, 1, 27, 12)],
        },
        "clicks": {
            "event_id": [100, 101, 102, 103, 104, 105, 106, 107],
            "event_time": [
                datetime(2026, 1, 1, 0, 0), datetime(2026, 1, 1, 0, 1), datetime(2026, 1, 15, 9, 30),
                datetime(2026, 1, 15, 9, 31), datetime(2026, 1, 28, 8, 0), datetime(2026, 1, 28, 8, 1),
                datetime(2026, 1, 28, 8, 2), datetime(2026, 1, 28, 23, 59, 59, 999999),
            ],
            "user_id": [1, 1, 2, 2, 3, 3, 4, 4],
            "item_id": [10, 10, 11, 12, 13, 13, 10, 11],
            "session_id": ["s1", "s1", "s2", "s2", "s3", "s3", "s4", "s4"],
            "event_type": [
                "impression", "click", "impression", "impression", "impression", "add_to_cart", "impression", "click",
            ],
            "position": [1, None, 2, 3, 1, None, 4, None],
            "scenario": ["search", "search", "home_feed", "home_feed", None, None, "cart", "cart"],
        },
        "orders": {
            "order_id": [1000, 1001, 1002, 1003],
            "user_id": [1, 2, 3, 4],
            "created_at": [datetime(2026, 1, 2), datetime(2026, 1, 15, 10), datetime(2026, 1, 28, 9), datetime(2026, 1, 28, 20)],
            "amount": [42.5, 30.0, 7.25, 0.0],
            "payment_method": ["card", "paypal", "card", "card"],
            "device_id": ["d1", "d2", "d3", "d4"],
            "ip_address": ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"],
            "channel": ["web", "app", "web", "app"],
            "ship_country": ["CA", "US", "FR", "CA"],
            "status": ["delivered", "delivered", "placed", "placed"],
        },
        "order_items": {
            "order_id": [1000, 1000, 1001, 1002, 1003],
            "item_id": [10, 11, 11, 12, 13],
            "quantity": [1, 1, 1, 1, 2],
            "unit_price": [12.5, 30.0, 30.0, 7.25, 0.0],
        },
        "fraud_labels": {
            "order_id": [1000, 1001],
            "is_fraud": [False, True],
            "labeled_at": [datetime(2026, 1, 10), datetime(2026, 1, 28, 23)],
        },
        "reviews": {
            "review_id": [1, 2],
            "order_id": [1000, None],
            "user_id": [1, 2],
            "item_id": [10, 11],
            "rating": [5, 1],
            "title": ["Great", None],
            "body": ["Loved it", "Broke on day one"],
            "created_at": [datetime(2026, 1, 12), datetime(2026, 1, 28, 7)],
        },
    }
    return {table: pl.DataFrame(rows[table], schema=TABLE_SCHEMAS[table]) for table in SOURCE_TABLES}


def seed_warehouse(warehouse_url: str, frames: dict[str, pl.DataFrame]) -> None:
    """The source tables of the warehouse the extracts came from (the referential checks run there)."""
    engine = create_warehouse_engine(warehouse_url)
    try:
        create_tables(engine, areas=["warehouse"])
        with engine.begin() as conn:
            for table, frame in frames.items():
                conn.exec_driver_sql(f"DELETE FROM {table}")
                insert_frame(conn, table, frame)
    finally:
        engine.dispose()


def write_extracts(frames: dict[str, pl.DataFrame], extract_dir: Path) -> Path:
    """Write ``{extract_dir}/{table}.parquet`` like the extractor does."""
    extract_dir.mkdir(parents=True, exist_ok=True)
    for table, frame in frames.items():
        frame.write_parquet(extract_dir / f"{table}.parquet")
    return extract_dir


WINDOW = ValidationWindow(WINDOW_START, WINDOW_END, DAY_D)


@pytest.fixture(scope="module")
def valid_frames() -> dict[str, pl.DataFrame]:
    return build_valid_extracts()


def run_validation(
    tmp_path: Path,
    warehouse_url: str,
    frames: dict[str, pl.DataFrame],
    run_id: str = "manual__2026-01-28",
    tables: tuple[str, ...] = SOURCE_TABLES,
    warehouse_frames: dict[str, pl.DataFrame] | None = None,
) -> ValidationSummary:
    """Validate ``frames`` as extracts of a warehouse holding ``warehouse_frames`` (default: the valid rows)."""
    seed_warehouse(warehouse_url, warehouse_frames or build_valid_extracts())
    extract_dir = write_extracts(frames, tmp_path / "extracts")
    return validate_extracts(
        extract_dir=extract_dir,
        docs_dir=tmp_path / "data_docs",
        warehouse_url=warehouse_url,
        ds=DS,
        run_id=run_id,
        window_start=WINDOW_START,
        window_end=WINDOW_END,
        tables=tables,
    )


def read_results(warehouse_url: str) -> list[dict]:
    engine = create_warehouse_engine(warehouse_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT * FROM data_quality_results ORDER BY table_name, expectation"))
            return [dict(row._mapping) for row in rows]
    finally:
        engine.dispose()


def test_valid_extracts_pass_and_record_one_row_per_expectation(tmp_path, sqlite_url, valid_frames, capfd):
    summary = run_validation(tmp_path, sqlite_url, valid_frames)
    assert "Calculating Metrics" not in capfd.readouterr().err  # GX's tqdm bars are switched off

    expected_count = (
        sum(len(build_suite(table, WINDOW).expectations) for table in SOURCE_TABLES)
        + sum(1 + (check.non_empty is not None) for check in WINDOW_CHECKS.values())
        + len(REFERENCE_CHECKS)
        + len(TEMPORAL_CHECKS)
        + 1  # the image rule (validation/image_checks.py)
        + 7  # no row dated after the extraction, one per table with a time column
    )
    assert summary.n_expectations == expected_count
    assert (summary.n_failed, summary.n_critical_failed) == (0, 0)
    assert summary.tables["clicks"].n_rows == valid_frames["clicks"].height
    # tonight's rows: day D's events, users active on D, items used on D, lines of D's orders, labels of D
    day_rows = {table: counts.n_day_rows for table, counts in summary.tables.items()}
    assert day_rows == {"users": 3, "items": 4, "item_images": 0, "clicks": 4, "orders": 2, "order_items": 2,
                        "fraud_labels": 1, "reviews": 1}
    assert json.loads(json.dumps(summary.to_dict()))["ds"] == "2026-01-28"

    rows = read_results(sqlite_url)
    assert len(rows) == expected_count
    assert {row["table_name"] for row in rows} == set(SOURCE_TABLES)
    assert all(row["success"] for row in rows)
    assert {row["run_id"] for row in rows} == {"manual__2026-01-28"}
    table_level = [row for row in rows if row["expectation"] == "expect_table_columns_to_match_set"]
    assert len(table_level) == len(SOURCE_TABLES) and all(row["column_name"] is None for row in table_level)
    assert any(row["critical"] for row in rows) and not all(row["critical"] for row in rows)
    in_set = next(row for row in rows if row["expectation"] == "expect_column_values_to_be_in_set")
    assert json.loads(in_set["sample_values"]) == []
    assert json.loads(in_set["details_json"])["success"] is True

    index = Path(summary.docs_index_path)
    assert index == tmp_path / "data_docs" / "index.html" and index.is_file()
    assert "orders" in index.read_text()
    assert list((tmp_path / "data_docs" / "validations").rglob("*.html"))


def test_rerun_of_the_same_run_replaces_its_rows(tmp_path, sqlite_url, valid_frames):
    first = run_validation(tmp_path, sqlite_url, valid_frames, tables=("users", "orders"))
    # the retry gets what Airflow hands a task: pendulum dates and time-zone-aware UTC bounds
    retry = validate_extracts(
        extract_dir=tmp_path / "extracts",
        docs_dir=tmp_path / "data_docs",
        warehouse_url=sqlite_url,
        ds=pendulum.date(DS.year, DS.month, DS.day),
        run_id="manual__2026-01-28",
        window_start=pendulum.instance(WINDOW_START, tz="UTC"),
        # the same instant as WINDOW_END; dropping the zone instead of converting would flag a "future" click
        window_end=pendulum.instance(WINDOW_END, tz="UTC").in_timezone("America/Toronto"),
        tables=["users", "orders"],
    )
    assert (retry.n_expectations, retry.n_failed) == (first.n_expectations, 0)
    rows = read_results(sqlite_url)
    assert len(rows) == first.n_expectations and {str(row["ds"]) for row in rows} == {"2026-01-28"}

    run_validation(tmp_path, sqlite_url, valid_frames, run_id="manual__retry", tables=("users", "orders"))
    assert len(read_results(sqlite_url)) == 2 * first.n_expectations


def with_rows(frame: pl.DataFrame, column: str, values: dict[int, object]) -> pl.DataFrame:
    """``frame`` with ``column`` overwritten at the given row positions (dtype kept)."""
    series = frame.get_column(column).to_list()
    for position, value in values.items():
        series[position] = value
    return frame.with_columns(pl.Series(column, series, dtype=frame.schema[column]))


BROKEN_CASES: dict[str, tuple[str, Callable[[pl.DataFrame], pl.DataFrame], str]] = {
    # the bad rows sit on day D (orders 1002, 1003; clicks 104-107): earlier days were their own nights' job
    "null user_id in orders": (
        "orders",
        lambda f: with_rows(f, "user_id", {2: None}),
        "orders.user_id: expect_column_values_to_not_be_null failed: 1 unexpected of 2 rows; sample values: [null]",
    ),
    "negative amount": (
        "orders",
        lambda f: with_rows(f, "amount", {2: -5.0, 3: -2.5}),
        "orders.amount: expect_column_values_to_be_between failed: 2 unexpected of 2 rows; sample values: [-5.0, -2.5]",
    ),
    # Infinity passes every ">= 0" rule; 1e308 is a sentinel, not a price: both are over the ceiling
    "infinite amount": (
        "orders",
        lambda f: with_rows(f, "amount", {3: float("inf")}),
        "orders.amount: expect_column_values_to_be_between failed: 1 unexpected of 2 rows; sample values: [Infinity]",
    ),
    "NaN amount": (
        "orders",
        lambda f: with_rows(f, "amount", {2: float("nan")}),
        "orders.amount: expect_column_values_to_not_be_null failed: 1 unexpected of 2 rows; sample values: [null]",
    ),
    "price of 1e308": (
        "items",
        lambda f: with_rows(f, "price", {3: 1e308}),
        "items.price: expect_column_values_to_be_between failed: 1 unexpected of 4 rows; sample values: [1e+308]",
    ),
    "unit price over the ceiling": (
        "order_items",
        lambda f: with_rows(f, "unit_price", {4: 2e7}),
        "order_items.unit_price: expect_column_values_to_be_between failed: 1 unexpected of 2 rows; sample values: [20000000.0]",
    ),
    # day D's image (item 13, updated on D): not a picture the trainer can read
    "0-byte image": (
        "item_images",
        lambda f: with_rows(with_rows(f, "updated_at", {3: datetime(2026, 1, 28, 6)}), "image", {3: b""}),
        'item_images.image: expect_column_values_to_be_decodable_images failed: 1 unexpected of 1 rows; '
        'sample values: ["item 13: 0 bytes"]',
    ),
    "a PDF as image": (
        "item_images",
        lambda f: with_rows(with_rows(f, "updated_at", {3: datetime(2026, 1, 28, 6)}), "image", {3: b"%PDF-1.4 not a picture"}),
        'item_images.image: expect_column_values_to_be_decodable_images failed: 1 unexpected of 1 rows; '
        'sample values: ["item 13: not a readable image (UnidentifiedImageError)"]',
    ),
    "a 2-pixel image": (
        "item_images",
        lambda f: with_rows(with_rows(f, "updated_at", {3: datetime(2026, 1, 28, 6)}), "image", {3: png(2)}),
        'item_images.image: expect_column_values_to_be_decodable_images failed: 1 unexpected of 1 rows; '
        'sample values: ["item 13: 2x2 pixels, outside 8..10000"]',
    ),
    "unknown event_type": (
        "clicks",
        lambda f: with_rows(f, "event_type", {5: "purchase"}),
        'clicks.event_type: expect_column_values_to_be_in_set failed: 1 unexpected of 4 rows; sample values: ["purchase"]',
    ),
    # day D's order 1002 takes the id of an order of Jan 15: only the whole-window key check can see it
    "duplicate order_id": (
        "orders",
        lambda f: with_rows(f, "order_id", {2: 1001}),
        "orders.order_id: expect_column_values_to_be_unique failed: 2 unexpected of 4 rows; sample values: [1001]",
    ),
    "future event_time": (
        "clicks",
        lambda f: with_rows(f, "event_time", {7: WINDOW_END}),
        "clicks.event_time: expect_column_values_to_be_between failed: 1 unexpected of 4 rows; "
        'sample values: ["2026-01-29 00:00:00"]',
    ),
    "stale event_time": (
        "clicks",
        lambda f: with_rows(f, "event_time", {0: WINDOW_START - timedelta(seconds=1)}),
        "clicks.event_time: expect_column_values_to_be_between failed: 1 unexpected of 5 rows; "
        'sample values: ["2025-12-31 23:59:59"]',
    ),
    "future fraud label": (
        "fraud_labels",
        lambda f: with_rows(f, "labeled_at", {1: WINDOW_END + timedelta(days=2)}),
        "fraud_labels.labeled_at: expect_column_values_to_be_between failed: 1 unexpected of 1 rows; "
        'sample values: ["2026-01-31 00:00:00"]',
    ),
    "empty day D for clicks": (
        "clicks",
        lambda f: f.filter(pl.col("event_time") < WINDOW_END - timedelta(days=1)),
        "clicks.event_time: expect_table_row_count_to_be_between failed: observed 0 rows on day D 2026-01-28, "
        "expected min_value=1",
    ),
    "duplicate order line": (
        "order_items",
        lambda f: with_rows(f, "item_id", {1: 10}),
        "order_items.order_id,item_id: expect_compound_columns_to_be_unique failed: 2 unexpected of 5 rows; "
        'sample values: [{"order_id": 1000, "item_id": 10}]',
    ),
    "rating out of range": (
        "reviews",
        lambda f: with_rows(f, "rating", {1: 6}),
        "reviews.rating: expect_column_values_to_be_between failed: 1 unexpected of 1 rows; sample values: [6]",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN_CASES))
def test_critical_failure_raises_after_recording_results(tmp_path, sqlite_url, valid_frames, case):
    table, mutate, expected_line = BROKEN_CASES[case]
    frames = {**valid_frames, table: mutate(valid_frames[table])}

    with pytest.raises(DataQualityError) as raised:
        run_validation(tmp_path, sqlite_url, frames, tables=(table,))

    message = str(raised.value)
    assert f"  - {expected_line}" in message.splitlines()
    assert "data_quality_results" in message and str(tmp_path / "data_docs" / "index.html") in message
    # the results are written before the error is raised: the failure is on record
    failed = [row for row in read_results(sqlite_url) if not row["success"]]
    assert failed and all(row["table_name"] == table for row in failed)
    assert [failure.describe() for failure in raised.value.failures] == [
        line.removeprefix("  - ") for line in message.splitlines() if line.startswith("  - ")
    ]
    recorded = {(row["column_name"], row["expectation"]) for row in failed if row["critical"]}
    assert {(f.column, f.expectation) for f in raised.value.failures} == recorded


def test_every_failed_critical_expectation_is_listed(tmp_path, sqlite_url, valid_frames):
    frames = {
        **valid_frames,
        "orders": with_rows(valid_frames["orders"], "amount", {3: -1.0}),
        "clicks": with_rows(valid_frames["clicks"], "event_type", {4: "purchase"}),
    }
    with pytest.raises(DataQualityError) as raised:
        run_validation(tmp_path, sqlite_url, frames)
    message = str(raised.value)
    assert "2 critical expectation(s) failed" in message
    assert "orders.amount: expect_column_values_to_be_between failed: 1 unexpected of 2 rows" in message
    assert "clicks.event_type: expect_column_values_to_be_in_set failed: 1 unexpected of 4 rows" in message
    assert sum(not row["success"] for row in read_results(sqlite_url)) == 2


def test_schema_drift_is_critical(tmp_path, sqlite_url, valid_frames):
    orders = valid_frames["orders"].drop("status").with_columns(pl.col("user_id").cast(pl.Int32))
    with pytest.raises(DataQualityError) as raised:
        run_validation(tmp_path, sqlite_url, {**valid_frames, "orders": orders}, tables=("orders",))
    message = str(raised.value)
    assert "orders: expect_table_columns_to_match_set failed" in message
    assert 'orders.user_id: expect_column_type_to_be failed: observed "Int32", expected type="Int64"' in message
    assert "orders.status: expect_column_type_to_be could not be evaluated" in message


def test_non_critical_failure_only_warns(tmp_path, sqlite_url, valid_frames, caplog):
    # user 2 wrote a review on day D, so tonight validates that user
    frames = {**valid_frames, "users": with_rows(valid_frames["users"], "birth_year", {1: 1850})}
    with caplog.at_level(logging.WARNING, logger="validation.validate"):
        summary = run_validation(tmp_path, sqlite_url, frames, tables=("users",))

    assert (summary.n_failed, summary.n_critical_failed) == (1, 0)
    assert (
        "users.birth_year: expect_column_values_to_be_between failed: 1 unexpected of 3 rows; sample values: [1850]"
        in caplog.text
    )
    failed = [row for row in read_results(sqlite_url) if not row["success"]]
    assert [(row["column_name"], bool(row["critical"]), row["unexpected_count"]) for row in failed] == [
        ("birth_year", False, 1)
    ]
    assert json.loads(failed[0]["sample_values"]) == [1850]


def test_undecodable_free_text_is_counted_as_a_warning_not_a_stop(tmp_path, sqlite_url, valid_frames):
    # Day D's review 2: its body held bytes that were not UTF-8 (etl.warehouse.decode_text replaced them).
    frames = {**valid_frames, "reviews": with_rows(valid_frames["reviews"], "body", {1: "Broke on d\ufffdy one"})}
    summary = run_validation(tmp_path, sqlite_url, frames, tables=("reviews",))
    assert (summary.n_failed, summary.n_critical_failed) == (1, 0)
    failed = [row for row in read_results(sqlite_url) if not row["success"]]
    assert [(row["column_name"], row["expectation"], bool(row["critical"]), row["unexpected_count"]) for row in failed] == [
        ("body", "expect_column_values_to_not_match_regex", False, 1)
    ]


def test_empty_optional_extracts_only_warn(tmp_path, sqlite_url, valid_frames):
    frames = {**valid_frames, "fraud_labels": valid_frames["fraud_labels"].clear()}
    frames["item_images"] = valid_frames["item_images"].clear()
    summary = run_validation(tmp_path, sqlite_url, frames, tables=("fraud_labels", "item_images"))

    assert (summary.n_failed, summary.n_critical_failed) == (2, 0)
    assert summary.tables["fraud_labels"].n_rows == 0
    failed = sorted((row["table_name"], row["expectation"]) for row in read_results(sqlite_url) if not row["success"])
    assert failed == [
        ("fraud_labels", "expect_table_row_count_to_be_between"),
        ("item_images", "expect_table_row_count_to_be_between"),
    ]


def test_configured_reviews_without_a_review_on_day_d_fail(tmp_path, sqlite_url, valid_frames):
    frames = {**valid_frames, "reviews": valid_frames["reviews"].clear()}
    with pytest.raises(DataQualityError, match=r"reviews\.created_at: expect_table_row_count_to_be_between failed: observed 0 rows on day D"):
        run_validation(tmp_path, sqlite_url, frames, tables=("reviews",))


def test_missing_extract_file_names_the_table(tmp_path, sqlite_url, valid_frames):
    frames = {table: frame for table, frame in valid_frames.items() if table not in {"reviews", "orders"}}
    with pytest.raises(DataQualityError, match=r"reviews \(.*reviews\.parquet\)"):
        run_validation(tmp_path, sqlite_url, frames, tables=("reviews",))
    # order lines are of day D through their order: the orders extract is needed even when not validated
    with pytest.raises(DataQualityError, match=r"Missing extract file\(s\) for table\(s\): orders"):
        run_validation(tmp_path, sqlite_url, frames, tables=("order_items",))


def test_unreadable_extract_file_names_the_table(tmp_path, sqlite_url, valid_frames):
    seed_warehouse(sqlite_url, valid_frames)
    write_extracts(valid_frames, tmp_path / "extracts")
    (tmp_path / "extracts" / "orders.parquet").write_bytes(b"not a parquet file")
    args = (tmp_path / "extracts", tmp_path / "docs", sqlite_url, DS, "r1", WINDOW_START, WINDOW_END)
    with pytest.raises(DataQualityError, match=r"Cannot read the extract of table orders \("):
        validate_extracts(*args, tables=("orders",))
    # ... also when it is only read to find day D's order lines
    with pytest.raises(DataQualityError, match=r"Cannot read the extract of table orders \("):
        validate_extracts(*args, tables=("order_items",))


@pytest.mark.postgres
def test_results_on_postgres_are_recorded_and_replaced(tmp_path, postgres_url, valid_frames):
    summary = run_validation(tmp_path, postgres_url, valid_frames)
    assert len(read_results(postgres_url)) == summary.n_expectations

    broken = {**valid_frames, "orders": with_rows(valid_frames["orders"], "amount", {2: -5.0})}
    with pytest.raises(DataQualityError, match=r"orders\.amount: expect_column_values_to_be_between failed"):
        run_validation(tmp_path, postgres_url, broken)

    rows = read_results(postgres_url)
    assert len(rows) == summary.n_expectations
    failed = [row for row in rows if not row["success"]]
    assert [(row["table_name"], row["column_name"], row["critical"]) for row in failed] == [("orders", "amount", True)]
    assert json.loads(failed[0]["sample_values"]) == [-5.0]
    assert str(rows[0]["ds"]) == "2026-01-28"



@pytest.mark.parametrize(
    ("case", "warehouse_change", "expected_line"),
    [
        ("a fraud label before its order", ("fraud_labels", "labeled_at", {1: datetime(2026, 1, 28, 1)}, "orders", "created_at", {1: datetime(2026, 1, 28, 9)}),
         "fraud_labels.labeled_at: expect_column_pair_values_a_to_be_greater_than_b failed: 1 unexpected of 1 rows; sample values: [1001]"),
        ("a review before its order", ("reviews", "created_at", {1: datetime(2026, 1, 28, 7)}, "reviews", "order_id", {1: 1002}),
         "reviews.created_at: expect_column_pair_values_a_to_be_greater_than_b failed: 1 unexpected of 1 rows; sample values: [1002]"),
        ("a review of an order that does not exist", ("reviews", "order_id", {1: 4242}, None, None, None),
         "reviews.order_id: expect_column_values_to_be_in_set failed: 1 unexpected of 1 rows; sample values: [4242]"),
    ],
)
def test_labels_and_reviews_are_checked_against_their_orders_in_the_warehouse(
    tmp_path, warehouse_url, valid_frames, case, warehouse_change, expected_line
):
    table, column, values, other_table, other_column, other_values = warehouse_change
    frames = dict(valid_frames)
    frames[table] = with_rows(frames[table], column, values)
    if other_table is not None:
        frames[other_table] = with_rows(frames[other_table], other_column, other_values)
    with pytest.raises(DataQualityError) as raised:
        run_validation(tmp_path, warehouse_url, frames, tables=(table,), warehouse_frames=frames)
    assert f"  - {expected_line}" in str(raised.value).splitlines(), case
    failed = [row for row in read_results(warehouse_url) if not row["success"] and row["critical"]]
    assert [(row["table_name"], row["column_name"]) for row in failed] == [(table, expected_line.split(":")[0].split(".")[1])]


def test_a_row_dated_after_the_extraction_is_named_though_the_window_never_reads_it(tmp_path, warehouse_url, valid_frames):
    # An order of day D dated 2030: the extract's window drops it (and its lines and labels) silently.
    warehouse = dict(valid_frames)
    warehouse["orders"] = with_rows(warehouse["orders"], "created_at", {3: datetime(2030, 1, 28, 20)})
    with pytest.raises(DataQualityError) as raised:
        run_validation(tmp_path, warehouse_url, valid_frames, tables=("orders",), warehouse_frames=warehouse)
    assert "  - orders.created_at: expect_column_values_to_be_between failed: 1 unexpected of 1 rows; sample values: [1003]" in (
        str(raised.value).splitlines()
    )


def test_extract_time_failures_are_recorded_per_table_without_replacing_other_tables_rows(warehouse_url):
    from validation.results import schema_drift_outcome, unreadable_values_outcome, write_results

    # Two mapped extract tasks of one run each record their own table's failure.
    write_results(warehouse_url, DS, "run-x", [schema_drift_outcome("clicks", ["event_id", "session_id"], ["event_id"])], table="clicks")
    write_results(warehouse_url, DS, "run-x", [unreadable_values_outcome("orders", "amount", "Float64", 2, ["12,50 EUR", "n/a"])], table="orders")
    rows = {(row["table_name"], row["column_name"], row["expectation"], bool(row["critical"]), bool(row["success"]), row["unexpected_count"])
            for row in read_results(warehouse_url)}  # fmt: skip
    assert rows == {
        ("clicks", "session_id", "expect_table_columns_to_match_set", True, False, 1),
        ("orders", "amount", "expect_column_values_to_be_of_type", True, False, 2),
    }
