"""Point-in-time fraud features of orders: every feature of an order comes only from rows strictly
before the order's ``created_at`` (rolling windows closed on the left, as-of joins without exact matches).

``ORDER_DENSE`` and ``ORDER_CATEGORICAL`` are the columns of ``orders.parquet`` the fraud models read
(listed in the features manifest).
"""
from __future__ import annotations

import polars as pl

ORDER_CATEGORICAL = ["payment_method", "channel", "ship_country"]
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
