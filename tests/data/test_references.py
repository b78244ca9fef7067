"""Referential checks run where the keys live: SQL anti-joins in the warehouse (validation.references),
point in time, on SQLite and PostgreSQL; no key set travels through Python."""
from __future__ import annotations

import json
from datetime import timedelta

import polars as pl
import pytest
import sqlalchemy as sa

from tests.data.test_validation import WINDOW_END, read_results, run_validation, with_rows
from validation.validate import DataQualityError


@pytest.fixture(scope="module")
def valid_frames() -> dict[str, pl.DataFrame]:
    from tests.data.test_validation import build_valid_extracts

    return build_valid_extracts()


def capture_statements(engine_events: list[tuple[str, object]]):
    """A listener recording every SQL statement and its parameters sent through SQLAlchemy."""

    def record(conn, cursor, statement, parameters, context, executemany):
        engine_events.append((statement, parameters))

    return record


def test_referential_checks_run_in_the_warehouse_point_in_time(tmp_path, warehouse_url, valid_frames):
    """Day D's orphans are found by anti-joins in SQL, with only the day bounds bound, on SQLite and PostgreSQL."""
    items = valid_frames["items"]
    late_item = pl.DataFrame(  # listed only after window_end: it does not count as a parent tonight
        [(77, "toys", 3.0, 501, "Later", WINDOW_END + timedelta(hours=1))], schema=items.schema, orient="row"
    )
    warehouse = {
        **valid_frames,
        "items": pl.concat([items, late_item]),
        "orders": with_rows(valid_frames["orders"], "user_id", {3: 99}),  # day D, user 99 does not exist
        "clicks": with_rows(valid_frames["clicks"], "item_id", {5: 77, 6: 77, 2: 66}),  # D, D, and Jan 15
        "fraud_labels": with_rows(valid_frames["fraud_labels"], "order_id", {1: 4242}),  # labelled on D
    }
    extracts = {table: frame for table, frame in warehouse.items() if table != "users"}
    extracts["items"] = items  # the extract holds items listed before window_end only
    statements: list[tuple[str, object]] = []
    listener = capture_statements(statements)
    sa.event.listen(sa.engine.Engine, "before_cursor_execute", listener)
    try:
        with pytest.raises(DataQualityError) as raised:
            # no users extract at all: the parents are looked up in the warehouse, not in Parquet files
            run_validation(tmp_path, warehouse_url, extracts, tables=("orders", "clicks", "fraud_labels"),
                           warehouse_frames=warehouse)
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", listener)

    lines = [failure.describe() for failure in raised.value.failures]
    assert lines == [
        "orders.user_id: expect_column_values_to_be_in_set failed: 1 unexpected of 2 rows; sample values: [99]",
        "clicks.item_id: expect_column_values_to_be_in_set failed: 2 unexpected of 4 rows; sample values: [77]",
        "fraud_labels.order_id: expect_column_values_to_be_in_set failed: 1 unexpected of 1 rows; sample values: [4242]",
    ]
    failed = {(row["table_name"], row["column_name"]): row for row in read_results(warehouse_url) if not row["success"]}
    assert set(failed) == {("orders", "user_id"), ("clicks", "item_id"), ("fraud_labels", "order_id")}
    assert json.loads(failed[("clicks", "item_id")]["sample_values"]) == [77]
    assert json.loads(failed[("clicks", "item_id")]["details_json"])["result"]["evaluated_on"] == "warehouse"

    anti_joins = [(statement, parameters) for statement, parameters in statements if "NOT EXISTS (SELECT 1 FROM" in statement]
    # one count per check of the three tables (4), one sample query per failed check (3)
    assert len(anti_joins) == 4 + 3
    for statement, parameters in anti_joins:
        values = list(parameters.values()) if isinstance(parameters, dict) else list(parameters)
        # only the bounds of day D and the sample size travel: no key sets
        assert len(set(map(str, values))) <= 3 and not any(isinstance(value, (list, tuple, set)) for value in values)
