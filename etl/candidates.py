"""Recommendation candidates: the (user, item) pairs scored for the users active on day D."""
from __future__ import annotations

from datetime import date, timedelta

import polars as pl

from etl.config import FeatureConfig
from etl.contract import ANY_SCENARIO
from etl.labels import start_of_day


def build_candidates(
    clicks: pl.LazyFrame, order_lines: pl.LazyFrame, items: pl.LazyFrame, ds: date, config: FeatureConfig = FeatureConfig()
) -> pl.LazyFrame:
    """(user, item) candidates for the users active on day ``ds``.

    Candidate set per user, at most ``top_categories_per_user * items_per_category + popular_items``
    items, so the cost grows with active users and not with the catalogue: the most popular items
    (last 7 days' clicks and units) of the user's top categories in the window, plus the globally
    most popular items, minus the items the user already bought in the window.
    """
    day_start = start_of_day(ds)
    week_start = day_start - timedelta(days=6)
    active_users = pl.concat(
        [
            clicks.filter(pl.col("event_time") >= day_start).select("user_id"),
            order_lines.filter(pl.col("created_at") >= day_start).select("user_id"),
        ]
    ).unique()
    recent_clicks = clicks.filter((pl.col("event_type") == "click") & (pl.col("event_time") >= week_start))
    recent_units = order_lines.filter(pl.col("created_at") >= week_start)
    popularity = (
        pl.concat(
            [
                recent_clicks.group_by("item_id").agg(pl.len().cast(pl.Float64).alias("score")),
                recent_units.group_by("item_id").agg((3 * pl.col("quantity").sum()).cast(pl.Float64).alias("score")),
            ]
        )
        .group_by("item_id")
        .agg(pl.col("score").sum())
        .join(items.select("item_id", "category"), on="item_id")
    )
    by_category = (
        popularity.sort(["score", "item_id"], descending=[True, False])
        .group_by("category", maintain_order=True)
        .head(config.items_per_category)
    )
    global_top = popularity.sort(["score", "item_id"], descending=[True, False]).head(config.popular_items)
    user_categories = (
        clicks.filter(pl.col("event_type") == "click")
        .join(items.select("item_id", "category"), on="item_id")
        .group_by("user_id", "category")
        .agg(pl.len().alias("n"))
        .sort(["n", "category"], descending=[True, False])
        .group_by("user_id", maintain_order=True)
        .head(config.top_categories_per_user)
    )
    from_categories = active_users.join(user_categories, on="user_id").join(by_category, on="category").select("user_id", "item_id")
    from_popular = active_users.join(global_top.select("item_id"), how="cross")
    bought = order_lines.select("user_id", "item_id").unique()
    return (
        pl.concat([from_categories, from_popular])
        .unique()
        .join(bought, on=["user_id", "item_id"], how="anti")
        .sort(["user_id", "item_id"])
    )


def add_candidate_scenarios(candidates: pl.LazyFrame, clicks: pl.LazyFrame, ds: date) -> pl.LazyFrame:
    """One row per candidate and scenario the user was shown items on during day ``ds``
    (``ANY_SCENARIO`` for a user with none named: active through orders only, or null scenarios), so
    each surface gets its own ranking; sorted by user, scenario, item."""
    seen = (
        clicks.filter((pl.col("event_time") >= start_of_day(ds)) & pl.col("scenario").is_not_null())
        .select("user_id", "scenario")
        .unique()
    )
    return (
        candidates.join(seen, on="user_id", how="left")
        .with_columns(pl.col("scenario").fill_null(ANY_SCENARIO))
        .sort(["user_id", "scenario", "item_id"])
    )
