"""Which rows of a window extract are tonight's to validate: the rows of day D, read with pyarrow
filters so that the earlier days of the window are never loaded into pandas.

Earlier days were validated on their own nights (a backfill validates its own day). Tonight's rows:

- clicks, orders, reviews, fraud_labels: every row whose time column (``validation.suites.DAY_COLUMNS``)
  is not on an earlier day of the window, i.e. day D itself, and also any row the extract should not
  hold (a null time, a time at or after window_end, a time before window_start), so that the day
  suite's null and in-window rules still see them. Fraud labels go by ``labeled_at``: a label is new
  on the night it becomes known, whenever its order was placed.
- order_items: the lines of tonight's orders, i.e. every line except those of an order of an earlier
  day in the orders extract (a line whose order is missing from that extract is tonight's too).
- users: signed up on D (or later, or unknown), or active on D (a click, order or review of D).
- items: listed on D (or later, or unknown), or named by one of D's clicks, order lines or reviews.
  Items and users have no ``updated_at``: the rows D's training data uses are checked again on D.
- item_images: updated on D (or later, or unknown).

A time column that is missing or not a timestamp cannot split days: then every row is tonight's and
the schema expectations say what is wrong.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from etl.layout import extract_path
from validation.suites import DAY_COLUMNS, ValidationWindow

EVENT_TABLES = ("clicks", "orders", "reviews", "fraud_labels")  # rows live inside the window
# The key of users and items, and the extracts whose rows of D name the users active on D / the items used on D.
ACTIVITY_SOURCES: dict[str, tuple[str, tuple[str, ...]]] = {
    "users": ("user_id", ("clicks", "orders", "reviews")),
    "items": ("item_id", ("clicks", "order_items", "reviews")),
}


class ExtractReadError(Exception):
    """An extract needed to select tonight's rows is missing or unreadable; names the table."""

    def __init__(self, table: str, path: Path, error: Exception | str) -> None:
        super().__init__(f"Cannot read the extract of table {table} ({path}): {error}")
        self.table = table


def read_day_rows(extract_dir: Path, table: str, window: ValidationWindow) -> pd.DataFrame:
    """Tonight's rows of ``table``'s extract, with pandas' nullable dtypes (a null id stays null)."""
    path = extract_path(extract_dir, table)
    row_filter = day_filter(extract_dir, table, window)
    try:
        return pd.read_parquet(path, dtype_backend="numpy_nullable", filters=row_filter)
    except (OSError, pa.ArrowException) as error:
        raise ExtractReadError(table, path, error) from error


def day_filter(extract_dir: Path, table: str, window: ValidationWindow) -> pc.Expression | None:
    """The pyarrow filter selecting tonight's rows of ``table`` (None: every row)."""
    schema = read_schema(extract_dir, table)
    if table == "order_items":
        earlier_orders = earlier_keys(extract_dir, "orders", "order_id", window)
        if "order_id" not in schema.names or earlier_orders is None:
            return None
        return ~pc.field("order_id").isin(earlier_orders)
    time_column = DAY_COLUMNS[table]
    if not is_timestamp(schema, time_column):
        return None
    time = pc.field(time_column)
    tonight = time.is_null() | (time >= window.day_start)
    if table in EVENT_TABLES:
        tonight = tonight | (time < window.window_start)
    if table in ACTIVITY_SOURCES:
        key, sources = ACTIVITY_SOURCES[table]
        if key in schema.names:
            tonight = tonight | pc.field(key).isin(named_keys(extract_dir, sources, key, window))
    return tonight


def earlier_keys(extract_dir: Path, table: str, key: str, window: ValidationWindow) -> pa.Array | None:
    """The ``key`` values of ``table``'s rows of earlier days of the window (None: cannot tell)."""
    schema = read_schema(extract_dir, table)
    time_column = DAY_COLUMNS[table]
    if key not in schema.names or not is_timestamp(schema, time_column):
        return None
    time = pc.field(time_column)
    earlier = (time >= window.window_start) & (time < window.day_start)
    return read_column(extract_dir, table, key, earlier)


def named_keys(extract_dir: Path, tables: Iterable[str], key: str, window: ValidationWindow) -> pa.Array:
    """The distinct ``key`` values in tonight's rows of those ``tables`` whose extracts exist."""
    arrays = []
    for table in tables:
        if not extract_path(extract_dir, table).is_file() or key not in read_schema(extract_dir, table).names:
            continue
        values = read_column(extract_dir, table, key, day_filter(extract_dir, table, window))
        arrays.append(values.drop_null().cast(pa.int64()))
    return pc.unique(pa.chunked_array(arrays, type=pa.int64()))


def read_column(extract_dir: Path, table: str, column: str, row_filter: pc.Expression | None) -> pa.Array:
    """One column of the filtered rows of an extract, as an Arrow array (never a Python list)."""
    path = extract_path(extract_dir, table)
    try:
        values = ds.dataset(path, format="parquet").to_table(columns=[column], filter=row_filter).column(column)
    except (OSError, pa.ArrowException) as error:
        raise ExtractReadError(table, path, error) from error
    return values.combine_chunks()


def read_schema(extract_dir: Path, table: str) -> pa.Schema:
    """The Arrow schema of an extract (its footer only)."""
    path = extract_path(extract_dir, table)
    try:
        return pq.read_schema(path)
    except (OSError, pa.ArrowException) as error:
        raise ExtractReadError(table, path, error) from error


def is_timestamp(schema: pa.Schema, column: str) -> bool:
    """Whether ``column`` exists and holds naive timestamps (so day boundaries can be compared)."""
    if column not in schema.names:
        return False
    dtype = schema.field(column).type
    return pa.types.is_timestamp(dtype) and dtype.tz is None


__all__ = ["ExtractReadError", "read_day_rows"]
