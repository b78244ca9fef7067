"""The whole-window rules of ``validation.suites.WINDOW_CHECKS`` on one extract, with Polars.

A day's rows cannot show that one of its keys repeats a key of an earlier day of the window, and an
optional table may be empty for a day but not for the whole window. These two rules therefore look
at the window extract, but only at what they need: the key columns (one lazy Parquet scan and a
hash of the keys) and the row count (the Parquet footer). They cost a small fraction of a GX pass
over the same rows. Their outcomes read like GX's: ``expect_column_values_to_be_unique`` (or
``expect_compound_columns_to_be_unique``) and ``expect_table_row_count_to_be_between``.
"""
from __future__ import annotations

from pathlib import Path

import polars as pl

from etl.layout import extract_path
from validation.day_rows import ExtractReadError
from validation.results import ExpectationOutcome, rule_outcome
from validation.suites import WINDOW_CHECKS

SAMPLE_LIMIT = 20  # duplicated keys kept as samples, like GX's partial_unexpected_count
EVALUATED_ON = "window extract"


def check_window(extract_dir: Path, table: str) -> tuple[int, list[ExpectationOutcome]]:
    """The row count of ``table``'s window extract and the outcomes of its window rules."""
    check = WINDOW_CHECKS[table]
    path = extract_path(extract_dir, table)
    try:
        n_rows = pl.scan_parquet(path).select(pl.len()).collect().item()
        outcomes = [check_unique_key(path, table, check.key, n_rows)]
    except (OSError, pl.exceptions.PolarsError) as error:
        raise ExtractReadError(table, path, error) from error
    if check.non_empty is not None:
        outcomes.append(
            rule_outcome(
                table, None, "expect_table_row_count_to_be_between",
                critical=check.non_empty, kwargs={"min_value": 1}, element_count=n_rows,
                observed_value=n_rows, success=n_rows >= 1, evaluated_on=EVALUATED_ON,
            )
        )
    return n_rows, outcomes


def check_unique_key(path: Path, table: str, key: tuple[str, ...], n_rows: int) -> ExpectationOutcome:
    """No two rows of the window share ``key`` (rows with a null key part are left to the null rules)."""
    compound = len(key) > 1
    expectation = "expect_compound_columns_to_be_unique" if compound else "expect_column_values_to_be_unique"
    column = ",".join(key)
    kwargs = {"column_list": list(key)} if compound else {"column": key[0]}
    missing = [name for name in key if name not in pl.read_parquet_schema(path)]
    if missing:
        return rule_outcome(
            table, column, expectation, critical=True, kwargs=kwargs, element_count=n_rows,
            exception=f"column(s) {missing} not in the extract", evaluated_on=EVALUATED_ON,
        )
    duplicated = (
        pl.scan_parquet(path)
        .select(key)
        .drop_nulls()
        .filter(pl.struct(key).is_duplicated() if compound else pl.col(key[0]).is_duplicated())
        .collect()
    )
    samples = duplicated.head(SAMPLE_LIMIT)
    values = samples.to_dicts() if compound else samples.get_column(key[0]).to_list()
    return rule_outcome(
        table, column, expectation, critical=True, kwargs=kwargs, element_count=n_rows,
        unexpected_count=duplicated.height, unexpected_values=values, evaluated_on=EVALUATED_ON,
    )


__all__ = ["check_window"]
