"""Rules that run where the keys live, as SQL in the warehouse, on SQLite and PostgreSQL alike: the
referential checks (``validation.suites.REFERENCE_CHECKS``, anti-joins), the temporal checks
(``TEMPORAL_CHECKS``: a label or review no earlier than its order) and the future-row check (no row
dated after the extraction, which the window would silently never read). Each is a ``WarehouseRule``
run by ``run_rule``.

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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

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


@dataclass(frozen=True)
class WarehouseRule:
    """One rule run as SQL in the warehouse: ``count_sql`` returns (rows looked at, rows breaking it),
    ``sample_sql`` a few keys of the breaking rows; the outcome reads like ``expectation`` on
    ``table.column``."""

    table: str
    column: str
    expectation: str
    kwargs: dict[str, Any]
    count_sql: str
    sample_sql: str
    params: dict[str, Any]


def run_rule(conn: Connection, rule: WarehouseRule) -> ExpectationOutcome:
    """Run a warehouse rule; a rule that cannot run (a missing table or column) is a critical failure
    saying why."""
    try:
        n_rows, n_broken = conn.execute(sa.text(rule.count_sql), rule.params).one()
        n_broken = int(n_broken or 0)
        samples = []
        if n_broken:
            rows = conn.execute(sa.text(rule.sample_sql), {**rule.params, "sample_limit": SAMPLE_LIMIT})
            samples = [row[0] for row in rows]
    except sa.exc.SQLAlchemyError as error:
        conn.rollback()  # PostgreSQL refuses further statements in a failed transaction
        log.error("Warehouse rule %s on %s.%s could not run: %s", rule.expectation, rule.table, rule.column, error)
        return rule_outcome(
            rule.table, rule.column, rule.expectation, critical=True, kwargs=rule.kwargs, element_count=None,
            exception=str(error.orig if hasattr(error, "orig") else error).strip(), evaluated_on=EVALUATED_ON,
        )
    return rule_outcome(
        rule.table, rule.column, rule.expectation, critical=True, kwargs=rule.kwargs,
        element_count=int(n_rows), unexpected_count=n_broken, unexpected_values=samples, evaluated_on=EVALUATED_ON,
    )


def check_identifiers(*names: str) -> None:
    """Names spliced into SQL come from this code's tables of rules; refuse anything else."""
    for name in names:
        if not IDENTIFIER.match(name):
            raise ValueError(f"Not a plain SQL identifier: {name!r}")


def check_future_rows(conn: Connection, table: str, now: datetime) -> ExpectationOutcome:
    """Rows of ``table`` dated more than ``FUTURE_TOLERANCE`` after the extraction. The extract's
    window never reads them, so without this rule an order dated 2030 (and its lines and labels) would
    vanish without a word, night after night. The tolerance absorbs clocks and naive local times
    (a shop's local time can be hours ahead of UTC)."""
    column, key = DAY_COLUMNS[table], WINDOW_CHECKS[table].key[0]
    check_identifiers(table, column, key)
    limit = now + FUTURE_TOLERANCE
    return run_rule(conn, WarehouseRule(
        table, column, "expect_column_values_to_be_between",
        {"column": column, "max_value": limit.isoformat(sep=" "), "rule": "no row dated after the extraction"},
        f"SELECT COUNT(*), COUNT(*) FROM {table} WHERE {column} > :limit",
        f"SELECT {key} FROM {table} WHERE {column} > :limit ORDER BY {column} DESC, {key} LIMIT :sample_limit",
        {"limit": bind_timestamp(conn, limit)},
    ))  # fmt: skip


def check_temporal(conn: Connection, check: TemporalCheck, window: ValidationWindow) -> ExpectationOutcome:
    """Day D's ``check.table`` rows whose ``check.column`` is earlier than their parent's time."""
    check_identifiers(check.table, check.column, check.key, check.parent, check.parent_column)
    day_rows = (
        f"{check.table} c JOIN {check.parent} p ON p.{check.key} = c.{check.key} "
        f"WHERE {day_condition('c', DAY_COLUMNS[check.table])}"
    )
    early = f"c.{check.column} < p.{check.parent_column}"
    return run_rule(conn, WarehouseRule(
        check.table, check.column, "expect_column_pair_values_a_to_be_greater_than_b",
        {"column_A": check.column, "column_B": f"{check.parent}.{check.parent_column} of the same {check.key}", "or_equal": True},
        f"SELECT COUNT(*), SUM(CASE WHEN {early} THEN 1 ELSE 0 END) FROM {day_rows}",
        f"SELECT DISTINCT c.{check.key} FROM {day_rows} AND {early} ORDER BY 1 LIMIT :sample_limit",
        day_params(conn, window),
    ))  # fmt: skip


def check_reference(conn: Connection, check: ReferenceCheck, window: ValidationWindow) -> ExpectationOutcome:
    """One anti-join: day D's ``check.table.column`` values without a parent known before window_end."""
    count_sql, sample_sql = reference_queries(check)
    kwargs = {
        "column": check.column,
        "value_set": f"keys of {check.parent}.{check.parent_column} with {check.parent_time_column} < window_end",
        "day_start": window.day_start.isoformat(sep=" "),
        "window_end": window.window_end.isoformat(sep=" "),
    }
    return run_rule(conn, WarehouseRule(
        check.table, check.column, "expect_column_values_to_be_in_set", kwargs, count_sql, sample_sql, day_params(conn, window),
    ))  # fmt: skip


def day_params(conn: Connection, window: ValidationWindow) -> dict[str, Any]:
    """Day D's bounds as bind parameters."""
    return {"day_start": bind_timestamp(conn, window.day_start), "window_end": bind_timestamp(conn, window.window_end)}


def reference_queries(check: ReferenceCheck) -> tuple[str, str]:
    """(count query, sample query) of one check; names from REFERENCE_CHECKS, values bound."""
    check_identifiers(check.table, check.column, check.parent, check.parent_column, check.parent_time_column)
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
