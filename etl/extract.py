"""Extract the sources of one training window from the warehouse into Parquet.

Point-in-time: nothing at or after ``window_end`` (the end of day D's data interval) is read, and a
fraud label is read only when its ``labeled_at`` is before ``window_end``.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

from etl.contract import SOURCE_TABLES
from etl.io import write_parquet_atomically
from etl.layout import extract_path
from etl.warehouse import SQL_DIR, bind_timestamp, copy_query_to_frame, create_warehouse_engine, is_sqlite, mask_url, read_frame

log = logging.getLogger(__name__)

# The query of each source is sql/extract/<table>.sql: the rows that fall in [window_start, window_end).
# Dimension tables (users, items, item_images) take every row that existed before window_end; users
# only when they were active in the window, so the extract grows with activity and not with the whole
# customer base. Every query orders by its key: the same rows must give the same files, whatever else
# the warehouse holds. (sql/extract is not a DDL area: etl.warehouse.create_tables never runs it.)
EXTRACT_SQL_DIR = SQL_DIR / "extract"


def extract_query(table: str) -> str:
    """The extract query of source ``table`` (bind parameters ``:window_start`` and ``:window_end``)."""
    if table not in SOURCE_TABLES:
        raise ValueError(f"Unknown source table {table!r}; expected one of {sorted(SOURCE_TABLES)}")
    return (EXTRACT_SQL_DIR / f"{table}.sql").read_text()


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


@dataclass(frozen=True)
class ExtractResult:
    table: str
    path: str
    rows: int

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def extract_source(table: str, warehouse_url: str, window: ExtractWindow, extract_dir: Path) -> ExtractResult:
    """Copy one source table's rows for ``window`` into ``extract_dir/<table>.parquet`` (``etl.layout.extract_path``)."""
    query = extract_query(table)
    engine = create_warehouse_engine(warehouse_url)
    try:
        with engine.connect() as conn:
            params = {
                "window_start": bind_timestamp(conn, window.window_start),
                "window_end": bind_timestamp(conn, window.window_end),
            }
            # PostgreSQL streams the rows out with COPY; SQLite (embedded, demo-sized) reads rows.
            read = read_frame if is_sqlite(conn) else copy_query_to_frame
            frame = read(conn, query, params, table=table)
    finally:
        engine.dispose()
    path = extract_path(extract_dir, table)
    write_parquet_atomically(frame, path)
    log.info(
        "Extracted %s: %d rows for [%s, %s) from %s",
        table, frame.height, window.window_start, window.window_end, mask_url(warehouse_url),
    )
    return ExtractResult(table=table, path=str(path), rows=frame.height)


def extract_sources(
    warehouse_url: str, window: ExtractWindow, extract_dir: Path, tables: tuple[str, ...] = SOURCE_TABLES
) -> list[ExtractResult]:
    """Extract every source table of ``window`` (the same work as the DAG's mapped extract tasks)."""
    return [extract_source(table, warehouse_url, window, extract_dir) for table in tables]

