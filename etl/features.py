"""Point-in-time-correct user and item features with Polars, and the review and item examples.

Every feature of an event on day ``d`` is computed only from rows dated before ``d`` (trailing daily
windows ending the day before), and every fraud feature of an order only from rows strictly before
the order's ``created_at``.

Every trailing sum adds integers (counts, units, ratings, whole cents of spend), so it is exact: a
day's features do not depend on which other days or keys are computed beside it, which lets
``etl.impression_days`` keep settled days and build only new ones.

The driver is ``etl.build_features``; the labels are in ``etl.labels``, the candidates in
``etl.candidates``, the fraud features of orders in ``etl.order_features``.
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path

import polars as pl

from etl.contract import FEATURE_HISTORY_DAYS
from etl.labels import start_of_day
from etl.layout import extract_path
from etl.warehouse import TABLE_SCHEMAS

TRAILING_DAYS = (7, FEATURE_HISTORY_DAYS)
# Additive smoothing for rates: a prior of ~10 impressions at a 5 % click rate, so an item seen twice
# and clicked once does not outrank an established one.
CTR_PRIOR_IMPRESSIONS = 10.0
CTR_PRIOR_RATE = 0.05


# ------------------------------------------------------------------------------ trailing windows


def add_trailing_sums(
    pairs: pl.LazyFrame,
    daily: pl.LazyFrame,
    keys: Sequence[str],
    values: Sequence[str],
    prefix: str,
    windows: Sequence[int] = TRAILING_DAYS,
) -> pl.LazyFrame:
    """Add ``{prefix}_{value}_{w}d`` = sum of ``daily[value]`` over days [as_of - w, as_of) per key.

    ``pairs`` holds ``keys`` + ``as_of`` (Date); ``daily`` holds ``keys`` + ``day`` (Date) + values.
    The sums are computed once per distinct (key, as_of), a narrow frame far smaller than the rows
    (1.7M user-days for 14M impressions at 100x the demo), and joined back to every row on
    (key, as_of) by hash: sorting the wide frame of all rows once per lag was what the cost was.
    """
    return add_all_trailing_sums(pairs.collect(), [(daily, keys, values, prefix, windows)])


TrailingLookup = tuple[pl.LazyFrame, Sequence[str], Sequence[str], str, Sequence[int]]  # daily, keys, values, prefix, windows


def add_all_trailing_sums(pairs: pl.DataFrame, lookups: Sequence[TrailingLookup]) -> pl.LazyFrame:
    """``add_trailing_sums`` for several (daily, keys, values, prefix, windows) at once on a materialised
    ``pairs``: each one's distinct (key, as_of) rows are read from ``pairs`` itself, not from the previous
    one's lazy result, so no query plan is computed twice however many there are (nested lazily, six
    lookups took 2.5x as long at 100x the demo)."""
    by_keys: dict[tuple[str, ...], list[TrailingLookup]] = {}
    for lookup in lookups:
        by_keys.setdefault(tuple(lookup[1]), []).append(lookup)
    result = pairs.lazy()
    # One join back to the wide rows per key (user, item, user x category), however many lookups share
    # it: those joins over every row, not the lookups on the narrow distinct rows, are the cost.
    for keys, shared in by_keys.items():
        distinct = pairs.select([*keys, "as_of"]).unique()
        # One integer per key value: the lookups search one sorted integer code per (key, day) instead
        # of grouping by two columns or a string, and daily rows of keys no pair asks about drop out
        # first. nulls_equal: a null key (an item without a category) is a group of its own.
        key_ids = distinct.select(keys).unique().with_row_index("_key")
        # Sorted by their (key, day) code, so that each lookup's binary searches walk the running totals
        # in order instead of jumping across them (random probes missed the cache on every step: 8M
        # user x category probes took 22x as long as 0.8M); the join back below does not need their order.
        probes = distinct.join(key_ids, on=keys, nulls_equal=True).sort(day_codes(pl.col("_key"), pl.col("as_of")))
        daily_frames = pl.collect_all(
            [daily.join(key_ids.lazy(), on=list(keys), nulls_equal=True).drop(list(keys)) for daily, *_ in shared]
        )
        sums = [
            trailing_sums(probes.select("_key", "as_of"), daily_ids, values, prefix, windows)
            for daily_ids, (_, _, values, prefix, windows) in zip(daily_frames, shared, strict=True)
        ]
        looked_up = pl.concat([probes.drop("_key"), *sums], how="horizontal")  # sums keep the probes' order
        result = result.join(looked_up.lazy(), on=[*keys, "as_of"], how="left", nulls_equal=True)
    return result


DAY_BITS = 32  # a (key, day) code is key * 2**DAY_BITS + (day + DAY_BIAS): sorted by key, then by day
DAY_BIAS = 1 << 31  # days since 1970 as Int32, shifted to be non-negative


def day_codes(key: pl.Expr, day: pl.Expr) -> pl.Expr:
    """One UInt64 per (integer key < 2**32, Date): ordered as the (key, day) pairs are."""
    shift = pl.lit(1 << DAY_BITS, dtype=pl.UInt64)
    return key.cast(pl.UInt64) * shift + (day.cast(pl.Int32).cast(pl.Int64) + DAY_BIAS).cast(pl.UInt64)


def trailing_sums(
    probes: pl.DataFrame, daily: pl.DataFrame, values: Sequence[str], prefix: str, windows: Sequence[int]
) -> pl.DataFrame:
    """``{prefix}_{value}_{w}d`` for each (``_key``, ``as_of``) row of ``probes``, in their order: the sum of
    ``daily[value]`` over the key's days [as_of - w, as_of), so the day ``as_of`` itself (the day being
    predicted) is never included.

    One running total over all (key, day) rows sorted by their code; a window's sum is the total
    through the day before ``as_of`` minus the total through the day before the window, each the
    total at the last code <= the probe's, found by a binary search (``search_sorted``). When the key
    has no day by then, that row belongs to an earlier key, whose running total is exactly where this
    key's starts: the difference is still the key's own sum. O(n log m), and the probes are neither
    grouped nor hashed (as-of joins by key sorted them twice per window: most of the features' time);
    probes sorted by code (``add_all_trailing_sums`` sorts them) make the searches walk in order.
    Counts are exact (integers in float64); a fractional sum (spend) carries the float64 rounding of
    the running total over all keys (~1e-16 of it; a running total per key took 40x the time), which
    moved 451 of 14M float32 values by one unit in the last place at 100x the demo.
    """
    running = (
        daily.group_by(day_codes(pl.col("_key"), pl.col("day")).alias("_code"))
        .agg([pl.col(value).sum() for value in values])
        .sort("_code")
    )
    # row i + 1 holds the total of rows 0..i; row 0 the total before any (a probe below every code)
    running_totals = running.select(pl.col(values).cum_sum())
    totals = pl.concat([pl.DataFrame({v: [0] for v in values}).cast(running_totals.schema), running_totals])
    codes = running.get_column("_code")

    def totals_through(days_before: int) -> pl.DataFrame:
        """The running totals at each probe's (key, as_of - days_before)."""
        targets = probes.select(day_codes(pl.col("_key"), pl.col("as_of").dt.offset_by(f"-{days_before}d"))).to_series()
        return totals[codes.search_sorted(targets, side="right")]

    through_yesterday = totals_through(1)
    columns = []
    for window in windows:
        before_window = totals_through(window + 1)
        columns += [(through_yesterday[v] - before_window[v]).alias(f"{prefix}_{v}_{window}d") for v in values]
    return pl.DataFrame(columns)


def _smoothed_rate(clicks: str, impressions: str) -> pl.Expr:
    return (pl.col(clicks) + CTR_PRIOR_IMPRESSIONS * CTR_PRIOR_RATE) / (pl.col(impressions) + CTR_PRIOR_IMPRESSIONS)


def build_daily_activity(
    clicks: pl.LazyFrame, order_lines: pl.LazyFrame, reviews: pl.LazyFrame, items: pl.LazyFrame
) -> dict[str, pl.LazyFrame]:
    """Per-day counts per user, per item and per (user, category): the inputs of trailing features."""
    events = clicks.join(items.select("item_id", "category"), on="item_id", how="left").with_columns(
        pl.col("event_time").dt.date().alias("day"),
        (pl.col("event_type") == "impression").cast(pl.Float64).alias("imp"),
        (pl.col("event_type") == "click").cast(pl.Float64).alias("clk"),
    )
    lines = order_lines.with_columns(
        pl.col("created_at").dt.date().alias("day"),
        pl.col("quantity").cast(pl.Float64).alias("units"),
        # Whole cents, so that every trailing sum is an integer sum, exact whatever else is summed beside it.
        (pl.col("quantity") * pl.col("unit_price") * 100).round().cast(pl.Int64).alias("spend_cents"),
    )
    user_orders = lines.group_by("user_id", "day").agg(
        pl.col("order_id").n_unique().cast(pl.Float64).alias("orders"), pl.col("spend_cents").sum()
    )
    return {
        "user": events.group_by("user_id", "day").agg(pl.col("imp").sum(), pl.col("clk").sum()),
        "user_orders": user_orders,
        "user_category": events.group_by("user_id", "category", "day").agg(pl.col("imp").sum(), pl.col("clk").sum()),
        "item": events.group_by("item_id", "day").agg(pl.col("imp").sum(), pl.col("clk").sum()),
        "item_units": lines.group_by("item_id", "day").agg(pl.col("units").sum()),
        "item_reviews": reviews.with_columns(pl.col("created_at").dt.date().alias("day"))
        .group_by("item_id", "day")
        .agg(pl.len().cast(pl.Float64).alias("reviews"), pl.col("rating").cast(pl.Float64).sum().alias("rating_sum")),
    }


IMPRESSION_DENSE = [
    "position_log",
    "user_account_age_log",
    "user_imp_7d_log",
    "user_clk_7d_log",
    "user_ctr_7d",
    "user_imp_28d_log",
    "user_ctr_28d",
    "user_orders_28d_log",
    "user_spend_28d_log",
    "user_cat_imp_28d_log",
    "user_cat_clk_28d_log",
    "user_cat_ctr_28d",
    "user_cat_share_28d",
    "item_imp_7d_log",
    "item_ctr_7d",
    "item_imp_28d_log",
    "item_ctr_28d",
    "item_units_28d_log",
    "item_reviews_28d_log",
    "item_rating_28d",
    "item_price_log",
    "item_age_log",
]


def add_user_item_features(
    pairs: pl.LazyFrame, daily: dict[str, pl.LazyFrame], users: pl.LazyFrame, items: pl.LazyFrame
) -> pl.LazyFrame:
    """Add the dense user, item and user-category features as of ``as_of`` to (user, item) pairs."""
    pairs = pairs.join(items.select("item_id", "category", "price", pl.col("created_at").alias("item_created_at")), on="item_id", how="left")
    pairs = add_all_trailing_sums(
        pairs.collect(),  # the rows every lookup reads: computed once
        [
            (daily["user"], ["user_id"], ["imp", "clk"], "user", TRAILING_DAYS),
            (daily["user_orders"], ["user_id"], ["orders", "spend_cents"], "user", (FEATURE_HISTORY_DAYS,)),
            (daily["user_category"], ["user_id", "category"], ["imp", "clk"], "user_cat", (FEATURE_HISTORY_DAYS,)),
            (daily["item"], ["item_id"], ["imp", "clk"], "item", TRAILING_DAYS),
            (daily["item_units"], ["item_id"], ["units"], "item", (FEATURE_HISTORY_DAYS,)),
            (daily["item_reviews"], ["item_id"], ["reviews", "rating_sum"], "item", (FEATURE_HISTORY_DAYS,)),
        ],
    )
    as_of_start = pl.col("as_of").cast(pl.Datetime("us"))
    pairs = pairs.join(users.select("user_id", "signup_at"), on="user_id", how="left")
    log1p = lambda name: pl.col(name).cast(pl.Float64).clip(lower_bound=0).log1p()  # noqa: E731
    spend = pl.col("user_spend_cents_28d").cast(pl.Float64) / 100
    return pairs.with_columns(
        log1p("position").alias("position_log"),
        ((as_of_start - pl.col("signup_at")).dt.total_hours() / 24).fill_null(0).clip(lower_bound=0).log1p().alias("user_account_age_log"),
        log1p("user_imp_7d").alias("user_imp_7d_log"),
        log1p("user_clk_7d").alias("user_clk_7d_log"),
        _smoothed_rate("user_clk_7d", "user_imp_7d").alias("user_ctr_7d"),
        log1p("user_imp_28d").alias("user_imp_28d_log"),
        _smoothed_rate("user_clk_28d", "user_imp_28d").alias("user_ctr_28d"),
        log1p("user_orders_28d").alias("user_orders_28d_log"),
        spend.clip(lower_bound=0).log1p().alias("user_spend_28d_log"),
        log1p("user_cat_imp_28d").alias("user_cat_imp_28d_log"),
        log1p("user_cat_clk_28d").alias("user_cat_clk_28d_log"),
        _smoothed_rate("user_cat_clk_28d", "user_cat_imp_28d").alias("user_cat_ctr_28d"),
        ((pl.col("user_cat_imp_28d") + 1) / (pl.col("user_imp_28d") + 10)).alias("user_cat_share_28d"),
        log1p("item_imp_7d").alias("item_imp_7d_log"),
        _smoothed_rate("item_clk_7d", "item_imp_7d").alias("item_ctr_7d"),
        log1p("item_imp_28d").alias("item_imp_28d_log"),
        _smoothed_rate("item_clk_28d", "item_imp_28d").alias("item_ctr_28d"),
        log1p("item_units_28d").alias("item_units_28d_log"),
        log1p("item_reviews_28d").alias("item_reviews_28d_log"),
        # Mean rating shrunk towards 3.5 stars by two pseudo-reviews.
        ((pl.col("item_rating_sum_28d") + 7.0) / (pl.col("item_reviews_28d") + 2.0) / 5.0).alias("item_rating_28d"),
        log1p("price").alias("item_price_log"),
        ((as_of_start - pl.col("item_created_at")).dt.total_hours() / 24).fill_null(0).clip(lower_bound=0).log1p().alias("item_age_log"),
    ).with_columns([pl.col(name).fill_null(0).cast(pl.Float32) for name in IMPRESSION_DENSE])


# ---------------------------------------------------------------------------------- text, images

ITEM_EVAL_MODULUS = 5  # items whose id is divisible by this form the category objective's holdout


def build_review_examples(reviews: pl.LazyFrame, items: pl.LazyFrame, ds: date, eval_days: int = 1) -> pl.LazyFrame:
    """Reviews with their text, the item's listed category, ``negative`` (rating <= 2) and ``split``
    (``eval`` for the newest ``eval_days`` days, which always include day D)."""
    eval_start = start_of_day(ds) - timedelta(days=eval_days - 1)
    return reviews.join(items.select("item_id", "category"), on="item_id", how="left").select(
        "review_id",
        "user_id",
        "item_id",
        pl.col("category").fill_null("unknown"),
        pl.concat_str([pl.col("title"), pl.col("body")], separator=" . ", ignore_nulls=True).fill_null("").alias("text"),
        "created_at",
        pl.when(pl.col("created_at") >= eval_start).then(pl.lit("eval")).otherwise(pl.lit("train")).alias("split"),
        (pl.col("rating") <= 2).cast(pl.Int8).alias("negative"),
    )


def build_item_examples(items: pl.LazyFrame, item_images: pl.LazyFrame) -> pl.LazyFrame:
    """Items with listed category, title and image bytes (null without an image), and the holdout split."""
    return items.join(item_images.select("item_id", "image"), on="item_id", how="left").select(
        "item_id",
        "category",
        pl.col("title").fill_null(""),
        "image",
        pl.when(pl.col("item_id") % ITEM_EVAL_MODULUS == 0).then(pl.lit("eval")).otherwise(pl.lit("train")).alias("split"),
    )


# ---------------------------------------------------------------------------------------- sources


def scan_source(extract_dir: Path, table: str) -> pl.LazyFrame:
    """The extract of ``table``, or an empty frame of the contract schema when the source is not configured."""
    path = extract_path(extract_dir, table)
    if path.exists():
        return pl.scan_parquet(path)
    return pl.LazyFrame(schema=TABLE_SCHEMAS[table])


__all__ = [
    "IMPRESSION_DENSE",
    "TRAILING_DAYS",
    "add_trailing_sums",
    "add_user_item_features",
    "build_daily_activity",
    "build_item_examples",
    "build_review_examples",
    "scan_source",
]
