"""Impression examples built a day at a time, and the settled days kept so a night builds only a few.

The impressions are the one example table that grows with the whole window (14M rows at 100x the
demo). An impression of day d takes its features from the ``FEATURE_HISTORY_DAYS`` before d
(``etl.features``) and its labels from what follows it: a click within ``click_hours``, an order within
``conversion_hours`` of the click (``etl.labels``). By the end of day d + ``label_days``
(``FeatureConfig.label_days``, 2 by default) nothing can change them: the day is **settled**.

With a partitions directory (``KeptDays``), a settled day's examples are kept
(``partitions/<warehouse>/features/impressions/<version>/<d>.parquet``), written once and then only
read, like the extract's daily partitions. The night for D builds:

- day D and the ``label_days - 1`` days before it, whose labels can still change: from the events
  as the night knows them, never kept;
- the day that settles tonight (D - ``label_days``) and any settled day of the window not kept yet
  (the first night, a new version of the feature code or settings, or ``full_refresh``): kept.

So a night's cost follows its few days, not the window. Every day, the first of the window too, gets
its whole trailing history: its events are read from the extract's partitions, which reach back
``FEATURE_HISTORY_DAYS`` before the window (``etl.extract.HISTORY_SOURCES``). A kept day keeps the
item and user attributes (category, price, sign-up time) of the night that settled it.

Without a partitions directory (a library call on an extract alone), every day of the window is built
from the extract, and the first days' trailing sums see only the window.

Every trailing sum is an exact integer sum (``etl.features``), so a day's examples are the same bytes
whichever night builds it and whatever other days are built beside it.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import polars as pl

from etl.config import FeatureConfig
from etl.contract import FEATURE_HISTORY_DAYS
from etl.extract import ExtractWindow
from etl.features import IMPRESSION_DENSE, add_user_item_features, scan_source
from etl.io import SCRATCH_COMPRESSION, write_parquet_atomically
from etl.labels import label_impressions
from etl.layout import day_file_path, impression_partition_path, partition_path
from etl.sequences import SEQUENCE_COLUMNS, add_recent_clicks
from etl.warehouse import TABLE_SCHEMAS

log = logging.getLogger(__name__)

IMPRESSION_COLUMNS = [
    "event_id", "user_id", "item_id", "category", "scenario", "event_date", "split", "clicked", "converted",
    *SEQUENCE_COLUMNS,
]
# Days of impressions built in one pass: a first night builds the whole window, and building all of it at
# once held every row and its joins in memory together (6.9 GiB at 100x the demo).
DAYS_PER_PASS = 7
# The modules whose code decides a kept day's rows: a change to any of them is a new version.
VERSIONED_MODULES = ("etl/features.py", "etl/labels.py", "etl/impression_days.py", "etl/sequences.py")
PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class KeptDays:
    """Where settled days are kept (the warehouse's partitions directory) and the night's window."""

    partitions_dir: Path
    window_days: int
    full_refresh: bool = False  # rebuild and replace every settled day of the window

    def version_dir(self, config: FeatureConfig, sources: Sequence[str]) -> Path:
        """The folder of the days kept by this feature code and settings."""
        return impression_partition_path(self.partitions_dir, impression_version(config, sources), date.min).parent

    def window_paths(self, ds: date, config: FeatureConfig, sources: Sequence[str]) -> list[Path]:
        """The kept files the window ending with ``ds`` may reuse, present or not (what a worker pulls)."""
        return [day_file_path(self.version_dir(config, sources), day) for day in ExtractWindow(ds, self.window_days).days]


@dataclass(frozen=True)
class DayPlan:
    """Which days of the window a night builds and which it reuses."""

    build: list[date]  # oldest first; always ends with day D
    reuse: list[date]  # settled days already kept
    settled: list[date]  # the built days that are settled, kept as they are written


@dataclass(frozen=True)
class EventFrames:
    """The events the impression examples of some days are built from: history, the days, what follows."""

    clicks: pl.LazyFrame
    order_lines: pl.LazyFrame  # order_items with their order's user_id and created_at
    reviews: pl.LazyFrame


def impression_version(config: FeatureConfig, sources: Sequence[str]) -> str:
    """A digest of what decides a kept day's rows: the feature code and the settings and sources it reads."""
    digest = hashlib.sha256()
    for module in VERSIONED_MODULES:
        digest.update((PROJECT_ROOT / module).read_bytes())
    settings = {
        "click_hours": config.click_hours,
        "conversion_hours": config.conversion_hours,
        "history_days": FEATURE_HISTORY_DAYS,
        "recent_clicks": config.recent_clicks,
        "sources": sorted(sources),
    }
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def plan_days(
    ds: date, window_days: int, label_days: int, is_kept: Callable[[date], bool], full_refresh: bool = False
) -> DayPlan:
    """The night of ``ds``: build the days not settled yet and the settled ones not kept (``is_kept(day)``)."""
    days = ExtractWindow(ds, window_days).days
    settled_through = ds - timedelta(days=label_days)
    settled = [day for day in days if day <= settled_through]
    missing = [day for day in settled if full_refresh or not is_kept(day)]
    return DayPlan(
        build=missing + [day for day in days if day > settled_through],
        reuse=[day for day in settled if day not in missing],
        settled=missing,
    )


def read_partition_events(partitions_dir: Path, first: date, ds: date, sources: Sequence[str]) -> EventFrames:
    """The events of days [first, ds] from the extract's daily partitions (``etl.extract.HISTORY_SOURCES``;
    empty for sources not configured)."""
    days = ExtractWindow(ds, (ds - first).days + 1).days

    def scan(table: str) -> pl.LazyFrame:
        if table not in sources:
            return pl.LazyFrame(schema=TABLE_SCHEMAS[table])
        paths = [partition_path(partitions_dir, table, day) for day in days]
        absent = [path for path in paths if not path.exists()]
        if absent:
            raise FileNotFoundError(
                f"{len(absent)} daily partition(s) of {table} are missing, e.g. {absent[0]}: the extract keeps "
                f"{FEATURE_HISTORY_DAYS} days before the window when run with history_days={FEATURE_HISTORY_DAYS}"
            )
        return pl.scan_parquet(paths)

    return EventFrames(
        clicks=scan("clicks"),
        order_lines=join_order_lines(scan("order_items"), scan("orders")),
        reviews=scan("reviews"),
    )


def read_extract_events(extract_dir: Path) -> EventFrames:
    """The events of the window's extract (its first days' history is cut at the window)."""
    return EventFrames(
        clicks=scan_source(extract_dir, "clicks"),
        order_lines=join_order_lines(scan_source(extract_dir, "order_items"), scan_source(extract_dir, "orders")),
        reviews=scan_source(extract_dir, "reviews"),
    )


def join_order_lines(order_items: pl.LazyFrame, orders: pl.LazyFrame) -> pl.LazyFrame:
    return order_items.join(orders.select("order_id", "user_id", "created_at"), on="order_id")


def build_impression_examples(
    events: EventFrames,
    daily: dict[str, pl.LazyFrame],
    users: pl.LazyFrame,
    items: pl.LazyFrame,
    days: Sequence[date],
    ds: date,
    config: FeatureConfig,
) -> pl.DataFrame:
    """The impressions of ``days`` with labels, split (``eval`` on day D) and features, by day then event id.
    ``daily`` (``etl.features.build_daily_activity``) must cover the ``FEATURE_HISTORY_DAYS`` before them."""
    impressions = label_impressions(
        events.clicks, events.order_lines, config.conversion_hours, config.click_hours, days
    ).with_columns(pl.col("event_time").dt.date().alias("as_of"), pl.col("event_time").alias("as_of_time"))
    impressions = add_recent_clicks(impressions, events.clicks, items, config.recent_clicks)
    return (
        add_user_item_features(impressions, daily, users, items)
        .with_columns(
            pl.col("as_of").alias("event_date"),
            pl.when(pl.col("as_of") == ds).then(pl.lit("eval")).otherwise(pl.lit("train")).alias("split"),
        )
        .select(IMPRESSION_COLUMNS + IMPRESSION_DENSE)
        .sort("event_date", "event_id")
        .collect()
    )


def write_impression_days(
    frame: pl.DataFrame, days: Sequence[date], dataset_dir: Path, kept_paths: dict[date, Path]
) -> dict[date, int]:
    """Write each of ``days`` (an empty file for a day without impressions) into ``dataset_dir``: a settled
    day (in ``kept_paths``) to its kept file first, then hard-linked; returns the rows per day."""
    by_day = {key[0]: part for key, part in frame.partition_by("event_date", as_dict=True, maintain_order=True).items()}
    rows = {}
    for day in days:
        part = by_day.get(day, frame.clear())
        target = day_file_path(dataset_dir, day)
        if day in kept_paths:
            # Kept files are read by every night of the window: LZ4 reads them in 0.66x zstd's time.
            write_parquet_atomically(part, kept_paths[day], SCRATCH_COMPRESSION)
            link_or_copy(kept_paths[day], target)
        else:
            write_parquet_atomically(part, target, SCRATCH_COMPRESSION)
        rows[day] = part.height
    return rows


def link_or_copy(source: Path, target: Path) -> None:
    """A hard link (no bytes copied; a later replacement of ``source`` leaves it as it was), or a copy
    where the two paths are on different filesystems."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def passes(days: Sequence[date], per_pass: int = DAYS_PER_PASS) -> Iterator[list[date]]:
    """``days`` in groups of at most ``per_pass``, oldest first."""
    ordered = sorted(days)
    for start in range(0, len(ordered), per_pass):
        yield ordered[start : start + per_pass]


def replace_dataset(staging_dir: Path, dataset_dir: Path) -> None:
    """Put a fully written folder in place of an earlier attempt's (a retry starts from nothing)."""
    if dataset_dir.exists():
        shutil.rmtree(dataset_dir)
    os.replace(staging_dir, dataset_dir)


__all__ = [
    "DAYS_PER_PASS",
    "DayPlan",
    "EventFrames",
    "IMPRESSION_COLUMNS",
    "KeptDays",
    "build_impression_examples",
    "impression_version",
    "plan_days",
    "read_extract_events",
    "read_partition_events",
    "write_impression_days",
]
