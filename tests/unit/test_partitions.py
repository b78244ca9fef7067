"""Incremental extraction: event sources assembled from immutable daily partitions give the files the
whole-window queries give, and a night reads only its own day (and any missing one) from the warehouse."""
from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import polars as pl
import sqlalchemy as sa

from etl.extract import PARTITION_KEYS, PARTITION_SQL_DIR, ExtractWindow, extract_sources, partition_query
from etl.layout import partition_path
from etl.warehouse import bind_timestamp, create_warehouse_engine, insert_frame, read_frame

START, DS = date(2026, 2, 1), date(2026, 3, 10)
WINDOW_DAYS = 28
EVENT_SOURCES = tuple(PARTITION_KEYS)


def extract_night(url: str, ds: date, out: Path, partitions_dir: Path | None, full_refresh: bool = False) -> dict[str, pl.DataFrame]:
    """The event sources' extract of night ``ds`` (whole-window queries when ``partitions_dir`` is None)."""
    extract_dir = out / ("partitioned" if partitions_dir else "whole") / ds.isoformat()
    window = ExtractWindow(ds=ds, window_days=WINDOW_DAYS)
    extract_sources(url, window, extract_dir, EVENT_SOURCES, partitions_dir=partitions_dir, full_refresh=full_refresh)
    return {table: pl.read_parquet(extract_dir / f"{table}.parquet") for table in EVENT_SOURCES}


def assert_same_extracts(left: dict[str, pl.DataFrame], right: dict[str, pl.DataFrame]) -> None:
    for table in EVENT_SOURCES:
        assert left[table].schema == right[table].schema, table
        assert left[table].equals(right[table]), table  # row for row, in the same order


def partition_files(partitions_dir: Path) -> dict[Path, tuple[int, int]]:
    """Every partition file with its inode and mtime: a rewrite (temporary file, rename) changes both."""
    return {path: (path.stat().st_ino, path.stat().st_mtime_ns) for path in partitions_dir.rglob("*.parquet")}


def days_files(partitions_dir: Path, days: list[date]) -> set[Path]:
    return {partition_path(partitions_dir, table, day) for table in EVENT_SOURCES for day in days}


def window_days(ds: date) -> list[date]:
    return ExtractWindow(ds=ds, window_days=WINDOW_DAYS).days


def test_every_event_source_has_one_day_query():
    assert sorted(path.stem for path in PARTITION_SQL_DIR.glob("*.sql")) == sorted(EVENT_SOURCES)
    for table in EVENT_SOURCES:
        query = partition_query(table)
        assert ":day_start" in query and ":day_end" in query and "ORDER BY" in query and ";" not in query, table
    assert window_days(DS)[0] == DS - timedelta(days=WINDOW_DAYS - 1) and window_days(DS)[-1] == DS


def test_assembled_windows_equal_the_whole_window_queries(warehouse_url, tmp_path):
    """On SQLite and PostgreSQL: the first night (every day extracted) and the next (day D only)."""
    from demo.synthetic import generate_warehouse

    generate_warehouse(warehouse_url, START, DS + timedelta(days=1), scale=0.2, seed=3)
    partitions_dir = tmp_path / "partitions"
    for ds in (DS, DS + timedelta(days=1)):
        partitioned = extract_night(warehouse_url, ds, tmp_path, partitions_dir)
        assert all(frame.height > 0 for frame in partitioned.values()), {t: f.height for t, f in partitioned.items()}
        assert_same_extracts(partitioned, extract_night(warehouse_url, ds, tmp_path, None))


def test_the_next_night_extracts_only_its_own_day_and_full_refresh_rewrites_the_window(sqlite_url, tmp_path):
    from demo.synthetic import generate_warehouse

    generate_warehouse(sqlite_url, START, DS, scale=0.2, seed=3)
    partitions_dir = tmp_path / "partitions"
    extract_night(sqlite_url, DS - timedelta(days=1), tmp_path, partitions_dir)
    first = partition_files(partitions_dir)
    assert set(first) == days_files(partitions_dir, window_days(DS - timedelta(days=1)))  # the first night: all 28 days

    extract_night(sqlite_url, DS, tmp_path, partitions_dir)
    second = partition_files(partitions_dir)
    assert set(second) - set(first) == days_files(partitions_dir, [DS])  # one new day per source
    assert all(second[path] == stamp for path, stamp in first.items()), "the next night rewrote an older partition"

    refreshed = extract_night(sqlite_url, DS, tmp_path, partitions_dir, full_refresh=True)
    third = partition_files(partitions_dir)
    in_window = days_files(partitions_dir, window_days(DS))
    assert set(third) == set(second)
    assert all(third[path] != second[path] for path in in_window), "full_refresh left a partition of the window"
    assert all(third[path] == second[path] for path in set(second) - in_window)  # the day before the window stays
    assert_same_extracts(refreshed, extract_night(sqlite_url, DS, tmp_path, None))


def test_late_labels_leave_earlier_partitions_alone_and_a_backfill_reproduces_the_night(warehouse_url, tmp_path):
    """Labels reported after D reach the warehouse later: D's partitions stay as written, a later
    night sees the labels, and a backfill of D gives D's original extract."""
    from demo.synthetic import generate_warehouse

    later = DS + timedelta(days=2)
    generate_warehouse(warehouse_url, START, later, scale=0.2, seed=3)
    engine = create_warehouse_engine(warehouse_url)
    with engine.begin() as conn:  # on the night of D, labels reported after D have not arrived yet
        night_end = {"end": bind_timestamp(conn, DS + timedelta(days=1))}
        late = read_frame(conn, "SELECT * FROM fraud_labels WHERE labeled_at >= :end ORDER BY order_id", night_end, table="fraud_labels")
        conn.execute(sa.text("DELETE FROM fraud_labels WHERE labeled_at >= :end"), night_end)
    partitions_dir = tmp_path / "partitions"
    original = extract_night(warehouse_url, DS, tmp_path, partitions_dir)
    written_at_d = partition_files(partitions_dir)

    with engine.begin() as conn:  # the late labels arrive
        insert_frame(conn, "fraud_labels", late)
    engine.dispose()
    window_orders = set(original["orders"]["order_id"])
    assert late.filter(pl.col("order_id").is_in(window_orders)).height > 0  # some label D's window would take

    after = extract_night(warehouse_url, later, tmp_path, partitions_dir)  # D+1 is missing: extracted too
    assert set(partition_files(partitions_dir)) - set(written_at_d) == days_files(partitions_dir, [DS + timedelta(days=1), later])
    assert all(partition_files(partitions_dir)[path] == stamp for path, stamp in written_at_d.items())
    seen = set(after["fraud_labels"]["order_id"])
    assert seen & set(late["order_id"]), "the later night did not see the labels that arrived"
    assert_same_extracts(after, extract_night(warehouse_url, later, tmp_path, None))

    backfill = extract_night(warehouse_url, DS, tmp_path, partitions_dir)
    assert_same_extracts(backfill, original)
    assert_same_extracts(backfill, extract_night(warehouse_url, DS, tmp_path, None))


def test_partitions_are_kept_per_warehouse_and_reseeding_the_demo_drops_them(shopmtl_home, sqlite_url, tmp_path):
    from demo.synthetic import generate_warehouse
    from etl.config import load_settings

    settings = load_settings()
    other_url = f"sqlite:///{tmp_path / 'other.db'}"
    assert settings.partitions_dir(sqlite_url) != settings.partitions_dir(other_url)  # never another warehouse's days
    assert settings.partitions_dir(sqlite_url).parent == shopmtl_home / "partitions"

    generate_warehouse(sqlite_url, DS - timedelta(days=30), DS, scale=0.05, seed=3)
    extract_night(sqlite_url, DS, tmp_path, settings.partitions_dir(sqlite_url))
    assert settings.partitions_dir(sqlite_url).is_dir()
    generate_warehouse(sqlite_url, DS - timedelta(days=30), DS, scale=0.05, seed=4)  # history rewritten
    assert not settings.partitions_dir(sqlite_url).exists()
