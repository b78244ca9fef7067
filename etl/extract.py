"""Extract the sources of one training window from the warehouse into Parquet.

Point-in-time: nothing at or after ``window_end`` (the end of day D's data interval) is read, and a
fraud label is read only when its ``labeled_at`` is before ``window_end``.

Incremental: with a partitions directory (``Settings.partitions_dir``) the event sources are read from
the warehouse one day at a time into immutable daily partitions, and a night assembles its window from
them, so a night's extraction costs one day of events instead of ``window_days``.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import polars as pl
from sqlalchemy.engine import Connection

from etl.casting import cast_to_schema
from etl.contract import SOURCE_TABLES
from etl.drift import check_source_columns, read_naming_drift
from etl.io import SCRATCH_COMPRESSION, write_parquet_atomically
from etl.layout import extract_path, partition_path
from etl.warehouse import (
    SQL_DIR,
    TABLE_SCHEMAS,
    arrow_query_to_frame,
    bind_timestamp,
    create_warehouse_engine,
    is_sqlite,
    mask_url,
    named_tables,
    read_frame,
)

log = logging.getLogger(__name__)

# The query of each source is sql/extract/<table>.sql: the rows that fall in [window_start, window_end).
# Dimension tables (users, items, item_images) take every row that existed before window_end; users
# only when they were active in the window, so the extract grows with activity and not with the whole
# customer base. Every query orders by its key: the same rows must give the same files, whatever else
# the warehouse holds. (sql/extract is not a DDL area: etl.warehouse.create_tables never runs it.)
EXTRACT_SQL_DIR = SQL_DIR / "extract"

# Event sources have a day of their own, so each day d is read once into the partition
# $SHOPMTL_HOME/partitions/<warehouse>/<table>/<d>.parquet (sql/extract/partitions/<table>.sql: the rows of
# [d, d + 1) as the warehouse knows them when the partition is written): clicks by event_time, orders
# and reviews by created_at, order_items by their order's created_at, fraud_labels by labeled_at (the
# day the label became known; labels arrive days after their order). The value is each table's key,
# the ORDER BY of its whole-window query, which the assembled window is sorted by.
# The dimension sources (users, items, item_images) stay whole-window queries: they have no day of
# their own to partition by. Their extract is every row that existed before window_end (users: those
# active in the window), not the rows of the window's days, and a row changes in place (an image is
# replaced); partitioning them by the day a row changed is a later step.
PARTITION_SQL_DIR = EXTRACT_SQL_DIR / "partitions"
PARTITION_KEYS: dict[str, tuple[str, ...]] = {
    "clicks": ("event_id",),
    "orders": ("order_id",),
    "order_items": ("order_id", "item_id"),
    "reviews": ("review_id",),
    "fraud_labels": ("order_id",),
}
# The event sources trailing features read (etl.features.build_daily_activity) and labels look ahead in:
# their partitions reach back ``history_days`` before the window, so every day of the window gets its
# whole trailing history (etl.impression_days), the first one too.
HISTORY_SOURCES = ("clicks", "orders", "order_items", "reviews")
# A fraud_labels partition keeps each label's order time, so that a window keeps the labels of its own
# orders without reading the orders (another mapped task extracts those at the same time).
ORDER_CREATED_AT = "order_created_at"


def extract_query(table: str) -> str:
    """The extract query of source ``table`` (bind parameters ``:window_start`` and ``:window_end``)."""
    if table not in SOURCE_TABLES:
        raise ValueError(f"Unknown source table {table!r}; expected one of {sorted(SOURCE_TABLES)}")
    return (EXTRACT_SQL_DIR / f"{table}.sql").read_text()


def query_tables(table: str) -> tuple[str, ...]:
    """``table`` and the other source tables its extract queries read (orders for lines and labels)."""
    text = extract_query(table) + (partition_query(table) if table in PARTITION_KEYS else "")
    return tuple(dict.fromkeys([table, *(name for name in named_tables(text) if name in SOURCE_TABLES)]))


def partition_query(table: str) -> str:
    """The one-day query of event source ``table`` (bind parameters ``:day_start`` and ``:day_end``)."""
    if table not in PARTITION_KEYS:
        raise ValueError(f"{table!r} has no daily partitions; partitioned sources: {sorted(PARTITION_KEYS)}")
    return (PARTITION_SQL_DIR / f"{table}.sql").read_text()


@dataclass(frozen=True)
class ExtractWindow:
    """The training window that ends with day ``ds`` (its data interval is [ds, ds + 1 day))."""

    ds: date
    window_days: int = 28

    @property
    def window_end(self) -> datetime:
        return datetime(self.ds.year, self.ds.month, self.ds.day) + timedelta(days=1)

    @property
    def window_start(self) -> datetime:
        return self.window_end - timedelta(days=self.window_days)

    @property
    def day_start(self) -> datetime:
        return self.window_end - timedelta(days=1)

    @property
    def days(self) -> list[date]:
        """The window's days, oldest first (the last is ``ds``)."""
        return self.days_with_history(0)

    def days_with_history(self, history_days: int) -> list[date]:
        """The window's days and the ``history_days`` before it, oldest first."""
        return [self.ds - timedelta(days=back) for back in range(self.window_days + history_days - 1, -1, -1)]


@dataclass(frozen=True)
class ExtractResult:
    table: str
    path: str
    rows: int

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def extract_source(
    table: str,
    warehouse_url: str,
    window: ExtractWindow,
    extract_dir: Path,
    partitions_dir: Path | None = None,
    full_refresh: bool = False,
    history_days: int = 0,
) -> ExtractResult:
    """Copy one source table's rows for ``window`` into ``extract_dir/<table>.parquet`` (``etl.layout.extract_path``).

    With ``partitions_dir`` an event source is assembled from its daily partitions, extracting only
    the days it needs (``extract_partitions``; ``full_refresh`` re-extracts all of them), and the
    ``HISTORY_SOURCES`` also keep the partitions of the ``history_days`` before the window (read by
    ``etl.build_features``, not part of the window's extract); without ``partitions_dir``,
    and for the dimension sources, one whole-window query reads it.
    """
    path = extract_path(extract_dir, table)
    check_source_columns(warehouse_url, table)
    # A query that fails on a retyped column (its own, or orders' for the lines and labels read
    # through their order) is named as that table's schema drift.
    frame, how = read_naming_drift(
        warehouse_url, query_tables(table),
        lambda: read_window(table, warehouse_url, window, partitions_dir, full_refresh, history_days),
    )
    write_parquet_atomically(frame, path, SCRATCH_COMPRESSION)
    log.info(
        "Extracted %s: %d rows for [%s, %s) from %s: %s",
        table, frame.height, window.window_start, window.window_end, mask_url(warehouse_url), how,
    )
    return ExtractResult(table=table, path=str(path), rows=frame.height)


def read_window(
    table: str,
    warehouse_url: str,
    window: ExtractWindow,
    partitions_dir: Path | None,
    full_refresh: bool,
    history_days: int,
) -> tuple[pl.DataFrame, str]:
    """(``table``'s rows of ``window``, how they were read): see ``extract_source``."""
    if partitions_dir is not None and table in PARTITION_KEYS:
        history = history_days if table in HISTORY_SOURCES else 0
        written = extract_partitions(table, warehouse_url, window, partitions_dir, full_refresh, history)
        days = ", ".join(day.isoformat() for day in written)
        kept = window.window_days + history
        how = f"extracted {len(written)} day(s) [{days}], reused {kept - len(written)} from {partitions_dir}"
        return assemble_window(table, window, partitions_dir), how
    engine = create_warehouse_engine(warehouse_url)
    try:
        with engine.connect() as conn:
            frame = read_rows(conn, extract_query(table), table, window.window_start, window.window_end, "window")
    finally:
        engine.dispose()
    return frame, "whole-window query"


def read_rows(conn: Connection, query: str, table: str, start: datetime, end: datetime, bound: str) -> pl.DataFrame:
    """Run an extract query bound to ``:<bound>_start`` / ``:<bound>_end``, typed as ``table``."""
    params = {f"{bound}_start": bind_timestamp(conn, start), f"{bound}_end": bind_timestamp(conn, end)}
    # PostgreSQL streams the rows into Arrow (ADBC, binary COPY); SQLite (embedded, demo-sized) reads rows.
    read = read_frame if is_sqlite(conn) else arrow_query_to_frame
    frame = read(conn, query, params, table=table)
    if table == "fraud_labels" and bound == "day":  # the partition's extra column: its order's time
        return cast_to_schema(frame, {**TABLE_SCHEMAS[table], ORDER_CREATED_AT: pl.Datetime("us")}, table)
    return frame


def extract_partitions(
    table: str,
    warehouse_url: str,
    window: ExtractWindow,
    partitions_dir: Path,
    full_refresh: bool = False,
    history_days: int = 0,
) -> list[date]:
    """Write the partitions of ``window``'s days (and of the ``history_days`` before it) that ``table``
    lacks, and always day D's; returns the days written.

    A partition is written once and then only read: a later night leaves it as it is, so what a
    night saw of an older day (labels known then) stays what a backfill of that night sees. Day D
    itself is re-read by every run of night D, so that a retry or a re-run after a fix in the
    warehouse sees D as the warehouse has it now; ``full_refresh`` re-reads every day of the window.
    Two nights (a backfill beside the scheduled night) may write the same day at the same time: each
    write is atomic (temporary file, then rename) and both read the same rows, so either file is the
    same bytes and a reader never sees half of one.
    """
    days = [
        day for day in window.days_with_history(history_days)
        if full_refresh or day == window.ds or not partition_path(partitions_dir, table, day).exists()
    ]
    if not days:
        return []
    query = partition_query(table)
    engine = create_warehouse_engine(warehouse_url)
    try:
        with engine.connect() as conn:
            for day in days:
                start = datetime(day.year, day.month, day.day)
                frame = read_rows(conn, query, table, start, start + timedelta(days=1), "day")
                write_parquet_atomically(frame, partition_path(partitions_dir, table, day))
    finally:
        engine.dispose()
    return days


def assemble_window(table: str, window: ExtractWindow, partitions_dir: Path) -> pl.DataFrame:
    """The window extract of ``table`` from its daily partitions: the whole-window query's rows, in its order."""
    frame = pl.concat([pl.read_parquet(partition_path(partitions_dir, table, day)) for day in window.days])
    if table == "fraud_labels":
        # The window's labels known before window_end, of the window's orders (sql/extract/fraud_labels.sql).
        # A label is known after its order was created, so every such label is in a partition of the window.
        in_window = pl.col(ORDER_CREATED_AT).is_between(window.window_start, window.window_end, closed="left")
        frame = frame.filter(in_window & (pl.col("labeled_at") < window.window_end)).drop(ORDER_CREATED_AT)
    return frame.sort(PARTITION_KEYS[table])


def extract_sources(
    warehouse_url: str,
    window: ExtractWindow,
    extract_dir: Path,
    tables: tuple[str, ...] = SOURCE_TABLES,
    partitions_dir: Path | None = None,
    full_refresh: bool = False,
    history_days: int = 0,
) -> list[ExtractResult]:
    """Extract every source table of ``window`` (the same work as the DAG's mapped extract tasks)."""
    return [
        extract_source(table, warehouse_url, window, extract_dir, partitions_dir, full_refresh, history_days)
        for table in tables
    ]

