"""A synthetic features directory with planted, learnable signal, in the feature builder's schema.

Used by ``tests/model`` (tiny sizes), by ``training.benchmark`` and to time training at demo size
(``python -m training.testing --out DIR``: 140k impressions, 4k orders, 2.5k reviews, 1.1k items).
The labels are drawn from known logistic models, so a model that learns nothing scores AUC ~0.5 and
one that learns scores clearly above it. Planted across tasks: an item's latent popularity raises
its clicks, lowers its share of negative reviews and tilts its title towards premium words; its
image shows its TRUE category (colour and shape), while the listed category is wrong for
``listing_noise`` of the items; review texts carry sentiment phrases (English and Portuguese, with
accents) that agree with the label most of the time.
"""

from __future__ import annotations

import argparse
import io
import json
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image

IMPRESSION_DENSE = ["user_activity_log1p", "item_popularity_log1p", "item_price_log1p", "noise"]
ORDER_DENSE = ["amount_log1p", "account_age_days_log1p", "user_orders_7d_log1p"]
ORDER_CATEGORICAL = ["payment_method", "channel", "ship_country"]
CATEGORIES = ["books", "electronics", "fashion", "garden", "toys"]
PAYMENT_METHODS = ["card", "paypal", "gift_card", "crypto"]
CHANNELS = ["web", "app"]
SHIP_COUNTRIES = ["DE", "FR", "US", "BR", "NG"]
LATENT_DIM = 4
# Per category (CATEGORIES order): the foreground colour and shape its product photos show.
CATEGORY_COLOURS = np.array([(150, 40, 40), (40, 60, 170), (200, 60, 160), (40, 150, 60), (230, 190, 30)], dtype=float)
CATEGORY_SHAPES = ("square", "disc", "vstripes", "hstripes", "cross")
CATEGORY_NOUNS = (
    ("novel", "livro", "cookbook"),
    ("headphones", "câmera", "charger"),
    ("jacket", "vestido", "sneakers"),
    ("shovel", "mangueira", "planter"),
    ("puzzle", "boneca", "robot"),
)
PREMIUM_WORDS = ("premium", "pro", "edição especial")
BUDGET_WORDS = ("basic", "econômico", "value")
POSITIVE_PHRASES = ("ótimo produto", "recomendo muito", "great quality", "excelente", "love it", "chegou rápido")
NEGATIVE_PHRASES = ("péssimo", "não recomendo", "broke after a week", "terrible", "veio quebrado", "não funciona")
NEUTRAL_WORDS = ("the", "o", "produto", "item", "it", "is", "e", "arrived", "de", "com")
TASKS = ["click", "purchase", "review", "category", "fraud"]


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
    n_reviews: int = 1000,
    n_extra_items: int = 150,
    listing_noise: float = 0.05,
    n_days: int = 8,
    ds: date = date(2026, 2, 4),
    seed: int = 0,
) -> Path:
    """Write impressions/orders/reviews/items/candidates Parquet files and manifest.json to ``features_dir``.

    ``items.parquet`` holds the ``n_items`` items of the impressions plus ``n_extra_items`` that are
    only in the catalogue; 10% of the items have no image.
    """
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
    item_category = rng.integers(0, len(CATEGORIES), size=n_items)  # the TRUE category
    category_bias = np.linspace(-0.6, 0.6, len(CATEGORIES))
    # The catalogue lists a share of items under another category (the noise the image task sees through).
    mislisted = rng.random(n_items) < listing_noise
    other_category = (item_category + rng.integers(1, len(CATEGORIES), n_items)) % len(CATEGORIES)
    listed_category = np.where(mislisted, other_category, item_category)

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
            "category": np.asarray(CATEGORIES)[listed_category[i]],
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
            "category": np.concatenate([np.asarray(CATEGORIES)[listed_category[grid_i]], ["never_seen_category"]]),
            **{
                name: np.concatenate([column, np.zeros(1, dtype=np.float32)])
                for name, column in impression_dense(grid_u, grid_i).items()
            },
        }
    )
    candidates.write_parquet(features_dir / "candidates.parquet")

    # Reviews: negative (rating <= 2) is likelier for unpopular items, users of poor affinity and harsh users.
    n_all_items = n_items + n_extra_items
    harsh = rng.normal(size=n_users)
    ru = rng.integers(0, n_users, size=n_reviews)
    ri = rng.integers(0, n_items, size=n_reviews)
    review_affinity = np.einsum("nk,nk->n", user_taste[ru], item_profile[ri])
    negative_logit = -1.0 - 1.2 * item_popularity[ri] - 0.8 * review_affinity + 0.8 * harsh[ru]
    negative = rng.random(n_reviews) < _sigmoid(negative_logit)
    review_seconds = np.sort(rng.integers(0, n_days * 86400, size=n_reviews))
    reviews = pl.DataFrame(
        {
            "review_id": np.arange(1, n_reviews + 1, dtype=np.int64) + 70_000,
            "user_id": user_ids[ru],
            "item_id": item_ids[ri],
            "category": np.asarray(CATEGORIES)[listed_category[ri]],
            "text": compose_review_texts(negative, item_category[ri], rng),
            "created_at": pl.Series(
                np.datetime64(first_day, "us") + review_seconds.astype("timedelta64[s]"), dtype=pl.Datetime("us")
            ),
            "split": np.where(review_seconds >= (n_days - 1) * 86400, "eval", "train"),
            "negative": pl.Series(negative.astype(np.int8)),
        }
    )
    reviews.write_parquet(features_dir / "reviews.parquet")

    # Items: the impression items and some catalogue-only ones, with titles and (mostly) images.
    extra_true = rng.integers(0, len(CATEGORIES), size=n_extra_items)
    extra_mislisted = rng.random(n_extra_items) < listing_noise
    extra_listed = np.where(
        extra_mislisted, (extra_true + rng.integers(1, len(CATEGORIES), n_extra_items)) % len(CATEGORIES), extra_true
    )
    all_ids = np.arange(1, n_all_items + 1, dtype=np.int64) * 7 + 1000  # the impression items' ids come first
    all_true = np.concatenate([item_category, extra_true])
    all_listed = np.concatenate([listed_category, extra_listed])
    all_popularity = np.concatenate([item_popularity, rng.normal(size=n_extra_items)])
    items = pl.DataFrame(
        {
            "item_id": all_ids,
            "category": np.asarray(CATEGORIES)[all_listed],
            "title": compose_titles(all_true, all_popularity, rng),
            "image": pl.Series(render_images(all_true, rng), dtype=pl.Binary),
            "split": np.where(all_ids % 5 == 0, "eval", "train"),
        }
    )
    items.write_parquet(features_dir / "items.parquet")

    manifest = {
        "ds": ds.isoformat(),
        "impression_dense": IMPRESSION_DENSE,
        "order_dense": ORDER_DENSE,
        "order_categorical": ORDER_CATEGORICAL,
        "tasks_available": TASKS,
    }
    (features_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return features_dir


def compose_titles(category: np.ndarray, popularity: np.ndarray, rng: np.random.Generator) -> list[str]:
    """Item titles from the TRUE category's nouns; popular items are more often "premium"."""
    titles = []
    for code, pop, draw in zip(category, popularity, rng.random(category.size), strict=True):
        noun = CATEGORY_NOUNS[code][int(draw * 1000) % len(CATEGORY_NOUNS[code])]
        if draw < _sigmoid(1.5 * pop) * 0.6:
            tier = PREMIUM_WORDS[int(draw * 977) % len(PREMIUM_WORDS)]
        elif draw > 1 - _sigmoid(-1.5 * pop) * 0.6:
            tier = BUDGET_WORDS[int(draw * 977) % len(BUDGET_WORDS)]
        else:
            tier = ""
        titles.append(" ".join(part for part in ("Acme", tier, noun, f"X{int(draw * 900) + 100}") if part))
    return titles


def compose_review_texts(negative: np.ndarray, category: np.ndarray, rng: np.random.Generator) -> list[str]:
    """Review texts: " . "-joined title and body whose sentiment phrase matches the label 80% of the time."""
    texts = []
    for is_negative, code in zip(negative, category, strict=True):
        if rng.random() < 0.05:
            texts.append("")  # reviews without words exist (a star rating only)
            continue
        agrees = rng.random() < 0.8
        phrases = NEGATIVE_PHRASES if bool(is_negative) == agrees else POSITIVE_PHRASES
        words = [NEUTRAL_WORDS[k] for k in rng.integers(0, len(NEUTRAL_WORDS), 3)]
        noun = CATEGORY_NOUNS[code][rng.integers(0, 3)]
        phrase = phrases[rng.integers(0, len(phrases))]
        texts.append(f"{phrase.capitalize()} . {words[0]} {noun} {words[1]} {phrase} {words[2]}")
    return texts


def render_images(category: np.ndarray, rng: np.random.Generator) -> list[bytes | None]:
    """Product photos drawn for the TRUE category: PNG mostly, some JPEG, some grey, sizes 24 to 40; 10% none."""
    images: list[bytes | None] = []
    for index, code in enumerate(category):
        if rng.random() < 0.10:
            images.append(None)
            continue
        size = (32, 32, 32, 40, 24)[index % 5]
        yy, xx = np.mgrid[0:size, 0:size].astype(float)
        cx, cy = size / 2 + rng.uniform(-3, 3, 2)
        r = size * rng.uniform(0.22, 0.32)
        dx, dy = xx - cx, yy - cy
        box = (np.abs(dx) <= r) & (np.abs(dy) <= r)
        mask = {
            "square": box,
            "disc": dx**2 + dy**2 <= r**2,
            "vstripes": box & ((xx // 3) % 2 == 0),
            "hstripes": box & ((yy // 3) % 2 == 0),
            "cross": ((np.abs(dx) <= 0.3 * r) & (np.abs(dy) <= r)) | ((np.abs(dy) <= 0.3 * r) & (np.abs(dx) <= r)),
        }[CATEGORY_SHAPES[code]]
        colour = np.clip(CATEGORY_COLOURS[code] + rng.normal(0, 15, 3), 0, 255)
        pixels = np.where(mask[..., None], colour, rng.uniform(200, 250, 3)) + rng.normal(0, 8, (size, size, 3))
        image = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))
        if index % 6 == 5:
            image = image.convert("L")  # grey photos exist (scans, Fashion-MNIST)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG" if index % 7 == 3 else "PNG", quality=90)
        images.append(buffer.getvalue())
    return images


def main() -> None:
    """CLI: write a synthetic features directory (for timing runs)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--items", type=int, default=600)
    parser.add_argument("--impressions", type=int, default=140_000)
    parser.add_argument("--orders", type=int, default=4000)
    parser.add_argument("--reviews", type=int, default=2500)
    parser.add_argument("--extra-items", type=int, default=500, help="catalogue items without impressions")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    write_synthetic_features(
        args.out,
        n_users=args.users,
        n_items=args.items,
        n_impressions=args.impressions,
        n_orders=args.orders,
        n_reviews=args.reviews,
        n_extra_items=args.extra_items,
        n_candidate_users=min(200, args.users),
        seed=args.seed,
    )
    print(args.out)


if __name__ == "__main__":
    main()
