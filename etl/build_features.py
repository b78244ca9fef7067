"""``build_features``: a night's examples of every objective, from its extract, written for training.

Outputs (``features_dir``, paths from ``etl.layout``), read by ``training``:
- ``impressions.parquet/<d>.parquet``: a Parquet dataset folder, one file per day of the window, one
  row per impression with its ``scenario`` (the surface; null when the source does not say),
  ``clicked``/``converted`` labels, ``split`` (``train`` = days before D, ``eval`` = day D) and the
  dense columns in ``manifest.json``. Settled days are hard links to the
  days kept under the partitions directory (``etl.impression_days``).
- ``orders.parquet``: one row per order with ``is_fraud`` (null when not yet known), ``split``
  (``train`` / ``eval`` = a mature time-based holdout / ``score`` = the orders of day D / ``unused``).
- ``candidates.parquet``: recommendation candidates for the users active on day D, with features as
  of the day after D (history through day D), one row per scenario the user was shown items on
  during day D (``etl.contract.ANY_SCENARIO`` when none was named).
- ``reviews.parquet``: one row per review with its text, ``negative`` (rating <= 2) and ``split``
  (``eval`` = the newest ``review_eval_days`` days, by default day D alone; ``train`` = before).
  Day D's reviews are the ones whose scores are published.
- ``items.parquet``: one row per item with its listed category (the noisy label), title and image
  bytes, and ``split`` (``eval`` for item ids divisible by 5, a fixed 20 % holdout, else ``train``).

A deployment without some sources (``sources``) gets empty frames for them and a manifest whose
``objectives_available`` lists only the objectives its sources allow.
"""
from __future__ import annotations

import logging
import os
import shutil
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from etl.candidates import add_candidate_scenarios, build_candidates
from etl.config import FeatureConfig
from etl.contract import FEATURE_HISTORY_DAYS, SOURCE_TABLES, available_objectives
from etl.features import (
    IMPRESSION_DENSE,
    add_user_item_features,
    build_daily_activity,
    build_item_examples,
    build_review_examples,
    scan_source,
)
from etl.impression_days import (
    DayPlan,
    KeptDays,
    build_impression_examples,
    impression_version,
    link_or_copy,
    passes,
    plan_days,
    read_extract_events,
    read_partition_events,
    replace_dataset,
    write_impression_days,
)
from etl.io import SCRATCH_COMPRESSION, write_json_atomically, write_parquet_atomically
from etl.labels import label_orders, start_of_day
from etl.layout import day_file_path, extract_path, feature_path, impression_partition_path, manifest_path
from etl.order_features import ORDER_CATEGORICAL, ORDER_DENSE, build_order_features
from etl.sequences import SEQUENCE_COLUMNS, add_recent_clicks

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureSummary:
    features_dir: str
    impressions: int
    impressions_eval: int
    impression_days_built: list[str]  # days of impressions built tonight (the rest are kept days, reused)
    impression_days_reused: int
    orders_train: int
    orders_eval: int
    orders_score: int
    candidates: int
    active_users: int
    reviews: int
    reviews_eval: int
    items: int
    items_with_image: int
    objectives_available: list[str]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def build_features(
    extract_dir: Path,
    features_dir: Path,
    ds: date,
    config: FeatureConfig = FeatureConfig(),
    sources: tuple[str, ...] | list[str] = SOURCE_TABLES,
    kept: KeptDays | None = None,
) -> FeatureSummary:
    """Read the extract of day ``ds`` and write the examples of every objective ``sources`` allow.

    With ``kept`` the impressions of settled days are kept under its partitions directory and reused
    by later nights, and every day's trailing history comes from the extract's daily partitions
    (``etl.impression_days``); without it every day of the extract is built from the extract alone.
    """
    missing = [table for table in sources if not extract_path(extract_dir, table).exists()]
    if missing:
        raise FileNotFoundError(f"Configured sources {missing} have no extract in {extract_dir}")
    features_dir = Path(features_dir)
    features_dir.mkdir(parents=True, exist_ok=True)
    users, items, reviews, item_images = (scan_source(extract_dir, table) for table in ("users", "items", "reviews", "item_images"))
    window_events = read_extract_events(extract_dir)

    if kept is None:
        plan = DayPlan(build=extract_impression_days(window_events.clicks, ds), reuse=[], settled=[])
        kept_paths: dict[date, Path] = {}
        events = window_events
    else:
        version = impression_version(config, sources)

        def kept_path(day: date) -> Path:
            return impression_partition_path(kept.partitions_dir, version, day)

        plan = plan_days(ds, kept.window_days, config.label_days, lambda day: kept_path(day).exists(), kept.full_refresh)
        kept_paths = {day: kept_path(day) for day in [*plan.settled, *plan.reuse]}
        first = plan.build[0] - timedelta(days=FEATURE_HISTORY_DAYS)
        events = read_partition_events(kept.partitions_dir, first, ds, sources)
    # Per-day activity for the trailing sums of the impressions and the candidates, computed once
    # (collect_all shares the scans of the clicks between its six aggregates).
    daily_plans = build_daily_activity(events.clicks, events.order_lines, events.reviews, items)
    daily = {name: frame.lazy() for name, frame in zip(daily_plans, pl.collect_all(list(daily_plans.values())), strict=True)}

    # Written into a staging folder and moved into place whole, so a retry never mixes two attempts' days.
    dataset_dir = feature_path(features_dir, "impressions")
    staging_dir = dataset_dir.with_name(f".{dataset_dir.name}.{os.getpid()}.tmp")
    shutil.rmtree(staging_dir, ignore_errors=True)
    staging_dir.mkdir(parents=True)
    impression_rows: dict[date, int] = {}
    for days in passes(plan.build):
        frame = build_impression_examples(events, daily, users, items, days, ds, config)
        settled = {day: kept_paths[day] for day in days if day in plan.settled}
        impression_rows.update(write_impression_days(frame, days, staging_dir, settled))
    for day in plan.reuse:
        link_or_copy(kept_paths[day], day_file_path(staging_dir, day))
        impression_rows[day] = pq.read_metadata(kept_paths[day]).num_rows
    replace_dataset(staging_dir, dataset_dir)
    log.info(
        "Impressions of %s: built %d day(s) [%s] (%d kept as settled), reused %d kept day(s)",
        ds, len(plan.build), ", ".join(day.isoformat() for day in plan.build), len(plan.settled), len(plan.reuse),
    )

    orders, order_items, fraud_labels = (scan_source(extract_dir, table) for table in ("orders", "order_items", "fraud_labels"))
    order_frame = (
        label_orders(build_order_features(orders, order_items, users), fraud_labels, ds, config)
        .select(["order_id", "user_id", "created_at", "split", "is_fraud"] + ORDER_DENSE + ORDER_CATEGORICAL)
        .sort("order_id")
        .collect()
    )

    # Candidates are scored for the day after D, so their history runs through day D; an unseen slot
    # gets position 1 (the top of the page), the usual way to serve a position-debiased model.
    candidates = build_candidates(window_events.clicks, window_events.order_lines, items, ds, config).with_columns(
        pl.lit(ds + timedelta(days=1)).alias("as_of"),
        pl.lit(start_of_day(ds + timedelta(days=1))).alias("as_of_time"),
        pl.lit(1, dtype=pl.Int32).alias("position"),
    )
    candidates = add_recent_clicks(candidates, events.clicks, items, config.recent_clicks)
    candidate_frame = add_candidate_scenarios(
        add_user_item_features(candidates, daily, users, items).select(
            ["user_id", "item_id", "category", *SEQUENCE_COLUMNS] + IMPRESSION_DENSE
        ),
        window_events.clicks,
        ds,
    ).select(["user_id", "item_id", "category", "scenario", *SEQUENCE_COLUMNS] + IMPRESSION_DENSE).collect()

    review_frame = build_review_examples(reviews, items, ds, config.review_eval_days).sort("review_id").collect()
    item_frame = build_item_examples(items, item_images).sort("item_id").collect()
    objectives = available_objectives(tuple(sources))
    for name, frame in (
        ("orders", order_frame),
        ("candidates", candidate_frame),
        ("reviews", review_frame),
        ("items", item_frame),
    ):
        write_parquet_atomically(frame, feature_path(features_dir, name), SCRATCH_COMPRESSION)
    # Only what decides the rows (the manifest is hashed into model versions): not which days were
    # built tonight and which reused, which differs between a night and its re-run.
    manifest = {
        "ds": ds.isoformat(),
        "impression_dense": IMPRESSION_DENSE,
        "order_dense": ORDER_DENSE,
        "order_categorical": ORDER_CATEGORICAL,
        "sources": list(sources),
        "objectives_available": objectives,
        "config": asdict(config),
    }
    write_json_atomically(manifest_path(features_dir), manifest, sort_keys=False)
    split_counts = dict(order_frame.group_by("split").len().iter_rows())
    summary = FeatureSummary(
        features_dir=str(features_dir),
        impressions=sum(impression_rows.values()),
        impressions_eval=impression_rows.get(ds, 0),
        impression_days_built=[day.isoformat() for day in plan.build],
        impression_days_reused=len(plan.reuse),
        orders_train=int(split_counts.get("train", 0)),
        orders_eval=int(split_counts.get("eval", 0)),
        orders_score=int(split_counts.get("score", 0)),
        candidates=candidate_frame.height,
        active_users=candidate_frame["user_id"].n_unique(),
        reviews=review_frame.height,
        reviews_eval=int((review_frame["split"] == "eval").sum()),  # includes day D's reviews
        items=item_frame.height,
        items_with_image=int(item_frame["image"].is_not_null().sum()),
        objectives_available=objectives,
    )
    log.info("Built features for %s: %s", ds, summary)
    return summary


def extract_impression_days(clicks: pl.LazyFrame, ds: date) -> list[date]:
    """The days with events in an extract, and day D (its file exists, empty or not)."""
    days = clicks.select(pl.col("event_time").dt.date().unique()).collect().to_series().drop_nulls().to_list()
    return sorted({*days, ds})


__all__ = ["FeatureSummary", "KeptDays", "build_features"]
