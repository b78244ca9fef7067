"""Referential checks where the keys live: ``validation.suites.REFERENCE_CHECKS`` as SQL anti-joins in
the warehouse, on SQLite and PostgreSQL alike.

For each check, day D's child rows are found on the child's indexed time column (order lines through
their order's ``created_at``), and each of their non-null keys is looked up in the parent's primary
key, point in time: a parent counts only if it existed before window_end. No key set travels through
Python; each check returns two numbers (day D's rows, orphans among them) and, only when it failed,
a few distinct orphan keys as samples. Table and column names come from ``REFERENCE_CHECKS`` and
``DAY_COLUMNS``, never from input; the day bounds are bind parameters.

The outcome reads like the GX expectation it replaces: ``expect_column_values_to_be_in_set`` on
``table.column``, unexpected count of day D's rows, sample values. A check that cannot run (a
missing table in the warehouse) is a critical failure that says why.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from etl.warehouse import bind_timestamp, create_warehouse_engine
from validation.results import ExpectationOutcome, rule_outcome
from validation.suites import (
    DAY_COLUMNS,
    REFERENCE_CHECKS,
    TEMPORAL_CHECKS,
    WINDOW_CHECKS,
    ReferenceCheck,
    TemporalCheck,
    ValidationWindow,
)

log = logging.getLogger(__name__)

SAMPLE_LIMIT = 20
FUTURE_TOLERANCE = timedelta(days=1)  # rows dated beyond the extraction plus this are reported
EVALUATED_ON = "warehouse"
IDENTIFIER = re.compile(r"^[a-z_]+$")


def check_references(
    warehouse_url: str, tables: Sequence[str], window: ValidationWindow, now: datetime | None = None
) -> list[ExpectationOutcome]:
    """Run the referential, temporal and future-row checks of ``tables`` in the warehouse, one outcome
    per check. ``now``: the extraction's wall-clock time (naive UTC; default: now)."""
    checks = [check for check in REFERENCE_CHECKS if check.table in tables]
    temporal = [check for check in TEMPORAL_CHECKS if check.table in tables]
    future = [table for table in tables if table in DAY_COLUMNS]
    if not checks and not temporal and not future:
        return []
    now = now or datetime.now(UTC).replace(tzinfo=None)
    engine = create_warehouse_engine(warehouse_url)
    try:
        with engine.connect() as conn:
            return (
                [check_reference(conn, check, window) for check in checks]
                + [check_temporal(conn, check, window) for check in temporal]
                + [check_future_rows(conn, table, now) for table in future]
            )
    finally:
        engine.dispose()


def check_future_rows(conn: Connection, table: str, now: datetime) -> ExpectationOutcome:
    """Rows of ``table`` dated more than ``FUTURE_TOLERANCE`` after the extraction. The extract's
    window never reads them, so without this rule an order dated 2030 (and its lines and labels) would
    vanish without a word, night after night. The tolerance absorbs clocks and naive local times
    (a shop's local time can be hours ahead of UTC)."""
    column, key = DAY_COLUMNS[table], WINDOW_CHECKS[table].key[0]
    for name in (table, column, key):
        if not IDENTIFIER.match(name):
            raise ValueError(f"Not a plain SQL identifier: {name!r}")
    limit = now + FUTURE_TOLERANCE
    params = {"limit": bind_timestamp(conn, limit)}
    kwargs = {"column": column, "max_value": limit.isoformat(sep=" "), "rule": "no row dated after the extraction"}
    try:
        n_future = int(conn.execute(sa.text(f"SELECT COUNT(*) FROM {table} WHERE {column} > :limit"), params).scalar() or 0)
        samples = []
        if n_future:
            sample_sql = f"SELECT {key} FROM {table} WHERE {column} > :limit ORDER BY {column} DESC, {key} LIMIT :sample_limit"
            samples = [row[0] for row in conn.execute(sa.text(sample_sql), {**params, "sample_limit": SAMPLE_LIMIT})]
    except sa.exc.SQLAlchemyError as error:
        conn.rollback()
        log.error("Future-row check of %s.%s could not run: %s", table, column, error)
        return rule_outcome(
            table, column, "expect_column_values_to_be_between", critical=True, kwargs=kwargs, element_count=None,
            exception=str(error.orig if hasattr(error, "orig") else error).strip(), evaluated_on=EVALUATED_ON,
        )
    return rule_outcome(
        table, column, "expect_column_values_to_be_between", critical=True, kwargs=kwargs,
        element_count=n_future, unexpected_count=n_future, unexpected_values=samples, evaluated_on=EVALUATED_ON,
    )


def check_temporal(conn: Connection, check: TemporalCheck, window: ValidationWindow) -> ExpectationOutcome:
    """Day D's ``check.table`` rows whose ``check.column`` is earlier than their parent's time."""
    for name in (check.table, check.column, check.key, check.parent, check.parent_column):
        if not IDENTIFIER.match(name):
            raise ValueError(f"Not a plain SQL identifier: {name!r}")
    day_rows = (
        f"{check.table} c JOIN {check.parent} p ON p.{check.key} = c.{check.key} "
        f"WHERE {day_condition('c', DAY_COLUMNS[check.table])}"
    )
    early = f"c.{check.column} < p.{check.parent_column}"
    params = {"day_start": bind_timestamp(conn, window.day_start), "window_end": bind_timestamp(conn, window.window_end)}
    kwargs = {"column_A": check.column, "column_B": f"{check.parent}.{check.parent_column} of the same {check.key}", "or_equal": True}
    expectation = "expect_column_pair_values_a_to_be_greater_than_b"
    try:
        n_rows, n_early = conn.execute(sa.text(f"SELECT COUNT(*), SUM(CASE WHEN {early} THEN 1 ELSE 0 END) FROM {day_rows}"), params).one()
        n_early = int(n_early or 0)
        samples = []
        if n_early:
            sample_sql = f"SELECT DISTINCT c.{check.key} FROM {day_rows} AND {early} ORDER BY 1 LIMIT :sample_limit"
            samples = [row[0] for row in conn.execute(sa.text(sample_sql), {**params, "sample_limit": SAMPLE_LIMIT})]
    except sa.exc.SQLAlchemyError as error:
        conn.rollback()
        log.error("Temporal check %s.%s >= %s.%s could not run: %s", check.table, check.column, check.parent, check.parent_column, error)
        return rule_outcome(
            check.table, check.column, expectation, critical=True, kwargs=kwargs, element_count=None,
            exception=str(error.orig if hasattr(error, "orig") else error).strip(), evaluated_on=EVALUATED_ON,
        )
    return rule_outcome(
        check.table, check.column, expectation, critical=True, kwargs=kwargs,
        element_count=int(n_rows), unexpected_count=n_early, unexpected_values=samples, evaluated_on=EVALUATED_ON,
    )


def check_reference(conn: Connection, check: ReferenceCheck, window: ValidationWindow) -> ExpectationOutcome:
    """One anti-join: day D's ``check.table.column`` values without a parent known before window_end."""
    count_sql, sample_sql = reference_queries(check)
    params = {
        "day_start": bind_timestamp(conn, window.day_start),
        "window_end": bind_timestamp(conn, window.window_end),
    }
    kwargs = {
        "column": check.column,
        "value_set": f"keys of {check.parent}.{check.parent_column} with {check.parent_time_column} < window_end",
        "day_start": window.day_start.isoformat(sep=" "),
        "window_end": window.window_end.isoformat(sep=" "),
    }
    try:
        n_rows, n_orphans = conn.execute(sa.text(count_sql), params).one()
        n_orphans = int(n_orphans or 0)
        samples = []
        if n_orphans:
            rows = conn.execute(sa.text(sample_sql), {**params, "sample_limit": SAMPLE_LIMIT})
            samples = [row[0] for row in rows]
    except sa.exc.SQLAlchemyError as error:
        conn.rollback()  # PostgreSQL refuses further statements in a failed transaction
        log.error("Referential check %s.%s -> %s could not run: %s", check.table, check.column, check.parent, error)
        return rule_outcome(
            check.table, check.column, "expect_column_values_to_be_in_set", critical=True, kwargs=kwargs,
            element_count=None, exception=str(error.orig if hasattr(error, "orig") else error).strip(),
            evaluated_on=EVALUATED_ON,
        )
    return rule_outcome(
        check.table, check.column, "expect_column_values_to_be_in_set", critical=True, kwargs=kwargs,
        element_count=int(n_rows), unexpected_count=n_orphans, unexpected_values=samples, evaluated_on=EVALUATED_ON,
    )


def reference_queries(check: ReferenceCheck) -> tuple[str, str]:
    """(count query, sample query) of one check; names from REFERENCE_CHECKS, values bound."""
    for name in (check.table, check.column, check.parent, check.parent_column, check.parent_time_column):
        if not IDENTIFIER.match(name):
            raise ValueError(f"Not a plain SQL identifier: {name!r}")
    day_rows = day_rows_sql(check.table)
    orphan = (
        f"c.{check.column} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {check.parent} p "
        f"WHERE p.{check.parent_column} = c.{check.column} AND p.{check.parent_time_column} < :window_end)"
    )
    count_sql = f"SELECT COUNT(*), SUM(CASE WHEN {orphan} THEN 1 ELSE 0 END) FROM {day_rows}"
    sample_sql = f"SELECT DISTINCT c.{check.column} FROM {day_rows} AND {orphan} ORDER BY 1 LIMIT :sample_limit"
    return count_sql, sample_sql


def day_rows_sql(table: str) -> str:
    """``FROM ... WHERE ...`` selecting ``table``'s rows of day D (alias ``c``) on an indexed time column."""
    if table == "order_items":
        return (
            "order_items c JOIN orders o ON o.order_id = c.order_id "
            f"WHERE {day_condition('o', DAY_COLUMNS['orders'])}"
        )
    return f"{table} c WHERE {day_condition('c', DAY_COLUMNS[table])}"


def day_condition(alias: str, column: str) -> str:
    """``alias.column`` within day D, [day_start, window_end)."""
    return f"{alias}.{column} >= :day_start AND {alias}.{column} < :window_end"


__all__ = ["check_future_rows", "check_references", "check_temporal", "reference_queries"]
