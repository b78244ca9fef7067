"""Incremental impression features: a night builds its unsettled days and the day that settles, reuses
the kept ones, and gets the same rows as a build from nothing or a whole-window build with the history."""
from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from etl.build_features import KeptDays, build_features
from etl.config import FeatureConfig
from etl.contract import FEATURE_HISTORY_DAYS
from etl.extract import HISTORY_SOURCES, ExtractWindow, extract_sources
from etl.impression_days import impression_version, plan_days
from etl.labels import label_impressions
from etl.layout import feature_path, partition_path
from training.impression_rows import ImpressionRows

START, DS = date(2026, 1, 1), date(2026, 2, 20)
WINDOW_DAYS = 10


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> str:
    from demo.synthetic import generate_warehouse

    url = f"sqlite:///{tmp_path_factory.mktemp('warehouse') / 'warehouse.db'}"
    generate_warehouse(url, START, DS, scale=0.2, seed=11)
    return url


def build_night(url: str, ds: date, out: Path, partitions_dir: Path | None, window_days: int = WINDOW_DAYS, **kept) -> Path:
    """Extract and build the features of night ``ds`` (incremental when ``partitions_dir`` is given);
    returns the features directory (and writes the days built to ``built.json`` beside it)."""
    run_dir = out / ds.isoformat()
    history = FEATURE_HISTORY_DAYS if partitions_dir else 0
    extract_sources(url, ExtractWindow(ds, window_days), run_dir / "extract", partitions_dir=partitions_dir, history_days=history)
    kept_days = KeptDays(partitions_dir, window_days, **kept) if partitions_dir else None
    summary = build_features(run_dir / "extract", run_dir / "features", ds, FeatureConfig(), kept=kept_days)
    (run_dir / "built.json").write_text(json.dumps(summary.impression_days_built))
    return run_dir / "features"


def day_files(features_dir: Path) -> dict[str, pl.DataFrame]:
    return {path.name: pl.read_parquet(path) for path in sorted(feature_path(features_dir, "impressions").glob("*.parquet"))}


def stamps(root: Path) -> dict[Path, tuple[int, int]]:
    """Every kept impression file with its inode and mtime: a rewrite (temporary file, rename) changes both."""
    return {path: (path.stat().st_ino, path.stat().st_mtime_ns) for path in (root / "features").rglob("*.parquet")}


def test_a_night_builds_its_unsettled_days_and_the_one_that_settles():
    ds = date(2026, 3, 10)
    days = [ds - timedelta(days=back) for back in range(27, -1, -1)]
    first = plan_days(ds, 28, label_days=2, is_kept=lambda day: False)
    assert first.build == days and first.reuse == [] and first.settled == days[:-2]

    kept = set(days[:-3])  # what the night before kept: every day settled by then
    second = plan_days(ds, 28, label_days=2, is_kept=lambda day: day in kept)
    assert second.build == days[-3:] and second.settled == [days[-3]] and second.reuse == days[:-3]

    refresh = plan_days(ds, 28, label_days=2, is_kept=lambda day: day in kept, full_refresh=True)
    assert refresh.build == days and refresh.reuse == []
    # Day D is never settled on its own night: a kept day is a training day for every night that reads it.
    assert plan_days(ds, 28, label_days=1, is_kept=lambda day: False).settled[-1] == ds - timedelta(days=1)
    assert FeatureConfig().label_days == 2 and FeatureConfig(click_hours=1, conversion_hours=0).label_days == 1


def test_a_click_or_order_after_its_bound_labels_nothing():
    shown = datetime(2026, 3, 1, 23, 0)
    clicks = pl.LazyFrame(
        {
            "event_id": [1, 2, 3, 4],
            "event_time": [shown, shown + timedelta(hours=2), shown, shown + timedelta(hours=30)],
            "user_id": [1, 1, 2, 2],
            "item_id": [5, 5, 6, 6],
            "session_id": ["a", "a", "b", "b"],
            "event_type": ["impression", "click", "impression", "click"],
            "position": [1, None, 1, None],
            "scenario": ["search", "search", None, None],
        }
    )
    lines = pl.LazyFrame({"user_id": [1], "item_id": [5], "created_at": [shown + timedelta(hours=27)]})
    labelled = label_impressions(clicks, lines, conversion_hours=24, click_hours=24, days=[shown.date()]).collect().sort("event_id")
    assert labelled["clicked"].to_list() == [1, 0]  # the second click came 30 h after its impression
    assert labelled["converted"].to_list() == [0, 0]  # the order came 25 h after the click
    later = label_impressions(clicks, lines, conversion_hours=26, click_hours=31).collect().sort("event_id")
    assert later["clicked"].to_list() == [1, 1] and later["converted"].to_list() == [1, 0]


def test_incremental_nights_reuse_settled_days_and_equal_a_build_from_nothing(warehouse, tmp_path):
    partitions_dir = tmp_path / "partitions"
    before = build_night(warehouse, DS - timedelta(days=1), tmp_path / "first", partitions_dir)
    kept_by_first = stamps(partitions_dir)
    assert len(kept_by_first) == WINDOW_DAYS - 2  # every day of its window but the two unsettled ones

    tonight = build_night(warehouse, DS, tmp_path / "second", partitions_dir)
    built = [DS - timedelta(days=back) for back in (2, 1, 0)]
    assert json.loads((tonight.parent / "built.json").read_text()) == [day.isoformat() for day in built]
    assert set(stamps(partitions_dir)) - set(kept_by_first) == {
        next(iter(kept_by_first)).parent / f"{built[0].isoformat()}.parquet"
    }
    assert all(stamps(partitions_dir)[path] == stamp for path, stamp in kept_by_first.items()), "a kept day was rewritten"

    from_nothing = build_night(warehouse, DS, tmp_path / "fresh", tmp_path / "other_partitions")
    assert day_files(tonight).keys() == day_files(from_nothing).keys()
    for name, frame in day_files(tonight).items():
        assert frame.equals(day_files(from_nothing)[name]), name
    for table in ("orders", "candidates", "reviews", "items"):
        assert pl.read_parquet(feature_path(tonight, table)).equals(pl.read_parquet(feature_path(from_nothing, table))), table

    # Even the window's first day has its whole trailing history: the same rows as a whole-window build
    # whose window reaches back over that history.
    whole = day_files(build_night(warehouse, DS, tmp_path / "whole", None, window_days=WINDOW_DAYS + FEATURE_HISTORY_DAYS))
    for name, frame in day_files(tonight).items():
        assert frame.height > 0 and frame.equals(whole[name]), name

    # Training reads the folder's days in order; a backfill of the first night gives its files again.
    rows = ImpressionRows(tonight, ("train", "eval"), {})
    assert pl.concat(list(rows.batches(["event_id", "event_date"]))).equals(
        pl.concat(day_files(tonight).values()).select("event_id", "event_date")
    )
    again = build_night(warehouse, DS - timedelta(days=1), tmp_path / "backfill", partitions_dir)
    assert day_files(again).keys() == day_files(before).keys()
    assert all(frame.equals(day_files(before)[name]) for name, frame in day_files(again).items())


def test_full_refresh_and_a_new_feature_version_rebuild_the_window(warehouse, tmp_path):
    partitions_dir = tmp_path / "partitions"
    build_night(warehouse, DS, tmp_path / "first", partitions_dir)
    kept = stamps(partitions_dir)
    build_night(warehouse, DS, tmp_path / "refresh", partitions_dir, full_refresh=True)
    assert set(stamps(partitions_dir)) == set(kept)
    assert all(stamps(partitions_dir)[path] != stamp for path, stamp in kept.items()), "full_refresh reused a kept day"
    # Other label bounds give other rows: kept days of the old settings are never read by the new ones.
    assert impression_version(FeatureConfig(), ["clicks"]) != impression_version(FeatureConfig(click_hours=12), ["clicks"])
    assert impression_version(FeatureConfig(), ["clicks"]) != impression_version(FeatureConfig(), ["clicks", "orders"])


def test_the_extract_keeps_the_history_before_the_window_and_features_name_a_missing_day(warehouse, tmp_path):
    partitions_dir = tmp_path / "partitions"
    window = ExtractWindow(DS, WINDOW_DAYS)
    extract_sources(warehouse, window, tmp_path / "extract", partitions_dir=partitions_dir, history_days=FEATURE_HISTORY_DAYS)
    history = window.days_with_history(FEATURE_HISTORY_DAYS)
    assert len(history) == WINDOW_DAYS + FEATURE_HISTORY_DAYS and history[-WINDOW_DAYS:] == window.days
    for table in HISTORY_SOURCES:
        assert all(partition_path(partitions_dir, table, day).exists() for day in history), table
    assert not partition_path(partitions_dir, "fraud_labels", history[0]).exists()  # labels need no history
    # The window's extract is the window's rows alone, history or not.
    whole = tmp_path / "whole"
    extract_sources(warehouse, window, whole, tables=HISTORY_SOURCES)
    for table in HISTORY_SOURCES:
        assert pl.read_parquet(tmp_path / "extract" / f"{table}.parquet").equals(pl.read_parquet(whole / f"{table}.parquet"))

    partition_path(partitions_dir, "clicks", history[3]).unlink()
    with pytest.raises(FileNotFoundError, match="partition.*of clicks are missing"):
        build_features(tmp_path / "extract", tmp_path / "features", DS, kept=KeptDays(partitions_dir, WINDOW_DAYS))
