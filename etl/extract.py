"""Extract the sources of one training window from the warehouse into Parquet.

Point-in-time: nothing at or after ``window_end`` (the end of day D's data interval) is read, and a
fraud label is read only when its ``labeled_at`` is before ``window_end``.
"""
from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import polars as pl

from etl.warehouse import SOURCE_TABLES, bind_timestamp, create_warehouse_engine, mask_url, read_frame

log = logging.getLogger(__name__)

# Rows of each source that fall in [window_start, window_end). Dimension tables (users, items,
# item_images) take every row that existed before window_end; users only when they were active in
# the window, so the extract grows with activity and not with the whole customer base. Every query
# orders by its key: the same rows must give the same files, whatever else the warehouse holds.
SOURCE_QUERIES: dict[str, str] = {
    "clicks": """
        SELECT event_id, event_time, user_id, item_id, session_id, event_type, position
        FROM clicks WHERE event_time >= :window_start AND event_time < :window_end
        ORDER BY event_id""",
    "orders": """
        SELECT order_id, user_id, created_at, amount, payment_method, device_id, ip_address, channel,
               ship_country, status
        FROM orders WHERE created_at >= :window_start AND created_at < :window_end
        ORDER BY order_id""",
    "order_items": """
        SELECT oi.order_id, oi.item_id, oi.quantity, oi.unit_price
        FROM order_items oi JOIN orders o ON o.order_id = oi.order_id
        WHERE o.created_at >= :window_start AND o.created_at < :window_end
        ORDER BY oi.order_id, oi.item_id""",
    "fraud_labels": """
        SELECT fl.order_id, fl.is_fraud, fl.labeled_at
        FROM fraud_labels fl JOIN orders o ON o.order_id = fl.order_id
        WHERE o.created_at >= :window_start AND o.created_at < :window_end
          AND fl.labeled_at < :window_end
        ORDER BY fl.order_id""",
    "reviews": """
        SELECT review_id, order_id, user_id, item_id, rating, title, body, created_at
        FROM reviews WHERE created_at >= :window_start AND created_at < :window_end
        ORDER BY review_id""",
    "users": """
        SELECT user_id, signup_at, country, birth_year FROM users
        WHERE signup_at < :window_end AND user_id IN (
            SELECT user_id FROM clicks WHERE event_time >= :window_start AND event_time < :window_end
            UNION SELECT user_id FROM orders WHERE created_at >= :window_start AND created_at < :window_end
            UNION SELECT user_id FROM reviews WHERE created_at >= :window_start AND created_at < :window_end)
        ORDER BY user_id""",
    "items": """
        SELECT item_id, category, price, seller_id, title, created_at FROM items
        WHERE created_at < :window_end ORDER BY item_id""",
    "item_images": """
        SELECT item_id, image, updated_at FROM item_images WHERE updated_at < :window_end ORDER BY item_id""",
}


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
    """Copy one source table's rows for ``window`` into ``extract_dir/<table>.parquet``."""
    if table not in SOURCE_QUERIES:
        raise ValueError(f"Unknown source table {table!r}; expected one of {sorted(SOURCE_QUERIES)}")
    engine = create_warehouse_engine(warehouse_url)
    try:
        with engine.connect() as conn:
            params = {
                "window_start": bind_timestamp(conn, window.window_start),
                "window_end": bind_timestamp(conn, window.window_end),
            }
            frame = read_frame(conn, SOURCE_QUERIES[table], params, table=table)
    finally:
        engine.dispose()
    path = extract_dir / f"{table}.parquet"
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


def write_parquet_atomically(frame: pl.DataFrame, path: Path) -> None:
    """Write to a temporary file and rename, so a killed task never leaves half a file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    frame.write_parquet(tmp_path)
    os.replace(tmp_path, path)
