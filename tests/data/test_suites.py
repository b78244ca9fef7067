"""The rule definitions: coverage of the contract, critical flags, window keys, referential pairs and their SQL, windows."""
from __future__ import annotations

from datetime import datetime

import pandas as pd
import polars as pl
import pytest

from etl.warehouse import SOURCE_TABLES, TABLE_SCHEMAS
from validation.references import reference_queries
from validation.suites import (
    DAY_COLUMNS, REFERENCE_CHECKS, SUITE_BUILDERS, WINDOW_CHECKS, ValidationWindow, build_suite, pandas_dtype,
)

WINDOW = ValidationWindow(datetime(2026, 1, 1), datetime(2026, 1, 29), datetime(2026, 1, 28))


def kwargs_of(table: str) -> list[tuple[str, dict, dict]]:
    return [(e.expectation_type, e.configuration.kwargs, e.meta) for e in build_suite(table, WINDOW).expectations]


def test_every_source_table_has_a_suite_with_flagged_expectations():
    assert set(SUITE_BUILDERS) == set(SOURCE_TABLES)
    for table in SOURCE_TABLES:
        suite = build_suite(table, WINDOW)
        assert suite.name == table
        for expectation in suite.expectations:
            assert isinstance(expectation.meta["critical"], bool), (table, expectation.expectation_type)
            assert expectation.severity == ("critical" if expectation.meta["critical"] else "warning")


def test_schema_expectations_cover_every_contract_column():
    for table in SOURCE_TABLES:
        types = {
            kwargs["column"]: kwargs["type_"]
            for kind, kwargs, meta in kwargs_of(table)
            if kind == "expect_column_type_to_be" and meta["critical"]
        }
        assert types == {column: pandas_dtype(dtype) for column, dtype in TABLE_SCHEMAS[table].items()}
        column_sets = [
            (e.column_set, e.exact_match, e.meta["critical"])
            for e in build_suite(table, WINDOW).expectations
            if e.expectation_type == "expect_table_columns_to_match_set"
        ]
        assert column_sets == [(list(TABLE_SCHEMAS[table]), True, True)]


@pytest.mark.parametrize("table", SOURCE_TABLES)
def test_pandas_dtypes_match_a_contract_parquet_file_even_when_empty(tmp_path, table):
    """What the schema expectations demand is what a correctly typed extract reads back as."""
    path = tmp_path / f"{table}.parquet"
    pl.DataFrame(schema=TABLE_SCHEMAS[table]).write_parquet(path)
    read_back = pd.read_parquet(path, dtype_backend="numpy_nullable")
    assert {column: str(dtype) for column, dtype in read_back.dtypes.items()} == {
        column: pandas_dtype(dtype) for column, dtype in TABLE_SCHEMAS[table].items()
    }


def test_referential_checks_are_the_contracted_pairs():
    pairs = {(c.table, c.column, c.parent, c.parent_column) for c in REFERENCE_CHECKS}
    assert pairs == {
        ("orders", "user_id", "users", "user_id"),
        ("clicks", "user_id", "users", "user_id"),
        ("clicks", "item_id", "items", "item_id"),
        ("order_items", "order_id", "orders", "order_id"),
        ("order_items", "item_id", "items", "item_id"),
        ("reviews", "user_id", "users", "user_id"),
        ("reviews", "item_id", "items", "item_id"),
        ("reviews", "order_id", "orders", "order_id"),
        ("fraud_labels", "order_id", "orders", "order_id"),
        ("item_images", "item_id", "items", "item_id"),
    }
    # a parent counts only if it existed before window_end
    assert {(c.parent, c.parent_time_column) for c in REFERENCE_CHECKS} == {
        ("users", "signup_at"), ("items", "created_at"), ("orders", "created_at")
    }
    for check in REFERENCE_CHECKS:
        # no key set is shipped to GX any more: the day suites hold no value-set parameters
        assert not any(kind == "expect_column_values_to_be_in_set" and kwargs["column"] == check.column
                       for kind, kwargs, meta in kwargs_of(check.table))
        count_sql, sample_sql = reference_queries(check)
        anti_join = (f"NOT EXISTS (SELECT 1 FROM {check.parent} p WHERE p.{check.parent_column} = c.{check.column} "
                     f"AND p.{check.parent_time_column} < :window_end)")
        assert anti_join in count_sql and anti_join in sample_sql
        time_column = "o.created_at" if check.table == "order_items" else f"c.{DAY_COLUMNS[check.table]}"
        assert f"{time_column} >= :day_start AND {time_column} < :window_end" in count_sql


@pytest.mark.parametrize(
    ("table", "column"),
    [("users", "user_id"), ("items", "item_id"), ("clicks", "event_id"), ("orders", "order_id"),
     ("fraud_labels", "order_id"), ("reviews", "review_id"), ("item_images", "item_id")],
)
def test_ids_are_critically_unique_and_not_null(table, column):
    critical = {(kind, kwargs.get("column")) for kind, kwargs, meta in kwargs_of(table) if meta["critical"]}
    assert WINDOW_CHECKS[table].key == (column,)  # unique across the whole window, not only day D
    assert ("expect_column_values_to_not_be_null", column) in critical


def test_window_checks_cover_every_table_and_required_sources_are_never_empty():
    assert set(WINDOW_CHECKS) == set(SOURCE_TABLES)
    assert WINDOW_CHECKS["order_items"].key == ("order_id", "item_id")
    assert {table for table, check in WINDOW_CHECKS.items() if check.non_empty} == {"users", "items", "order_items"}
    assert {table for table, check in WINDOW_CHECKS.items() if check.non_empty is False} == {"item_images", "fraud_labels"}
    # the rest must have rows on day D itself (the day suites' row count with a row condition)
    for table in ("clicks", "orders", "reviews"):
        assert WINDOW_CHECKS[table].non_empty is None
        assert any(kwargs.get("row_condition") is not None for kind, kwargs, meta in kwargs_of(table)
                   if kind == "expect_table_row_count_to_be_between")


def test_day_d_must_have_clicks_and_orders():
    for table, column in [("clicks", "event_time"), ("orders", "created_at")]:
        day_counts = [
            (kwargs, meta)
            for kind, kwargs, meta in kwargs_of(table)
            if kind == "expect_table_row_count_to_be_between" and kwargs.get("row_condition") is not None
        ]
        assert len(day_counts) == 1
        kwargs, meta = day_counts[0]
        assert kwargs["min_value"] == 1 and meta == {"critical": True, "day_column": column, "day": "2026-01-28"}
        assert "2026-01-28 00:00:00" in repr(kwargs["row_condition"])


def test_window_must_contain_day_d():
    with pytest.raises(ValueError, match="Inconsistent window"):
        ValidationWindow(datetime(2026, 1, 1), datetime(2026, 1, 29), datetime(2026, 1, 29))


def test_the_money_ceiling_is_the_deployments_and_a_bad_setting_is_refused(monkeypatch) -> None:
    from etl.config import load_settings
    from validation.suites import ValidationLimits

    window = ValidationWindow(datetime(2026, 1, 1), datetime(2026, 1, 29), datetime(2026, 1, 28))
    monkeypatch.setenv("SHOPMTL_MONEY_CEILING", "2.5e9")
    limits = ValidationLimits(money_ceiling=load_settings().money_ceiling)
    for table, column in (("items", "price"), ("orders", "amount"), ("order_items", "unit_price")):
        (rule,) = [e for e in build_suite(table, window, limits).expectations
                   if getattr(e, "column", None) == column and type(e).__name__ == "ExpectColumnValuesToBeBetween"]
        assert (rule.min_value, rule.max_value, rule.strict_max) == (0, 2.5e9, True), table
    for bad in ("lots", "inf", "-1", "0"):
        monkeypatch.setenv("SHOPMTL_MONEY_CEILING", bad)
        with pytest.raises(ValueError, match="SHOPMTL_MONEY_CEILING"):
            load_settings()
