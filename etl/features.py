"""Point-in-time-correct features and labels with Polars lazy queries.

Every feature of an event on day ``d`` is computed only from rows dated before ``d`` (trailing daily
windows ending the day before), and every fraud feature of an order only from rows strictly before
the order's ``created_at``. Labels use only what the extract holds, which ends at the cut-off.

Outputs (``features_dir``), read by ``training``:
- ``impressions.parquet``: one row per impression with ``clicked``/``converted`` labels, ``split``
  (``train`` = days before D, ``eval`` = day D) and the dense columns in ``manifest.json``.
- ``orders.parquet``: one row per order with ``is_fraud`` (null when not yet known), ``split``
  (``train`` / ``eval`` = a mature time-based holdout / ``score`` = the orders of day D / ``unused``).
- ``candidates.parquet``: recommendation candidates for the users active on day D, with features as
  of the day after D (history through day D).
- ``reviews.parquet``: one row per review with its text, ``negative`` (rating <= 2) and ``split``
  (``eval`` = the newest ``review_eval_days`` days, by default day D alone; ``train`` = before).
  Day D's reviews are the ones whose scores are published.
- ``items.parquet``: one row per item with its listed category (the noisy label), title and image
  bytes, and ``split`` (``eval`` for item ids divisible by 5, a fixed 20 % holdout, else ``train``).

A deployment without some sources (``sources``) gets empty frames for them and a manifest whose
``tasks_available`` lists only the tasks its sources allow.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import polars as pl

from etl.contract import SOURCE_TABLES, available_tasks
from etl.extract import write_parquet_atomically
from etl.warehouse import TABLE_SCHEMAS

log = logging.getLogger(__name__)

TRAILING_DAYS = (7, 28)
# Additive smoothing for rates: a prior of ~10 impressions at a 5 % click rate, so an item seen twice
# and clicked once does not outrank an established one.
CTR_PRIOR_IMPRESSIONS = 10.0
CTR_PRIOR_RATE = 0.05
ORDER_CATEGORICAL = ["payment_method", "channel", "ship_country"]


@dataclass(frozen=True)
class FeatureConfig:
    """Label and candidate settings; the window itself is decided by the extract."""

    maturity_days: int = 14  # an unlabelled order counts as legitimate once this old
    fraud_eval_days: int = 3  # newest mature days held out to evaluate fraud models
    conversion_hours: int = 24  # a click converts when the user orders the item within this many hours
    top_categories_per_user: int = 3  # candidate categories per user, by the user's clicks in the window
    items_per_category: int = 30  # most popular items per candidate category
    popular_items: int = 30  # globally most popular items every active user gets as candidates
    review_eval_days: int = 1  # newest days of reviews held out to evaluate sentiment (1 = day D only)


@dataclass(frozen=True)
class FeatureSummary:
    features_dir: str
    impressions: int
    impressions_eval: int
    orders_train: int
    orders_eval: int
    orders_score: int
    candidates: int
    active_users: int
    reviews: int
    reviews_eval: int
    items: int
    items_with_image: int
    tasks_available: list[str]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


# ---------------------------------------------------------------------------------------- labels


def label_impressions(clicks: pl.LazyFrame, order_lines: pl.LazyFrame, conversion_hours: int = 24) -> pl.LazyFrame:
    """Impressions with ``clicked`` (a click on the same user, item and session follows) and
    ``converted`` (the user orders the item within ``conversion_hours`` of that click)."""
    impressions = clicks.filter(pl.col("event_type") == "impression").select(
        "event_id", "event_time", "user_id", "item_id", "session_id", "position"
    )
    click_events = clicks.filter(pl.col("event_type") == "click").select(
        "user_id", "item_id", "session_id", pl.col("event_time").alias("click_time")
    )
    first_click = (
        impressions.join(click_events, on=["user_id", "item_id", "session_id"])
        .filter(pl.col("click_time") > pl.col("event_time"))
        .group_by("event_id")
        .agg(pl.col("click_time").min())
    )
    clicked = impressions.join(first_click, on="event_id", how="left")
    purchases = order_lines.select("user_id", "item_id", pl.col("created_at").alias("order_time"))
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
    cutoff = _day_start(ds) + timedelta(days=1)
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
        pl.when(pl.col("created_at") >= _day_start(ds))
        .then(pl.lit("score"))
        .when(pl.col("is_fraud").is_null())
        .then(pl.lit("unused"))
        .when((pl.col("created_at") >= eval_start) & (pl.col("created_at") < mature_before))
        .then(pl.lit("eval"))
        .otherwise(pl.lit("train"))
        .alias("split")
    )


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
    Sums come from two as-of lookups into running totals, so the cost is O(n log n), and the day
    ``as_of`` itself (the day being predicted) is never included.
    """
    keys = list(keys)
    running = (
        daily.group_by([*keys, "day"])
        .agg([pl.col(value).sum() for value in values])
        .sort("day")
        .with_columns([pl.col(value).cum_sum().over(keys) for value in values])
    )
    result = pairs.sort("as_of")
    lags = sorted({0, *windows})
    for lag in lags:
        probe = f"_probe_{lag}"
        right = running.select(
            [*keys, pl.col("day").alias(probe), *[pl.col(v).alias(f"_cum{lag}_{v}") for v in values]]
        )
        result = (
            result.with_columns(pl.col("as_of").dt.offset_by(f"-{lag + 1}d").alias(probe))
            .sort(probe)
            .join_asof(right, on=probe, by=keys, strategy="backward", check_sortedness=False)
            .drop(probe)
        )
    return result.with_columns(
        [
            (pl.col(f"_cum0_{v}").fill_null(0) - pl.col(f"_cum{w}_{v}").fill_null(0)).alias(f"{prefix}_{v}_{w}d")
            for v in values
            for w in windows
        ]
    ).drop([f"_cum{lag}_{v}" for lag in lags for v in values])


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
        (pl.col("quantity") * pl.col("unit_price")).alias("spend"),
    )
    user_orders = lines.group_by("user_id", "day").agg(
        pl.col("order_id").n_unique().cast(pl.Float64).alias("orders"), pl.col("spend").sum()
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
    pairs = add_trailing_sums(pairs, daily["user"], ["user_id"], ["imp", "clk"], "user")
    pairs = add_trailing_sums(pairs, daily["user_orders"], ["user_id"], ["orders", "spend"], "user", windows=(28,))
    pairs = add_trailing_sums(pairs, daily["user_category"], ["user_id", "category"], ["imp", "clk"], "user_cat", windows=(28,))
    pairs = add_trailing_sums(pairs, daily["item"], ["item_id"], ["imp", "clk"], "item")
    pairs = add_trailing_sums(pairs, daily["item_units"], ["item_id"], ["units"], "item", windows=(28,))
    pairs = add_trailing_sums(pairs, daily["item_reviews"], ["item_id"], ["reviews", "rating_sum"], "item", windows=(28,))
    as_of_start = pl.col("as_of").cast(pl.Datetime("us"))
    pairs = pairs.join(users.select("user_id", "signup_at"), on="user_id", how="left")
    log1p = lambda name: pl.col(name).cast(pl.Float64).clip(lower_bound=0).log1p()  # noqa: E731
    return pairs.with_columns(
        log1p("position").alias("position_log"),
        ((as_of_start - pl.col("signup_at")).dt.total_hours() / 24).fill_null(0).clip(lower_bound=0).log1p().alias("user_account_age_log"),
        log1p("user_imp_7d").alias("user_imp_7d_log"),
        log1p("user_clk_7d").alias("user_clk_7d_log"),
        _smoothed_rate("user_clk_7d", "user_imp_7d").alias("user_ctr_7d"),
        log1p("user_imp_28d").alias("user_imp_28d_log"),
        _smoothed_rate("user_clk_28d", "user_imp_28d").alias("user_ctr_28d"),
        log1p("user_orders_28d").alias("user_orders_28d_log"),
        log1p("user_spend_28d").alias("user_spend_28d_log"),
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


# -------------------------------------------------------------------------------- fraud features

ORDER_DENSE = [
    "account_age_log",
    "user_orders_24h",
    "user_orders_7d_log",
    "amount_log",
    "amount_vs_user_mean",
    "device_other_users_log",
    "ip_other_users_log",
    "device_orders_24h",
    "country_mismatch",
    "hour_sin",
    "hour_cos",
    "n_lines",
    "has_birth_year",
]


def count_other_users_before(orders: pl.LazyFrame, key: str) -> pl.LazyFrame:
    """Per order: how many *other* users had used the same ``key`` (device, IP) before the order."""
    first_seen = (
        orders.group_by(key, "user_id")
        .agg(pl.col("created_at").min().alias("first_seen"))
        .sort("first_seen")
        .with_columns(pl.int_range(1, pl.len() + 1).over(key).alias("_users_so_far"))
    )
    seen_before = (
        orders.select("order_id", "user_id", key, "created_at")
        .sort("created_at")
        .join_asof(
            first_seen.select(key, "first_seen", "_users_so_far"),
            left_on="created_at",
            right_on="first_seen",
            by=key,
            strategy="backward",
            allow_exact_matches=False,
            check_sortedness=False,  # sorted above; Polars cannot verify it per group
        )
        .join(first_seen.select(key, "user_id", pl.col("first_seen").alias("_own_first")), on=[key, "user_id"])
    )
    own_seen = (pl.col("_own_first") < pl.col("created_at")).cast(pl.Int64)
    return seen_before.select(
        "order_id", (pl.col("_users_so_far").fill_null(0) - own_seen).clip(lower_bound=0).alias(f"{key}_other_users")
    )


def build_order_features(orders: pl.LazyFrame, order_items: pl.LazyFrame, users: pl.LazyFrame) -> pl.LazyFrame:
    """Point-in-time fraud features per order, from rows strictly before the order."""
    n_lines = order_items.group_by("order_id").agg(pl.len().cast(pl.Float64).alias("n_lines"))
    history = (
        orders.sort("created_at")
        .with_columns(pl.lit(1.0).alias("_one"))
        .with_columns(
            pl.col("_one").rolling_sum_by("created_at", window_size="24h", closed="left").over("user_id").alias("user_orders_24h"),
            pl.col("_one").rolling_sum_by("created_at", window_size="7d", closed="left").over("user_id").alias("user_orders_7d"),
            pl.col("_one").rolling_sum_by("created_at", window_size="24h", closed="left").over("device_id").alias("device_orders_24h"),
            ((pl.col("amount").cum_sum() - pl.col("amount")).over("user_id")).alias("_prev_amount_sum"),
            (pl.col("_one").cum_sum().over("user_id") - 1).alias("_prev_orders"),
        )
    )
    features = (
        history.join(users.select("user_id", "signup_at", "country", "birth_year"), on="user_id", how="left")
        .join(count_other_users_before(orders, "device_id"), on="order_id", how="left")
        .join(count_other_users_before(orders, "ip_address"), on="order_id", how="left")
        .join(n_lines, on="order_id", how="left")
    )
    hour = pl.col("created_at").dt.hour().cast(pl.Float64) + pl.col("created_at").dt.minute() / 60.0
    return features.with_columns(
        ((pl.col("created_at") - pl.col("signup_at")).dt.total_hours() / 24).clip(lower_bound=0).log1p().alias("account_age_log"),
        pl.col("user_orders_24h").fill_null(0),
        pl.col("user_orders_7d").fill_null(0).log1p().alias("user_orders_7d_log"),
        pl.col("amount").clip(lower_bound=0).log1p().alias("amount_log"),
        pl.when(pl.col("_prev_orders") > 0)
        .then(pl.col("amount") / (pl.col("_prev_amount_sum") / pl.col("_prev_orders")).clip(lower_bound=0.01))
        .otherwise(1.0)
        .alias("amount_vs_user_mean"),
        pl.col("device_id_other_users").fill_null(0).cast(pl.Float64).log1p().alias("device_other_users_log"),
        pl.col("ip_address_other_users").fill_null(0).cast(pl.Float64).log1p().alias("ip_other_users_log"),
        pl.col("device_orders_24h").fill_null(0),
        (pl.col("ship_country") != pl.col("country")).fill_null(True).cast(pl.Float64).alias("country_mismatch"),
        (hour * (2 * 3.141592653589793 / 24)).sin().alias("hour_sin"),
        (hour * (2 * 3.141592653589793 / 24)).cos().alias("hour_cos"),
        pl.col("n_lines").fill_null(0),
        pl.col("birth_year").is_not_null().cast(pl.Float64).alias("has_birth_year"),
    ).with_columns([pl.col(name).fill_null(0).cast(pl.Float32) for name in ORDER_DENSE])


# ------------------------------------------------------------------------------------ candidates


def build_candidates(
    clicks: pl.LazyFrame, order_lines: pl.LazyFrame, items: pl.LazyFrame, ds: date, config: FeatureConfig = FeatureConfig()
) -> pl.LazyFrame:
    """(user, item) candidates for the users active on day ``ds``.

    Candidate set per user, at most ``top_categories_per_user * items_per_category + popular_items``
    items, so the cost grows with active users and not with the catalogue: the most popular items
    (last 7 days' clicks and units) of the user's top categories in the window, plus the globally
    most popular items, minus the items the user already bought in the window.
    """
    day_start = _day_start(ds)
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


# ---------------------------------------------------------------------------------- text, images

ITEM_EVAL_MODULUS = 5  # items whose id is divisible by this form the category task's holdout


def build_review_examples(reviews: pl.LazyFrame, items: pl.LazyFrame, ds: date, eval_days: int = 1) -> pl.LazyFrame:
    """Reviews with their text, the item's listed category, ``negative`` (rating <= 2) and ``split``
    (``eval`` for the newest ``eval_days`` days, which always include day D)."""
    eval_start = _day_start(ds) - timedelta(days=eval_days - 1)
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


# ---------------------------------------------------------------------------------------- driver


def scan_source(extract_dir: Path, table: str) -> pl.LazyFrame:
    """The extract of ``table``, or an empty frame of the contract schema when the source is not configured."""
    path = extract_dir / f"{table}.parquet"
    if path.exists():
        return pl.scan_parquet(path)
    return pl.LazyFrame(schema=TABLE_SCHEMAS[table])


def build_features(
    extract_dir: Path,
    features_dir: Path,
    ds: date,
    config: FeatureConfig = FeatureConfig(),
    sources: tuple[str, ...] | list[str] = SOURCE_TABLES,
) -> FeatureSummary:
    """Read the extract of day ``ds`` and write the examples of every task ``sources`` allow."""
    missing = [table for table in sources if not (extract_dir / f"{table}.parquet").exists()]
    if missing:
        raise FileNotFoundError(f"Configured sources {missing} have no extract in {extract_dir}")
    clicks, orders, order_items, users, items, reviews, fraud_labels, item_images = (
        scan_source(extract_dir, table)
        for table in ("clicks", "orders", "order_items", "users", "items", "reviews", "fraud_labels", "item_images")
    )
    order_lines = order_items.join(orders.select("order_id", "user_id", "created_at"), on="order_id")
    daily = build_daily_activity(clicks, order_lines, reviews, items)

    impressions = label_impressions(clicks, order_lines, config.conversion_hours).with_columns(
        pl.col("event_time").dt.date().alias("as_of")
    )
    impressions = add_user_item_features(impressions, daily, users, items).with_columns(
        pl.col("as_of").alias("event_date"),
        pl.when(pl.col("as_of") == ds).then(pl.lit("eval")).otherwise(pl.lit("train")).alias("split"),
    )
    impression_columns = ["event_id", "user_id", "item_id", "category", "event_date", "split", "clicked", "converted"]
    impressions_frame = impressions.select(impression_columns + IMPRESSION_DENSE).sort("event_id").collect()

    order_frame = (
        label_orders(build_order_features(orders, order_items, users), fraud_labels, ds, config)
        .select(["order_id", "user_id", "created_at", "split", "is_fraud"] + ORDER_DENSE + ORDER_CATEGORICAL)
        .sort("order_id")
        .collect()
    )

    # Candidates are scored for the day after D, so their history runs through day D; an unseen slot
    # gets position 1 (the top of the page), the usual way to serve a position-debiased model.
    candidates = build_candidates(clicks, order_lines, items, ds, config).with_columns(
        pl.lit(ds + timedelta(days=1)).alias("as_of"), pl.lit(1, dtype=pl.Int32).alias("position")
    )
    candidate_frame = (
        add_user_item_features(candidates, daily, users, items)
        .select(["user_id", "item_id", "category"] + IMPRESSION_DENSE)
        .sort(["user_id", "item_id"])
        .collect()
    )

    review_frame = build_review_examples(reviews, items, ds, config.review_eval_days).sort("review_id").collect()
    item_frame = build_item_examples(items, item_images).sort("item_id").collect()
    tasks = available_tasks(tuple(sources))

    features_dir.mkdir(parents=True, exist_ok=True)
    for name, frame in (
        ("impressions", impressions_frame),
        ("orders", order_frame),
        ("candidates", candidate_frame),
        ("reviews", review_frame),
        ("items", item_frame),
    ):
        write_parquet_atomically(frame, features_dir / f"{name}.parquet")
    manifest = {
        "ds": ds.isoformat(),
        "impression_dense": IMPRESSION_DENSE,
        "order_dense": ORDER_DENSE,
        "order_categorical": ORDER_CATEGORICAL,
        "sources": list(sources),
        "tasks_available": tasks,
        "config": asdict(config),
    }
    (features_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    split_counts = dict(order_frame.group_by("split").len().iter_rows())
    summary = FeatureSummary(
        features_dir=str(features_dir),
        impressions=impressions_frame.height,
        impressions_eval=int((impressions_frame["split"] == "eval").sum()),
        orders_train=int(split_counts.get("train", 0)),
        orders_eval=int(split_counts.get("eval", 0)),
        orders_score=int(split_counts.get("score", 0)),
        candidates=candidate_frame.height,
        active_users=candidate_frame["user_id"].n_unique(),
        reviews=review_frame.height,
        reviews_eval=int((review_frame["split"] == "eval").sum()),  # includes day D's reviews
        items=item_frame.height,
        items_with_image=int(item_frame["image"].is_not_null().sum()),
        tasks_available=tasks,
    )
    log.info("Built features for %s: %s", ds, summary)
    return summary


def _day_start(ds: date) -> datetime:
    return datetime(ds.year, ds.month, ds.day)
