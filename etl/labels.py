"""Labels: what happened to an impression or an order, as known at the end of day D.

- ``label_impressions``: ``clicked`` (a click on the same user, item and session follows the
  impression within ``click_hours``) and ``converted`` (the user orders the item within
  ``conversion_hours`` of that click).
- ``label_orders``: ``is_fraud`` as known at the cut-off (a label counts only when ``labeled_at`` is
  before it; an unlabelled order counts as legitimate once mature) and the fraud ``split``.

Labels use only what the extract holds, which ends at the cut-off.
"""
from __future__ import annotations

from collections.abc import Collection
from datetime import date, datetime, timedelta

import polars as pl

from etl.config import FeatureConfig


def label_impressions(
    clicks: pl.LazyFrame,
    order_lines: pl.LazyFrame,
    conversion_hours: int = 24,
    click_hours: int = 24,
    days: Collection[date] | None = None,
) -> pl.LazyFrame:
    """Impressions (of ``days`` only, when given) with ``clicked`` (a click on the same user, item and
    session follows within ``click_hours``) and ``converted`` (the user orders the item within
    ``conversion_hours`` of that click).

    Both bounds make an impression's labels final a fixed time after it (``FeatureConfig.label_days``),
    so a day's examples can be kept once that time has passed (``etl.impression_days``).
    """
    impressions = clicks.filter(pl.col("event_type") == "impression")
    click_events = clicks.filter(pl.col("event_type") == "click")
    purchases = order_lines
    if days is not None:
        # Only the clicks and orders that can label these days' impressions take part in the joins.
        first, last = start_of_day(min(days)), start_of_day(max(days)) + timedelta(days=1)
        impressions = impressions.filter(pl.col("event_time").dt.date().is_in(sorted(days)))
        click_events = click_events.filter(pl.col("event_time").is_between(first, last + timedelta(hours=click_hours)))
        purchases = purchases.filter(
            pl.col("created_at").is_between(first, last + timedelta(hours=click_hours + conversion_hours))
        )
    impressions = impressions.select(
        "event_id", "event_time", "user_id", "item_id", "session_id", "position", "scenario"
    )
    click_events = click_events.select("user_id", "item_id", "session_id", pl.col("event_time").alias("click_time"))
    first_click = (
        impressions.join(click_events, on=["user_id", "item_id", "session_id"])
        .filter(
            (pl.col("click_time") > pl.col("event_time"))
            & (pl.col("click_time") <= pl.col("event_time") + pl.duration(hours=click_hours))
        )
        .group_by("event_id")
        .agg(pl.col("click_time").min())
    )
    clicked = impressions.join(first_click, on="event_id", how="left")
    purchases = purchases.select("user_id", "item_id", pl.col("created_at").alias("order_time"))
    converted_ids = (
        clicked.filter(pl.col("click_time").is_not_null())
        .join(purchases, on=["user_id", "item_id"])
        .filter(
            (pl.col("order_time") > pl.col("click_time"))
            & (pl.col("order_time") <= pl.col("click_time") + pl.duration(hours=conversion_hours))
        )
        .select("event_id")
        .unique()
        .with_columns(pl.lit(1, dtype=pl.Int8).alias("converted"))
    )
    return (
        clicked.join(converted_ids, on="event_id", how="left")
        .with_columns(
            pl.col("click_time").is_not_null().cast(pl.Int8).alias("clicked"),
            pl.col("converted").fill_null(0).cast(pl.Int8),
        )
        .drop("click_time")
    )


def label_orders(
    orders: pl.LazyFrame, fraud_labels: pl.LazyFrame, ds: date, config: FeatureConfig = FeatureConfig()
) -> pl.LazyFrame:
    """Orders with ``is_fraud`` as known at the end of day ``ds`` and the fraud ``split``.

    A label counts only when ``labeled_at`` is before the cut-off; an order without a label counts as
    legitimate once older than the maturity window; younger unlabelled orders stay unknown (null).
    """
    cutoff = start_of_day(ds) + timedelta(days=1)
    mature_before = cutoff - timedelta(days=config.maturity_days)
    eval_start = mature_before - timedelta(days=config.fraud_eval_days)
    known_labels = fraud_labels.filter(pl.col("labeled_at") < cutoff).group_by("order_id").agg(
        pl.col("is_fraud").any()
    )
    labelled = orders.join(known_labels, on="order_id", how="left").with_columns(
        pl.when(pl.col("is_fraud").is_not_null())
        .then(pl.col("is_fraud").cast(pl.Int8))
        .when(pl.col("created_at") < mature_before)
        .then(pl.lit(0, dtype=pl.Int8))
        .otherwise(pl.lit(None, dtype=pl.Int8))
        .alias("is_fraud")
    )
    return labelled.with_columns(
        pl.when(pl.col("created_at") >= start_of_day(ds))
        .then(pl.lit("score"))
        .when(pl.col("is_fraud").is_null())
        .then(pl.lit("unused"))
        .when((pl.col("created_at") >= eval_start) & (pl.col("created_at") < mature_before))
        .then(pl.lit("eval"))
        .otherwise(pl.lit("train"))
        .alias("split")
    )


def start_of_day(ds: date) -> datetime:
    """Midnight (naive UTC) at the start of day ``ds``."""
    return datetime(ds.year, ds.month, ds.day)
