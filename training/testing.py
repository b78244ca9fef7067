"""A synthetic features directory with planted, learnable signal, in the feature builder's schema.

Used by ``tests/model`` (tiny sizes) and to time training at demo size
(``python -m training.testing --out DIR --impressions 140000 --orders 4000``). The labels are drawn
from known logistic models, so a model that learns nothing scores AUC ~0.5 and one that learns
scores clearly above it.
"""

from __future__ import annotations

import argparse
import json
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

IMPRESSION_DENSE = ["user_activity_log1p", "item_popularity_log1p", "item_price_log1p", "noise"]
ORDER_DENSE = ["amount_log1p", "account_age_days_log1p", "user_orders_7d_log1p"]
ORDER_CATEGORICAL = ["payment_method", "channel", "ship_country"]
CATEGORIES = ["books", "electronics", "fashion", "garden", "toys"]
PAYMENT_METHODS = ["card", "paypal", "gift_card", "crypto"]
CHANNELS = ["web", "app"]
SHIP_COUNTRIES = ["DE", "FR", "US", "BR", "NG"]
LATENT_DIM = 4


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def write_synthetic_features(
    features_dir: Path,
    *,
    n_users: int = 200,
    n_items: int = 80,
    n_impressions: int = 4000,
    n_orders: int = 800,
    n_candidate_users: int = 20,
    n_days: int = 8,
    ds: date = date(2026, 2, 4),
    seed: int = 0,
) -> Path:
    """Write impressions/orders/candidates Parquet files and manifest.json to ``features_dir``."""
    rng = np.random.default_rng(seed)
    features_dir = Path(features_dir)
    features_dir.mkdir(parents=True, exist_ok=True)

    # Latent truth: user taste and item profile vectors, item popularity and price, category bias.
    user_ids = np.arange(1, n_users + 1, dtype=np.int64) * 10  # sparse ids, as in a warehouse
    item_ids = np.arange(1, n_items + 1, dtype=np.int64) * 7 + 1000
    user_taste = rng.normal(size=(n_users, LATENT_DIM)) / np.sqrt(LATENT_DIM)  # [n_users, k]
    item_profile = rng.normal(size=(n_items, LATENT_DIM))  # [n_items, k]
    user_activity = rng.normal(size=n_users)
    item_popularity = rng.normal(size=n_items)
    item_price = rng.normal(size=n_items)
    item_category = rng.integers(0, len(CATEGORIES), size=n_items)
    category_bias = np.linspace(-0.6, 0.6, len(CATEGORIES))

    # Impressions: n_days - 1 training days before D, then D itself as the eval day.
    u = rng.integers(0, n_users, size=n_impressions)
    i = rng.integers(0, n_items, size=n_impressions)
    affinity = np.einsum("nk,nk->n", user_taste[u], item_profile[i])  # [n_impressions]
    click_logit = (
        -1.4 + 0.7 * user_activity[u] + 0.7 * item_popularity[i] + 1.5 * affinity + category_bias[item_category[i]]
    )
    cvr_logit = -0.6 - 0.9 * item_price[i] + 1.0 * affinity
    clicked = rng.random(n_impressions) < _sigmoid(click_logit)
    converted = clicked & (rng.random(n_impressions) < _sigmoid(cvr_logit))
    day_offset = np.sort(rng.integers(0, n_days, size=n_impressions))  # n_days - 1 is day D
    first_day = ds - timedelta(days=n_days - 1)

    def impression_dense(user_index: np.ndarray, item_index: np.ndarray) -> dict[str, np.ndarray]:
        # Noisy observations of the truth, as the feature builder's smoothed rates would be.
        n = user_index.size
        return {
            "user_activity_log1p": (user_activity[user_index] + rng.normal(0, 0.3, n)).astype(np.float32),
            "item_popularity_log1p": (item_popularity[item_index] + rng.normal(0, 0.3, n)).astype(np.float32),
            "item_price_log1p": (item_price[item_index] + rng.normal(0, 0.1, n)).astype(np.float32),
            "noise": rng.normal(size=n).astype(np.float32),
        }

    impressions = pl.DataFrame(
        {
            "event_id": np.arange(1, n_impressions + 1, dtype=np.int64),
            "user_id": user_ids[u],
            "item_id": item_ids[i],
            "category": np.asarray(CATEGORIES)[item_category[i]],
            "day_offset": day_offset,
            "clicked": clicked.astype(np.int8),
            "converted": converted.astype(np.int8),
            **impression_dense(u, i),
        }
    )
    impressions = impressions.select(
        "event_id",
        "user_id",
        "item_id",
        "category",
        (pl.lit(first_day) + pl.duration(days=pl.col("day_offset"))).cast(pl.Date).alias("event_date"),
        pl.when(pl.col("day_offset") == n_days - 1).then(pl.lit("eval")).otherwise(pl.lit("train")).alias("split"),
        "clicked",
        "converted",
        *IMPRESSION_DENSE,
    )
    impressions.write_parquet(features_dir / "impressions.parquet")

    # Orders: a tenth of the buyers are new (absent from impressions), as with first purchases.
    buyer_pool = np.concatenate([user_ids, np.arange(1, n_users // 10 + 2, dtype=np.int64) * 10 + 5])
    buyers = buyer_pool[rng.integers(0, buyer_pool.size, size=n_orders)]
    amount = rng.normal(size=n_orders)
    account_age = rng.normal(size=n_orders)
    recent_orders = rng.normal(size=n_orders)
    payment = rng.choice(len(PAYMENT_METHODS), size=n_orders, p=[0.6, 0.25, 0.1, 0.05])
    channel = rng.integers(0, len(CHANNELS), size=n_orders)
    country = rng.choice(len(SHIP_COUNTRIES), size=n_orders, p=[0.35, 0.25, 0.25, 0.1, 0.05])
    fraud_logit = (
        -3.9
        + 1.1 * amount
        - 1.0 * account_age
        + 0.6 * recent_orders
        + np.where(payment >= 2, 1.8, 0.0)  # gift cards and crypto
        + np.where(country == 4, 1.2, 0.0)
    )
    is_fraud = rng.random(n_orders) < _sigmoid(fraud_logit)
    created_at = np.datetime64(first_day, "us") + np.sort(rng.integers(0, n_days * 86400, size=n_orders)).astype(
        "timedelta64[s]"
    )
    # Time-ordered splits: oldest 70% train, next 15% eval (mature holdout), 5% unused, day D is scored.
    position = np.arange(n_orders) / max(n_orders, 1)
    split = np.select([position < 0.70, position < 0.85, position < 0.90], ["train", "eval", "unused"], "score")
    orders = pl.DataFrame(
        {
            "order_id": np.arange(1, n_orders + 1, dtype=np.int64) + 50_000,
            "user_id": buyers,
            "created_at": pl.Series(created_at, dtype=pl.Datetime("us")),
            "split": split,
            "is_fraud": pl.Series(is_fraud.astype(np.int8)),
            "amount_log1p": (amount + rng.normal(0, 0.1, n_orders)).astype(np.float32),
            "account_age_days_log1p": (account_age + rng.normal(0, 0.1, n_orders)).astype(np.float32),
            "user_orders_7d_log1p": (recent_orders + rng.normal(0, 0.1, n_orders)).astype(np.float32),
            "payment_method": np.asarray(PAYMENT_METHODS)[payment],
            "channel": np.asarray(CHANNELS)[channel],
            "ship_country": np.asarray(SHIP_COUNTRIES)[country],
        }
    ).with_columns(
        pl.when(pl.col("split").is_in(["train", "eval"])).then(pl.col("is_fraud")).otherwise(None).alias("is_fraud")
    )
    orders.write_parquet(features_dir / "orders.parquet")

    # Candidates: every item for a few known users, plus one unseen user and one unseen item.
    cu = rng.choice(n_users, size=min(n_candidate_users, n_users), replace=False)
    grid_u = np.repeat(cu, n_items)
    grid_i = np.tile(np.arange(n_items), cu.size)
    candidates = pl.DataFrame(
        {
            "user_id": np.concatenate([user_ids[grid_u], [999_999_999]]),
            "item_id": np.concatenate([item_ids[grid_i], [888_888_888]]),
            "category": np.concatenate([np.asarray(CATEGORIES)[item_category[grid_i]], ["never_seen_category"]]),
            **{
                name: np.concatenate([column, np.zeros(1, dtype=np.float32)])
                for name, column in impression_dense(grid_u, grid_i).items()
            },
        }
    )
    candidates.write_parquet(features_dir / "candidates.parquet")

    manifest = {
        "ds": ds.isoformat(),
        "impression_dense": IMPRESSION_DENSE,
        "order_dense": ORDER_DENSE,
        "order_categorical": ORDER_CATEGORICAL,
    }
    (features_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return features_dir


def main() -> None:
    """CLI: write a synthetic features directory (for timing runs)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--items", type=int, default=600)
    parser.add_argument("--impressions", type=int, default=140_000)
    parser.add_argument("--orders", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    write_synthetic_features(
        args.out,
        n_users=args.users,
        n_items=args.items,
        n_impressions=args.impressions,
        n_orders=args.orders,
        n_candidate_users=min(200, args.users),
        seed=args.seed,
    )
    print(args.out)


if __name__ == "__main__":
    main()
