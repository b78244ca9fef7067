"""Schema drift of a source table: a contract column that is gone, or retyped so that the extract
cannot read it. Named before or instead of the driver's own error ("no such column", "operator does
not exist: text >= timestamp"), so that "why did last night stop?" has an answer in
``data_quality_results``.

A missing column is checked before any query: the extract selects by name and would fail anyway. A
retyped column is judged by what happens, not by its declared type alone: PostgreSQL's TEXT holding
numbers still reads (its values are then checked one by one, and '12,50 EUR' is named with samples),
and SQLite's declared types are only hints. So a read that fails is looked at afterwards: when the
table has columns whose type is not of the contract's kind, the failure is schema drift naming them;
otherwise it is not a data problem (a lost connection, a full disk) and is raised as it came, for
Airflow's retries.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TypeVar

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from etl.casting import ValueTypeError
from etl.warehouse import TABLE_SCHEMAS, create_warehouse_engine, is_sqlite, missing_columns, table_columns

log = logging.getLogger(__name__)
Result = TypeVar("Result")

# The SQL type kinds a contract type reads from. A number may come from any numeric SQL type (NUMERIC,
# DOUBLE PRECISION, INTEGER); a key or a count only from an integer one.
INTEGER, NUMBER, TEXT, TIMESTAMP, DATE, BOOLEAN, BINARY, OTHER = (
    "integer", "number", "text", "timestamp", "date", "boolean", "binary", "other",
)  # fmt: skip


def contract_kinds(dtype: pl.DataType) -> frozenset[str]:
    """The SQL type kinds a column of contract type ``dtype`` may have in the warehouse."""
    if dtype.is_integer():
        return frozenset({INTEGER})
    if dtype.is_float() or isinstance(dtype, pl.Decimal):
        return frozenset({INTEGER, NUMBER})
    if isinstance(dtype, pl.Datetime):
        return frozenset({TIMESTAMP, DATE})
    kinds = {pl.String: {TEXT}, pl.Date: {DATE, TIMESTAMP}, pl.Boolean: {BOOLEAN}, pl.Binary: {BINARY}}
    return frozenset(kinds.get(dtype, {OTHER}))


def sql_kind(sql_type: sa.types.TypeEngine) -> str:
    """The kind of a reflected SQL type. A TIMESTAMP WITH TIME ZONE is a timestamp: warehouse sessions
    run in UTC (``etl.warehouse.SESSION_TIME_ZONE_SQL``), so it reads and compares as naive UTC."""
    if isinstance(sql_type, sa.Integer):
        return INTEGER
    if isinstance(sql_type, sa.Numeric):  # NUMERIC, DOUBLE PRECISION, REAL (Float is a Numeric)
        return NUMBER
    if isinstance(sql_type, sa.DateTime):
        return TIMESTAMP
    if isinstance(sql_type, sa.Date):
        return DATE
    if isinstance(sql_type, sa.Boolean):
        return BOOLEAN
    if isinstance(sql_type, sa.LargeBinary):
        return BINARY
    if isinstance(sql_type, sa.String):  # TEXT, VARCHAR, CHAR, enums
        return TEXT
    return OTHER


def retyped_columns(conn: Connection, table: str) -> dict[str, str]:
    """{column: its SQL type} for the contract columns of ``table`` whose type is not of the kind the
    contract reads; empty on SQLite, where a declared type does not bind the values."""
    if is_sqlite(conn) or not sa.inspect(conn).has_table(table):
        return {}
    schema = TABLE_SCHEMAS[table]
    return {
        column["name"]: str(column["type"])
        for column in sa.inspect(conn).get_columns(table)
        if column["name"] in schema and sql_kind(column["type"]) not in contract_kinds(schema[column["name"]])
    }


class SchemaDriftError(RuntimeError):
    """A source table in the warehouse is missing, lacks contract columns, or has contract columns
    retyped so that the extract cannot read them (``retyped``: {column: its SQL type})."""

    def __init__(self, table: str, expected: list[str], found: list[str], retyped: dict[str, str] | None = None,
                 cause: str = "") -> None:  # fmt: skip
        self.table, self.expected, self.found, self.retyped = table, expected, found, dict(retyped or {})
        if not found:
            what = "is missing"
        elif self.retyped:
            columns = ", ".join(
                f"{column} is {sql_type} (the contract reads {TABLE_SCHEMAS[table][column]})"
                for column, sql_type in self.retyped.items()
            )
            what = f"has retyped column(s): {columns}; the extract failed with: {cause}"
        else:
            what = f"lacks column(s) {missing_columns(table, found)} (has {found})"
        super().__init__(f"Schema drift: the warehouse table {table} {what}; the contract expects {expected}")


def check_source_columns(warehouse_url: str, table: str) -> None:
    """Raise ``SchemaDriftError`` unless the warehouse table has every contract column (extra columns
    are the warehouse's business: the extract selects by name)."""
    engine = create_warehouse_engine(warehouse_url)
    try:
        with engine.connect() as conn:
            found = table_columns(conn, table)
    finally:
        engine.dispose()
    if missing_columns(table, found):
        raise SchemaDriftError(table, list(TABLE_SCHEMAS[table]), found)


def read_naming_drift(warehouse_url: str, tables: Sequence[str], read: Callable[[], Result]) -> Result:
    """``read()``; when it fails and one of ``tables`` (the table read, then the others its query
    joins: users are read through their clicks, orders and reviews) lacks contract columns or has
    retyped ones, a ``SchemaDriftError`` naming the first such table's (the driver's error as its
    cause), else the failure as it came (a lost connection: Airflow retries it)."""
    try:
        return read()
    except ValueTypeError:
        raise  # the column reads, some of its values do not: those are named already
    except Exception as error:
        try:
            drift = find_drift(warehouse_url, tables, error)
        except sa.exc.SQLAlchemyError:
            log.exception("Could not look at the columns of %s after the extract failed", list(tables))
            raise error from None
        if drift is None:
            raise
        raise drift from error


def find_drift(warehouse_url: str, tables: Sequence[str], error: Exception) -> SchemaDriftError | None:
    """The schema drift of the first of ``tables`` that lacks contract columns or has retyped ones."""
    cause = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    engine = create_warehouse_engine(warehouse_url)
    try:
        with engine.connect() as conn:
            return next(filter(None, (table_drift(conn, table, cause) for table in dict.fromkeys(tables))), None)
    finally:
        engine.dispose()


def table_drift(conn: Connection, table: str, cause: str = "") -> SchemaDriftError | None:
    """``table``'s schema drift (contract columns missing, or retyped; ``cause``: the error that made
    us look), or None."""
    found = table_columns(conn, table)
    if missing_columns(table, found):
        return SchemaDriftError(table, list(TABLE_SCHEMAS[table]), found)
    if retyped := retyped_columns(conn, table):
        return SchemaDriftError(table, list(TABLE_SCHEMAS[table]), found, retyped, cause)
    return None


__all__ = ["SchemaDriftError", "check_source_columns", "find_drift", "read_naming_drift", "retyped_columns", "table_drift"]
