"""Reading a source's values as their contract types (``etl.contract``'s schemas, via
``etl.warehouse.TABLE_SCHEMAS``), strictly: a value that does not read as its type exactly is named
(``ValueTypeError``: table, column, count, samples), never turned into a null, a truncated number or
a guessed boolean. SQLite stores any value under any declared type, so this is where its types are
enforced; PostgreSQL's typed columns pass through unchanged.
"""
from __future__ import annotations

from collections.abc import Mapping

import polars as pl


class ValueTypeError(ValueError):
    """Values of a source column that cannot be read as its contract type ('12,50 EUR' in a numeric
    column, '2026-01-09 25:61:00' or an offset in a timestamp): named with table, column, count and
    samples instead of the cast's own error."""

    def __init__(self, table: str, column: str, dtype: pl.DataType, count: int, samples: list[object]) -> None:
        self.table, self.column, self.dtype, self.count, self.samples = table, column, dtype, count, samples
        super().__init__(f"{table}.{column}: {count} value(s) cannot be read as {dtype}; samples: {samples}")


TIMESTAMP_TEXT = r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?$"  # naive UTC text, as the contract stores it


TRUE_TEXT, FALSE_TEXT = ["1", "1.0", "true", "t"], ["0", "0.0", "false", "f"]


def _cast_expression(name: str, source: pl.DataType, dtype: pl.DataType) -> pl.Expr:
    """``name`` as ``dtype``, null where a value does not read as one (``cast_to_schema`` names those)."""
    column = pl.col(name)
    if isinstance(dtype, pl.Datetime) and source == pl.String:
        # Only naive text is a timestamp here (the contract's UTC): one with an offset or zone would
        # name another instant's wall time, so it is refused rather than parsed.
        naive = pl.when(column.str.contains(TIMESTAMP_TEXT)).then(column).otherwise(None)
        return naive.str.to_datetime(time_unit="us", strict=False)
    if dtype == pl.Date and source == pl.String:
        return column.str.to_date(strict=False)
    if dtype == pl.Boolean and source != pl.Boolean:
        # SQLite's booleans are 0 and 1; a 2 or a 'maybe' is not a label, and no cast makes it one.
        text = column.cast(pl.String).str.to_lowercase()
        return pl.when(text.is_in(TRUE_TEXT)).then(True).when(text.is_in(FALSE_TEXT)).then(False).otherwise(None)
    if dtype.is_integer() and source.is_float():
        # 10.7 is no item id and 4.5 no rating: a cast would truncate them to 10 and 4 without a word.
        return pl.when(column.is_finite() & (column == column.floor())).then(column).otherwise(None).cast(dtype, strict=False)
    return column.cast(dtype, strict=False)


def cast_to_schema(frame: pl.DataFrame, schema: Mapping[str, pl.DataType], table: str = "query") -> pl.DataFrame:
    """Cast the columns of a raw query result to the contract types (SQLite returns text timestamps).

    A value that does not read as its type is a ``ValueTypeError`` naming ``table``, the column, how
    many and which values, never a silent null."""
    columns = [
        _cast_expression(name, frame.schema[name], dtype).cast(dtype).alias(name)
        if name in frame.columns
        else pl.lit(None, dtype=dtype).alias(name)
        for name, dtype in schema.items()
    ]
    result = frame.select(columns + [name for name in frame.columns if name not in schema])
    for name, dtype in schema.items():
        if name not in frame.columns:
            continue
        unread = frame.get_column(name).is_not_null() & result.get_column(name).is_null()  # [rows]
        count = int(unread.sum())
        if count:
            raise ValueTypeError(table, name, dtype, count, frame.get_column(name).filter(unread).head(5).to_list())
    return result


__all__ = ["TIMESTAMP_TEXT", "ValueTypeError", "cast_to_schema"]
