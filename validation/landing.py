"""Has day D's data landed? The sources the day suites require rows of on D (``rows_on_day``: clicks,
orders, reviews when configured) must each hold at least one row dated on D. The DAG's first
sensor waits for that, so a night whose loads are late waits instead of failing validation, and
gives up with "no data for D" once D's end plus the ``wait_for_data_hours`` Param has passed: a
backfill of an old day that has no data fails at once, a scheduled night waits for its loads (from
its own start when that is later: a DAG unpaused after a pause gets its newest day's run then).

One indexed range probe per table (``LIMIT 1`` on its day column), whatever the table's size.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa

from etl.drift import table_drift
from etl.warehouse import bind_timestamp, create_warehouse_engine
from validation.references import check_identifiers
from validation.results import ExpectationOutcome, rule_outcome, write_results
from validation.suites import DAY_COLUMNS, WINDOW_CHECKS

# The tables whose day suite fails without rows on day D (WindowCheck.non_empty None: rows_on_day).
DAY_REQUIRED = tuple(table for table, check in WINDOW_CHECKS.items() if check.non_empty is None)


@dataclass(frozen=True)
class Landing:
    """What the warehouse holds of day D: the required sources without a row on D (missing tables,
    and tables whose day column was dropped or retyped so that it cannot be compared, are left to
    the extract, which names them as schema drift)."""

    day_start: datetime
    missing: tuple[str, ...]

    @property
    def landed(self) -> bool:
        return not self.missing

    @property
    def day_end(self) -> datetime:
        return self.day_start + timedelta(days=1)

    def wait_start(self, waiting_since: datetime | None = None) -> datetime:
        """When the wait began: D's end, or ``waiting_since`` when that is later (a scheduled run
        created late, when its DAG was unpaused: it waits its full time for its loads)."""
        return max(self.day_end, waiting_since or datetime.min)

    def gave_up(self, now: datetime, wait: timedelta, waiting_since: datetime | None = None) -> bool:
        """Whether to stop waiting: data is still missing ``wait`` after the wait began (``wait_start``)."""
        return not self.landed and now >= self.wait_start(waiting_since) + wait

    def message(self) -> str:
        day = self.day_start.date().isoformat()
        if self.landed:
            return f"Day {day} has landed: every required source has rows on it"
        return f"No data for {day} yet: {', '.join(self.missing)} hold no row dated {day}"

    def outcomes(self) -> list[ExpectationOutcome]:
        """One critical row-count failure per missing source, like the day suite's ``rows_on_day``."""
        day = self.day_start.date().isoformat()
        return [
            rule_outcome(
                table, None, "expect_table_row_count_to_be_between", critical=True,
                kwargs={"min_value": 1, "day_column": DAY_COLUMNS[table], "day": day}, element_count=0,
                observed_value=0, success=False, evaluated_on="warehouse",
            )  # fmt: skip
            for table in self.missing
        ]


def check_landing(warehouse_url: str, day_start: datetime, tables: Sequence[str]) -> Landing:
    """Which of ``tables`` (the configured sources) that must have rows on the day starting at
    ``day_start`` (naive UTC) have none yet."""
    required = [table for table in tables if table in DAY_REQUIRED]
    engine = create_warehouse_engine(warehouse_url)
    missing = []
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            bounds = {"start": bind_timestamp(conn, day_start), "end": bind_timestamp(conn, day_start + timedelta(days=1))}
            # has_table: a source may be a view over the platform's own tables, as the extract allows
            for table in (table for table in required if inspector.has_table(table)):
                column = DAY_COLUMNS[table]
                check_identifiers(table, column)
                probe = f"SELECT 1 FROM {table} WHERE {column} >= :start AND {column} < :end LIMIT 1"
                try:
                    if conn.execute(sa.text(probe), bounds).first() is None:
                        missing.append(table)
                except sa.exc.DBAPIError:
                    conn.rollback()  # PostgreSQL refuses further statements in a failed transaction
                    if table_drift(conn, table) is None:
                        raise
                    # A dropped or retyped day column: the extract names it as schema drift.
    finally:
        engine.dispose()
    return Landing(day_start, tuple(missing))


class NoDataError(RuntimeError):
    """Day D's data did not land in time: waiting longer is pointless."""


def poke_landing(
    warehouse_url: str,
    ds: date,
    run_id: str,
    tables: Sequence[str],
    wait: timedelta,
    waiting_since: datetime | None = None,
    now: datetime | None = None,
) -> Landing:
    """One look of the DAG's sensor at day ``ds``: its ``Landing``; when it gave up (``Landing.gave_up``),
    the missing sources are written to data_quality_results (run ``run_id``) and ``NoDataError`` says so."""
    day_start = datetime(ds.year, ds.month, ds.day)
    landing = check_landing(warehouse_url, day_start, tables)
    now = now or datetime.now(UTC).replace(tzinfo=None)
    if landing.gave_up(now, wait, waiting_since):
        write_results(warehouse_url, ds, run_id, landing.outcomes())  # "why did it stop?" is answered there
        hours = wait.total_seconds() / 3600
        since = "the run started" if landing.wait_start(waiting_since) > landing.day_end else "the day ended"
        raise NoDataError(f"{landing.message()}, {hours:g} h after {since}")
    return landing


__all__ = ["DAY_REQUIRED", "Landing", "NoDataError", "check_landing", "poke_landing"]
