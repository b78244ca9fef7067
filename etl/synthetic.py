"""Demo warehouse generator: fills the source tables (and the generator truth) day by day.

    python -m etl.synthetic --warehouse-url URL --start YYYY-MM-DD --end YYYY-MM-DD --scale S --seed N

``--end`` is inclusive. Every day is written in one transaction that first deletes that day's rows and
then inserts them, so re-running a day replaces it. The rows of day ``d`` depend only on
``(seed, scale, d)``: ids encode the day (``(d - 2000-01-01).days * 10_000_000 + k``), every random
stream is seeded with ``[seed, day_index, stream]``, and nothing is read back from the database. So
generating more days later never changes earlier days, and a backfill reproduces them exactly.

Which day a row belongs to: users by ``signup_at``; items, item_images and truth_items by the item's
``created_at``; clicks and truth_impressions by ``event_time``; orders, order_items, fraud_labels,
truth_orders, reviews and truth_reviews by the ORDER's ``created_at`` (fraud labels arrive 1..30 days
later, reviews 1..14 days later, but are written with their order's day).

Population: a base of users and items (ids ``1..N``) that signed up / were created during the three
years before 2020-01-01 depends on ``(seed, scale)`` only and is rewritten (identically) by every run;
days before 2020-01-01 cannot be generated. Each day adds new users and items. Events of day ``d``
reference the base plus the users/items created during the 30 days before ``d``; a run therefore
also writes the users and items of the 30 days before ``--start``.

Planted structure (what the models are meant to find):

* users have category tastes (Dirichlet over 10 categories around the profile of their age band, so
  birth_year says a little about them), a price sensitivity and an activity level; items have a
  latent quality that raises clicks, purchases and good ratings;
* impressions have a position bias; a click follows an impression in the same session; a purchase
  (order of that item by that user) follows a click with probability ``p_convert`` after an
  exponential delay (mean 2 h, truncated to the day so no conversion is censored by day end);
* fraud: ~3-4% of orders, Bernoulli of ``truth_orders.p_fraud``, which rises with a young account,
  devices and IPs shared by fraud rings, bursts of orders within hours, high amounts, ship country
  different from the user's country, gift cards / crypto, the web channel and night hours.
  fraud_labels holds rows for fraud orders only (``is_fraud`` true), labelled 1..30 days later;
* reviews: rating from item quality, user harshness, taste and delivery problems (ordinal logistic,
  ``truth_reviews.p_negative = P(rating <= 2)``); the text follows the rating (see
  ``etl.synthetic_text``);
* images: 32x32 PNGs whose shape and colour follow the TRUE category (``etl.synthetic_images``);
  3% of items are listed under another category (``items.category != truth_items.true_category``).

Rows per day per table at scale 1 (seed 7, mean over the 35 days 2026-01-01..2026-02-04; rows grow
linearly with ``--scale``; the base population, rewritten by every run, is 5,000 users and 800 items):

==================  ==========================================================
table               rows per day at scale 1
==================  ==========================================================
users               ~40
items               ~5
item_images         ~5
clicks              ~5,700 (~5,050 impressions, ~520 clicks, ~150 add_to_cart)
orders              ~310
order_items         ~380
fraud_labels        ~11 (3.5% of orders)
reviews             ~105
truth_impressions   ~5,050
truth_orders        ~310
truth_reviews       ~105
truth_items         ~5
==================  ==========================================================

About 600 users are active per day, in sessions of 5-10 impressions; CTR is ~10%, ~36% of clicks
convert. 35 days at scale 1 take ~3 s into SQLite (2 cores), ~4 s into PostgreSQL.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import date, timedelta
from typing import TypeVar

import numpy as np
import polars as pl
from sqlalchemy.engine import Engine

from etl.synthetic_images import render_item_images
from etl.synthetic_text import compose_item_titles, compose_review_texts
from etl.warehouse import TABLE_SCHEMAS, create_tables, create_warehouse_engine, mask_url, replace_rows

log = logging.getLogger(__name__)
T = TypeVar("T")

CATEGORIES = ("electronics", "fashion", "home", "beauty", "sports", "toys", "books", "grocery", "garden", "auto")
CATEGORY_WEIGHTS = np.array([0.14, 0.16, 0.12, 0.09, 0.10, 0.08, 0.08, 0.09, 0.07, 0.07])
CATEGORY_BASE_PRICE = np.array([120.0, 45.0, 50.0, 22.0, 45.0, 28.0, 16.0, 9.0, 35.0, 60.0])
COUNTRIES = ("DE", "FR", "ES", "IT", "NL", "PL", "US", "GB")
COUNTRY_WEIGHTS = np.array([0.25, 0.15, 0.12, 0.12, 0.08, 0.08, 0.12, 0.08])
PAYMENT_METHODS = ("card", "paypal", "bank_transfer", "bnpl", "gift_card", "crypto")
LEGIT_PAYMENT_WEIGHTS = np.array([0.50, 0.30, 0.10, 0.07, 0.02, 0.01])
FRAUD_PAYMENT_WEIGHTS = np.array([0.35, 0.10, 0.00, 0.05, 0.28, 0.22])
PAYMENT_RISK = np.array([0.0, -0.3, -0.6, 0.4, 1.1, 1.5])
CHANNELS = ("web", "app_ios", "app_android")
LEGIT_CHANNEL_WEIGHTS = np.array([0.45, 0.30, 0.25])
FRAUD_CHANNEL_WEIGHTS = np.array([0.70, 0.05, 0.25])
CHANNEL_RISK = np.array([0.3, -0.3, 0.0])
STATUSES = ("completed", "shipped", "cancelled")
STATUS_WEIGHTS = np.array([0.85, 0.10, 0.05])
# Browsing happens in the day and evening (no session starts at 23h, so a session never crosses
# midnight); orders may come at any hour; fraud bursts lean towards the night.
SESSION_HOUR_WEIGHTS = np.array([1, 0.6, 0.4, 0.3, 0.3, 0.5, 1, 2, 3, 4, 4, 4, 5, 5, 4, 4, 4, 5, 6, 7, 8, 8, 6], float)
ORDER_HOUR_WEIGHTS = np.concatenate([SESSION_HOUR_WEIGHTS, [3.0]])
FRAUD_HOUR_WEIGHTS = np.array([6, 7, 7, 6, 5, 4, 3, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 4, 5, 6], float)
# Category taste profiles of the age bands <30, 30-49, 50+ (rows are normalised below).
AGE_BAND_EDGES = np.array([30, 50])
AGE_BAND_TASTES = np.array(
    [
        [3.0, 3.0, 0.5, 2.0, 2.0, 0.5, 0.7, 0.5, 0.2, 0.6],
        [1.5, 1.5, 2.0, 1.0, 1.0, 2.5, 0.8, 1.5, 1.0, 1.0],
        [0.8, 0.8, 2.0, 1.0, 0.5, 0.8, 2.5, 2.0, 3.0, 1.2],
    ]
)
AGE_BAND_TASTES = AGE_BAND_TASTES / AGE_BAND_TASTES.sum(axis=1, keepdims=True)
TASTE_CONCENTRATION = 3.0
# Ordinal-logistic cut points of the rating: rating = 1 + #{k : score + noise > cut_k}.
RATING_CUTS = np.array([-1.9, -1.0, 0.0, 1.3])

ID_EPOCH = date(2000, 1, 1)
ID_BLOCK = 10_000_000
FIRST_DAY = date(2020, 1, 1)
BASE_SPAN_DAYS = 3 * 365
MIN_SCALE = 0.02
US_PER_SECOND = 1_000_000
US_PER_HOUR = 3600 * US_PER_SECOND
US_PER_DAY = 24 * US_PER_HOUR
UNIX_EPOCH = date(1970, 1, 1)

STREAM_USERS, STREAM_ITEMS, STREAM_IMAGES, STREAM_SESSIONS, STREAM_ORDERS, STREAM_REVIEWS, STREAM_RINGS = range(1, 8)
BASE_KEY = 0  # the "day index" of the base population's random streams (2000-01-01 is never generated)

# Column holding the day-encoded id of each table: a day's rows are deleted by that id range.
DAY_KEYS = {
    "users": "user_id",
    "items": "item_id",
    "item_images": "item_id",
    "truth_items": "item_id",
    "clicks": "event_id",
    "truth_impressions": "event_id",
    "orders": "order_id",
    "order_items": "order_id",
    "fraud_labels": "order_id",
    "truth_orders": "order_id",
    "reviews": "review_id",
    "truth_reviews": "review_id",
}
POPULATION_TABLES = ("users", "items", "item_images", "truth_items")


@dataclass(frozen=True)
class SyntheticConfig:
    """Sizes and rates of the demo warehouse at scale 1 (counts are multiplied by ``scale``)."""

    seed: int = 7
    scale: float = 1.0
    base_users: int = 5000
    base_items: int = 800
    new_users_per_day: float = 40.0
    new_items_per_day: float = 5.0
    active_users_per_day: float = 600.0
    organic_orders_per_day: float = 100.0
    takeovers_per_day: float = 2.5
    sellers: int = 60
    fraud_rings: int = 6
    fraudster_share: float = 0.06
    fraudster_active_days: int = 7
    recent_days: int = 30
    mislabel_share: float = 0.03
    conversion_delay_hours: float = 2.0

    def count(self, per_scale_one: float) -> float:
        """A rate at scale 1 scaled to this config."""
        return per_scale_one * self.scale


@dataclass
class Users:
    """User rows plus the latent traits that drive their behaviour (never written)."""

    user_id: np.ndarray
    signup_us: np.ndarray
    country: np.ndarray
    birth_year: np.ndarray  # -1 = unknown
    taste: np.ndarray  # (n, len(CATEGORIES)), rows sum to 1
    price_sensitivity: np.ndarray
    activity: np.ndarray
    harshness: np.ndarray
    payment_pref: np.ndarray
    channel_pref: np.ndarray
    device_main: np.ndarray
    device_alt: np.ndarray
    home_ip: np.ndarray
    is_fraudster: np.ndarray
    ring: np.ndarray


@dataclass
class Items:
    """Item rows plus the latent quality and true category."""

    item_id: np.ndarray
    created_us: np.ndarray
    true_category: np.ndarray
    category: np.ndarray
    quality: np.ndarray
    price: np.ndarray
    seller_id: np.ndarray
    popularity: np.ndarray
    title: np.ndarray


@dataclass
class Rings:
    """Fraud rings: each reuses a small pool of devices and IP addresses and ships to one country."""

    devices: np.ndarray  # (n_rings, 4)
    ips: np.ndarray  # (n_rings, 3)
    country: np.ndarray  # (n_rings,)


def concat_parts(parts: Sequence[T]) -> T:
    """Concatenate dataclasses of parallel numpy arrays field by field."""
    cls = type(parts[0])
    return cls(**{f.name: np.concatenate([getattr(part, f.name) for part in parts]) for f in fields(cls)})


def day_index(day: date) -> int:
    """Days since 2000-01-01: the key of the day's random streams and the high part of its ids."""
    return (day - ID_EPOCH).days


def day_start_us(day: date) -> int:
    """Microseconds since the Unix epoch at midnight UTC of ``day``."""
    return (day - UNIX_EPOCH).days * US_PER_DAY


def day_id_range(day: date) -> tuple[int, int]:
    """[low, high) of the ids of rows that belong to ``day``."""
    low = day_index(day) * ID_BLOCK
    return low, low + ID_BLOCK


def stream_rng(config: SyntheticConfig, key: int, stream: int) -> np.random.Generator:
    """The random stream ``stream`` of day ``key`` (or of the base population, key 0)."""
    return np.random.default_rng([config.seed, key, stream])


def hash_ints(*parts: np.ndarray | int) -> np.ndarray:
    """splitmix64-style hash of integer arrays: stable pseudo-random ids (devices, IPs)."""
    arrays = np.broadcast_arrays(*[np.asarray(part, dtype=np.int64) for part in parts])
    with np.errstate(over="ignore"):
        state = np.full(arrays[0].shape, 0x9E3779B97F4A7C15, dtype=np.uint64)
        for array in arrays:
            state = state ^ array.astype(np.uint64)
            state = state * np.uint64(0xBF58476D1CE4E5B9)
            state = state ^ (state >> np.uint64(31))
            state = state * np.uint64(0x94D049BB133111EB)
            state = state ^ (state >> np.uint64(29))
    return (state >> np.uint64(2)).astype(np.int64)


def format_device_ids(values: np.ndarray) -> pl.Series:
    """Device ids as text, e.g. ``dev-84021937712``."""
    digits = pl.Series(values % (1 << 40), dtype=pl.Int64).cast(pl.String)
    return pl.select(pl.concat_str([pl.lit("dev-"), digits]).alias("device_id")).to_series()


def format_ips(values: np.ndarray) -> pl.Series:
    """IPv4 text from integers, first octet kept in 11..222 so addresses look public."""
    v = values.astype(np.int64) & 0xFFFFFFFF
    octets = [11 + (v >> 24) % 212, (v >> 16) & 255, (v >> 8) & 255, v & 255]
    frame = pl.DataFrame({f"o{i}": octet for i, octet in enumerate(octets)})
    return frame.select(pl.concat_str([pl.col(c).cast(pl.String) for c in frame.columns], separator=".").alias("ip"))[
        "ip"
    ]


def cumsum_within_groups(values: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Inclusive cumulative sums restarting at each group; groups are consecutive runs of ``sizes``."""
    if len(values) == 0:
        return np.zeros(0, dtype=values.dtype)
    sizes = np.asarray(sizes)
    ends = np.cumsum(sizes)
    totals = np.cumsum(values)
    before_group = np.concatenate([[0], totals[ends[:-1] - 1]])
    return totals - np.repeat(before_group, sizes)


def sample_rows(probabilities: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One category per row of a (n, k) probability matrix, by inverse CDF (vectorised)."""
    cumulative = np.cumsum(probabilities, axis=1)
    draw = rng.random(len(probabilities)) * cumulative[:, -1]
    return np.minimum((cumulative <= draw[:, None]).sum(axis=1), probabilities.shape[1] - 1)


def sample_items_in_categories(category: np.ndarray, items: Items, rng: np.random.Generator) -> np.ndarray:
    """Per requested LISTED category, one item index drawn by popularity within that category."""
    order = np.argsort(items.category, kind="stable")
    sorted_category = items.category[order]
    weights = np.cumsum(items.popularity[order])
    low = np.searchsorted(sorted_category, category, side="left")
    high = np.searchsorted(sorted_category, category, side="right")
    base = np.where(low > 0, weights[np.maximum(low - 1, 0)], 0.0)
    target = base + rng.random(len(category)) * (weights[high - 1] - base)
    position = np.clip(np.searchsorted(weights, target, side="right"), low, high - 1)
    return order[position]


def sample_taste_items(
    users: Users, user_index: np.ndarray, items: Items, taste_share: float, rng: np.random.Generator
) -> np.ndarray:
    """Items for users: a category from the user's taste (share ``taste_share``) or the catalogue, then an item."""
    n_categories = len(CATEGORIES)
    listed = np.bincount(items.category, weights=items.popularity, minlength=n_categories)
    available = listed > 0
    catalogue = listed / listed.sum()
    taste = users.taste[user_index] * available
    taste_total = taste.sum(axis=1, keepdims=True)
    taste = np.where(taste_total > 0, taste / np.where(taste_total > 0, taste_total, 1), catalogue)
    from_taste = rng.random(len(user_index)) < taste_share
    probabilities = np.where(from_taste[:, None], taste, catalogue[None, :])
    category = sample_rows(probabilities, rng)
    return sample_items_in_categories(category, items, rng)


def build_rings(config: SyntheticConfig) -> Rings:
    """The fraud rings of ``(seed, scale)``."""
    rng = stream_rng(config, BASE_KEY, STREAM_RINGS)
    n = max(2, round(config.fraud_rings * config.scale))
    ring = np.arange(n)
    return Rings(
        devices=hash_ints(config.seed, 21, ring[:, None], np.arange(4)[None, :]),
        ips=hash_ints(config.seed, 22, ring[:, None], np.arange(3)[None, :]),
        country=rng.choice(len(COUNTRIES), size=n, p=COUNTRY_WEIGHTS),
    )


def build_users(config: SyntheticConfig, day: date | None, rings: Rings) -> Users:
    """The users who sign up on ``day`` (``None``: the base population)."""
    key = BASE_KEY if day is None else day_index(day)
    rng = stream_rng(config, key, STREAM_USERS)
    if day is None:
        n = round(config.base_users * config.scale)
        user_id = np.arange(1, n + 1, dtype=np.int64)
        first = day_start_us(FIRST_DAY) - BASE_SPAN_DAYS * US_PER_DAY
        signup = np.sort(rng.integers(first, day_start_us(FIRST_DAY), n))
    else:
        n = int(rng.poisson(config.count(config.new_users_per_day)))
        user_id = key * ID_BLOCK + np.arange(n, dtype=np.int64)
        signup = np.sort(rng.integers(0, US_PER_DAY, n)) + day_start_us(day)
    if n >= ID_BLOCK:
        raise ValueError(f"scale {config.scale} gives {n} users in one block (max {ID_BLOCK - 1})")
    country = rng.choice(len(COUNTRIES), size=n, p=COUNTRY_WEIGHTS)
    signup_year = 1970 + signup // (US_PER_DAY * 365.2425)
    age_at_signup = np.clip(rng.normal(36, 12, n), 18, 85).astype(np.int64)
    birth_year = np.where(rng.random(n) < 0.04, -1, signup_year.astype(np.int64) - age_at_signup)
    # Tastes scatter (Dirichlet) around the profile of the user's age band, so age predicts them a bit.
    band = np.searchsorted(AGE_BAND_EDGES, age_at_signup, side="right")
    shape = TASTE_CONCENTRATION * AGE_BAND_TASTES[band]
    taste = rng.gamma(shape)
    taste = taste / taste.sum(axis=1, keepdims=True)
    price_sensitivity = rng.lognormal(0.0, 0.5, n)
    activity = rng.lognormal(0.0, 1.0, n)
    harshness = rng.normal(0.0, 1.0, n)
    payment_pref = rng.choice(len(PAYMENT_METHODS), size=n, p=LEGIT_PAYMENT_WEIGHTS)
    channel_pref = rng.choice(len(CHANNELS), size=n, p=LEGIT_CHANNEL_WEIGHTS)
    device_main = hash_ints(config.seed, 11, user_id)
    device_alt = hash_ints(config.seed, 12, user_id)
    # Households: a few accounts share their main device with another account (legitimate sharing).
    shared = rng.random(n) < 0.05
    partner = rng.integers(0, max(n, 1), n)
    device_main = np.where(shared, device_main[partner] if n else device_main, device_main)
    home_ip = hash_ints(config.seed, 13, user_id)
    is_fraudster = (rng.random(n) < config.fraudster_share) if day is not None else np.zeros(n, dtype=bool)
    ring = rng.integers(0, len(rings.country), n)
    return Users(
        user_id=user_id,
        signup_us=signup.astype(np.int64),
        country=country,
        birth_year=birth_year,
        taste=taste,
        price_sensitivity=price_sensitivity,
        activity=activity,
        harshness=harshness,
        payment_pref=payment_pref,
        channel_pref=channel_pref,
        device_main=device_main,
        device_alt=device_alt,
        home_ip=home_ip,
        is_fraudster=is_fraudster,
        ring=ring,
    )


def build_items(config: SyntheticConfig, day: date | None) -> Items:
    """The items created on ``day`` (``None``: the base catalogue)."""
    key = BASE_KEY if day is None else day_index(day)
    rng = stream_rng(config, key, STREAM_ITEMS)
    if day is None:
        n = round(config.base_items * config.scale)
        item_id = np.arange(1, n + 1, dtype=np.int64)
        first = day_start_us(FIRST_DAY) - BASE_SPAN_DAYS * US_PER_DAY
        created = np.sort(rng.integers(first, day_start_us(FIRST_DAY), n))
    else:
        n = int(rng.poisson(config.count(config.new_items_per_day)))
        item_id = key * ID_BLOCK + np.arange(n, dtype=np.int64)
        created = np.sort(rng.integers(0, US_PER_DAY, n)) + day_start_us(day)
    true_category = rng.choice(len(CATEGORIES), size=n, p=CATEGORY_WEIGHTS)
    wrong = rng.random(n) < config.mislabel_share
    shift = rng.integers(1, len(CATEGORIES), n)
    category = np.where(wrong, (true_category + shift) % len(CATEGORIES), true_category)
    quality = rng.normal(0.0, 1.0, n)
    price = CATEGORY_BASE_PRICE[true_category] * rng.lognormal(0.0, 0.45, n) * np.exp(0.15 * quality)
    price = np.maximum(np.round(price, 2), 0.99)
    seller_id = rng.integers(1, max(5, round(config.sellers * config.scale)) + 1, n)
    popularity = np.exp(0.5 * quality + rng.normal(0.0, 0.5, n))
    title = np.array(compose_item_titles(true_category, quality, rng), dtype=object)
    return Items(
        item_id=item_id,
        created_us=created.astype(np.int64),
        true_category=true_category,
        category=category,
        quality=quality,
        price=price,
        seller_id=seller_id.astype(np.int64),
        popularity=popularity,
        title=title,
    )


def to_datetime(values: np.ndarray) -> pl.Series:
    """Microseconds since the Unix epoch as a naive UTC Datetime series."""
    return pl.Series(np.asarray(values, dtype=np.int64)).cast(pl.Datetime("us"))


def to_table(table: str, columns: dict[str, object]) -> pl.DataFrame:
    """A frame with exactly the contract columns and types of ``table``."""
    schema = TABLE_SCHEMAS[table]
    frame = pl.DataFrame({name: columns[name] for name in schema})
    return frame.select([pl.col(name).cast(dtype) for name, dtype in schema.items()])


def population_tables(config: SyntheticConfig, users: Users, items: Items, key: int) -> dict[str, pl.DataFrame]:
    """The rows of users, items, item_images and truth_items for one day (or the base)."""
    categories = np.array(CATEGORIES, dtype=object)
    birth_year = pl.Series(users.birth_year, dtype=pl.Int64)
    images = render_item_images(items.true_category, stream_rng(config, key, STREAM_IMAGES))
    created = to_datetime(items.created_us)
    return {
        "users": to_table(
            "users",
            {
                "user_id": users.user_id,
                "signup_at": to_datetime(users.signup_us),
                "country": np.array(COUNTRIES, dtype=object)[users.country].tolist(),
                "birth_year": pl.select(pl.when(birth_year >= 0).then(birth_year)).to_series(),
            },
        ),
        "items": to_table(
            "items",
            {
                "item_id": items.item_id,
                "category": categories[items.category].tolist(),
                "price": items.price,
                "seller_id": items.seller_id,
                "title": items.title.tolist(),
                "created_at": created,
            },
        ),
        "item_images": to_table(
            "item_images",
            {"item_id": items.item_id, "image": pl.Series(images, dtype=pl.Binary), "updated_at": created},
        ),
        "truth_items": to_table(
            "truth_items",
            {"item_id": items.item_id, "true_category": categories[items.true_category].tolist()},
        ),
    }


@dataclass
class DemoWorld:
    """The deterministic world of one ``(seed, scale)``: base population, rings and per-day cohorts."""

    config: SyntheticConfig
    rings: Rings = field(init=False)
    base_users: Users = field(init=False)
    base_items: Items = field(init=False)
    _users: dict[int, Users] = field(default_factory=dict, init=False)
    _items: dict[int, Items] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.rings = build_rings(self.config)
        self.base_users = build_users(self.config, None, self.rings)
        self.base_items = build_items(self.config, None)

    def users_of(self, day: date) -> Users:
        """Users who sign up on ``day`` (cached)."""
        key = day_index(day)
        if key not in self._users:
            self._users[key] = build_users(self.config, day, self.rings)
        return self._users[key]

    def items_of(self, day: date) -> Items:
        """Items created on ``day`` (cached)."""
        key = day_index(day)
        if key not in self._items:
            self._items[key] = build_items(self.config, day)
        return self._items[key]

    def recent_days(self, day: date) -> list[date]:
        """The days whose new users/items may act on ``day``: the ``recent_days`` days before it."""
        return [day - timedelta(days=back) for back in range(self.config.recent_days, 0, -1)]

    def users_before(self, day: date) -> Users:
        """Base users plus those who signed up during the recent days before ``day``."""
        return concat_parts([self.base_users, *(self.users_of(d) for d in self.recent_days(day))])

    def items_before(self, day: date) -> Items:
        """Base items plus those created during the recent days before ``day``."""
        return concat_parts([self.base_items, *(self.items_of(d) for d in self.recent_days(day))])


def simulate_sessions(
    config: SyntheticConfig, day: date, users: Users, items: Items
) -> dict[str, np.ndarray]:
    """Impressions of one day with their clicks, add-to-carts and conversions (all as arrays)."""
    rng = stream_rng(config, day_index(day), STREAM_SESSIONS)
    start = day_start_us(day)
    n_population = len(users.user_id)
    n_active = min(int(rng.poisson(config.count(config.active_users_per_day))), n_population)
    active = rng.choice(n_population, size=n_active, replace=False, p=users.activity / users.activity.sum())
    session_user = np.repeat(active, 1 + (rng.random(n_active) < 0.15))
    n_sessions = len(session_user)
    hour = rng.choice(len(SESSION_HOUR_WEIGHTS), size=n_sessions, p=SESSION_HOUR_WEIGHTS / SESSION_HOUR_WEIGHTS.sum())
    session_start = start + hour * US_PER_HOUR + rng.integers(0, US_PER_HOUR, n_sessions)
    per_session = rng.integers(5, 11, n_sessions)
    session = np.repeat(np.arange(n_sessions), per_session)
    gaps = US_PER_SECOND + np.minimum(rng.exponential(20.0, len(session)), 300.0) * US_PER_SECOND
    elapsed = cumsum_within_groups(gaps, per_session)
    user = session_user[session]
    item = sample_taste_items(users, user, items, 0.55, rng)
    shown_at = (session_start[session] + elapsed).astype(np.int64)

    # A page never shows the same item twice in one session.
    key = session.astype(np.int64) * len(items.item_id) + item
    keep = np.sort(np.unique(key, return_index=True)[1])
    session, user, item, shown_at = session[keep], user[keep], item[keep], shown_at[keep]
    index = np.arange(len(session))
    session_first = np.maximum.accumulate(np.where(np.r_[True, session[1:] != session[:-1]], index, 0))
    position = index - session_first + 1

    taste_term = np.log(len(CATEGORIES) * users.taste[user, items.true_category[item]] + 0.1)
    price_term = np.log(items.price[item] / CATEGORY_BASE_PRICE[items.true_category[item]])
    sensitivity = users.price_sensitivity[user]
    quality = items.quality[item]
    p_click = sigmoid(
        -3.25 + 1.1 * taste_term + 0.8 * quality - 0.35 * sensitivity * price_term - 0.12 * (position - 1)
    )
    p_convert = sigmoid(-1.95 + 0.5 * taste_term + 0.7 * quality - 0.8 * sensitivity * price_term)
    clicked = rng.random(len(item)) < p_click
    clicked_at = shown_at + seconds_us(1.0 + np.minimum(rng.exponential(10.0, len(item)), 120.0))
    converted = clicked & (rng.random(len(item)) < p_convert)
    carted = clicked & (rng.random(len(item)) < np.where(converted, 0.6, 0.1))
    carted_at = clicked_at + seconds_us(2.0 + np.minimum(rng.exponential(40.0, len(item)), 600.0))
    # Purchase delay: exponential (mean 2 h) truncated to the rest of the day (and below 24 h), so
    # P(order within 24 h | click) is exactly p_convert and no order spills into the next day.
    mean = config.conversion_delay_hours * US_PER_HOUR
    room = np.maximum(np.minimum(start + US_PER_DAY - clicked_at, US_PER_DAY) - 2 * US_PER_SECOND, 1)
    draw = rng.random(len(item))
    delay = -mean * np.log1p(-draw * -np.expm1(-room / mean))
    ordered_at = clicked_at + US_PER_SECOND + np.minimum(delay, room - 1).astype(np.int64)
    return {
        "session": session,
        "user": user,
        "item": item,
        "shown_at": shown_at,
        "position": position,
        "p_click": p_click,
        "p_convert": p_convert,
        "clicked": clicked,
        "clicked_at": clicked_at,
        "carted": carted,
        "carted_at": carted_at,
        "converted": converted,
        "ordered_at": ordered_at,
    }


def seconds_us(seconds: np.ndarray) -> np.ndarray:
    """Seconds (float) as whole microseconds."""
    return (np.asarray(seconds) * US_PER_SECOND).astype(np.int64)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function."""
    return 1.0 / (1.0 + np.exp(-x))


def click_tables(day: date, sessions: dict[str, np.ndarray], users: Users, items: Items) -> dict[str, pl.DataFrame]:
    """clicks and truth_impressions rows of one day."""
    key = day_index(day)
    s = sessions
    clicked, carted = s["clicked"], s["carted"]
    n_impressions = len(s["item"])
    kind = np.concatenate(
        [np.zeros(n_impressions, np.int8), np.ones(clicked.sum(), np.int8), np.full(carted.sum(), 2, np.int8)]
    )
    event_time = np.concatenate([s["shown_at"], s["clicked_at"][clicked], s["carted_at"][carted]])
    row = np.concatenate([np.arange(n_impressions), np.flatnonzero(clicked), np.flatnonzero(carted)])
    order = np.lexsort((kind, event_time))
    kind, event_time, row = kind[order], event_time[order], row[order]
    event_id = key * ID_BLOCK + np.arange(len(row), dtype=np.int64)
    if len(row) >= ID_BLOCK:
        raise ValueError(f"{len(row)} click events in one day exceed the id block ({ID_BLOCK})")
    session_text = pl.Series(s["session"][row]).cast(pl.String)
    position = pl.Series(s["position"][row], dtype=pl.Int32)
    clicks = to_table(
        "clicks",
        {
            "event_id": event_id,
            "event_time": to_datetime(event_time),
            "user_id": users.user_id[s["user"][row]],
            "item_id": items.item_id[s["item"][row]],
            "session_id": (f"s{key}-" + session_text).alias("session_id"),
            "event_type": np.array(["impression", "click", "add_to_cart"], dtype=object)[kind].tolist(),
            "position": pl.select(pl.when(pl.Series(kind) == 0).then(position)).to_series(),
        },
    )
    is_impression = kind == 0
    truth = to_table(
        "truth_impressions",
        {
            "event_id": event_id[is_impression],
            "p_click": s["p_click"][row[is_impression]],
            "p_convert": s["p_convert"][row[is_impression]],
        },
    )
    return {"clicks": clicks, "truth_impressions": truth}


def choose(weights: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` draws of an index with the given (unnormalised) weights."""
    return rng.choice(len(weights), size=size, p=weights / weights.sum())


def simulate_orders(
    config: SyntheticConfig,
    day: date,
    sessions: dict[str, np.ndarray],
    users: Users,
    items: Items,
    rings: Rings,
) -> dict[str, np.ndarray]:
    """Orders of one day from three sources (click conversions, organic buying, fraud) with lines and labels."""
    rng = stream_rng(config, day_index(day), STREAM_ORDERS)
    start = day_start_us(day)
    weights = users.activity / users.activity.sum()

    # 1. Conversions of clicks: the clicked item, sometimes with a second item.
    converted = sessions["converted"]
    conv_user = sessions["user"][converted]
    conv_time = sessions["ordered_at"][converted]
    conv_item = sessions["item"][converted]

    # 2. Organic orders (search, wishlist, apps without tracked impressions).
    n_organic = int(rng.poisson(config.count(config.organic_orders_per_day)))
    org_user = rng.choice(len(users.user_id), size=n_organic, p=weights)
    org_hour = choose(ORDER_HOUR_WEIGHTS, n_organic, rng)
    org_time = start + org_hour * US_PER_HOUR + rng.integers(0, US_PER_HOUR, n_organic)

    # 3. Fraud: young fraudster accounts of the rings, and takeovers of established accounts. Both
    # come in bursts of orders a few tens of minutes apart.
    age_at_start = start - users.signup_us
    young = (age_at_start > 0) & (age_at_start <= config.fraudster_active_days * US_PER_DAY)
    young_fraudster = users.is_fraudster & young
    acting = np.flatnonzero(young_fraudster & (rng.random(len(users.user_id)) < 0.4))
    established = np.flatnonzero(~users.is_fraudster & (age_at_start > 60 * US_PER_DAY))
    n_takeovers = min(int(rng.poisson(config.count(config.takeovers_per_day))), len(established))
    taken = rng.choice(established, size=n_takeovers, replace=False) if n_takeovers else np.zeros(0, np.int64)
    burst_user = np.concatenate([acting, taken]).astype(np.int64)
    burst_ring = np.concatenate([users.ring[acting], rng.integers(0, len(rings.country), n_takeovers)])
    burst_size = np.minimum(1 + rng.poisson(np.where(np.arange(len(burst_user)) < len(acting), 1.3, 0.6)), 6)
    burst = np.repeat(np.arange(len(burst_user)), burst_size)
    burst_hour = choose(FRAUD_HOUR_WEIGHTS, len(burst_user), rng)
    burst_start = start + burst_hour * US_PER_HOUR + rng.integers(0, US_PER_HOUR, len(burst_user))
    gaps = (2 * 60 + rng.exponential(40 * 60, len(burst))) * US_PER_SECOND
    gaps[np.cumsum(burst_size) - burst_size] = 0.0  # a burst's first order is placed at its start
    elapsed = cumsum_within_groups(gaps, burst_size)
    risky_time = (burst_start[burst] + elapsed).astype(np.int64)
    in_day = risky_time < start + US_PER_DAY
    risky_user, risky_ring, risky_time = burst_user[burst][in_day], burst_ring[burst][in_day], risky_time[in_day]

    n_conv, n_org, n_risky = len(conv_user), n_organic, len(risky_user)
    user = np.concatenate([conv_user, org_user, risky_user]).astype(np.int64)
    created = np.concatenate([conv_time, org_time, risky_time]).astype(np.int64)
    risky = np.concatenate([np.zeros(n_conv + n_org, bool), np.ones(n_risky, bool)])
    ring = np.concatenate([np.zeros(n_conv + n_org, np.int64), risky_ring]).astype(np.int64)
    n_orders = len(user)

    # Order lines: (order index, item index, quantity).
    org_lines = 1 + (rng.random(n_org) < 0.3) + (rng.random(n_org) < 0.08)
    risky_lines = 1 + (rng.random(n_risky) < 0.4)
    conv_extra = rng.random(n_conv) < 0.15
    org_line_order = n_conv + np.repeat(np.arange(n_org), org_lines)
    extra_order = np.flatnonzero(conv_extra)
    taste_order = np.concatenate([extra_order, org_line_order]).astype(np.int64)
    taste_items = sample_taste_items(users, user[taste_order], items, 0.8, rng)
    risky_line_order = n_conv + n_org + np.repeat(np.arange(n_risky), risky_lines)
    expensive = items.popularity * items.price**1.2
    risky_items = choose(expensive, len(risky_line_order), rng)
    line_order = np.concatenate([np.arange(n_conv), taste_order, risky_line_order]).astype(np.int64)
    line_item = np.concatenate([conv_item, taste_items, risky_items]).astype(np.int64)
    line_qty = np.where(
        risky[line_order], 1 + rng.binomial(2, 0.45, len(line_order)), 1 + (rng.random(len(line_order)) < 0.12)
    )
    unique_key = line_order * len(items.item_id) + line_item
    keep = np.sort(np.unique(unique_key, return_index=True)[1])
    line_order, line_item, line_qty = line_order[keep], line_item[keep], line_qty[keep]
    discount = np.where(rng.random(len(line_item)) < 0.2, rng.uniform(0.05, 0.2, len(line_item)), 0.0)
    unit_price = np.maximum(np.round(items.price[line_item] * (1 - discount), 2), 0.5)
    amount = np.round(np.bincount(line_order, weights=line_qty * unit_price, minlength=n_orders), 2)

    # Order context: legit users use their own devices, home or mobile IPs and their habits; fraud
    # reuses the ring's devices and IPs, ships to the ring's country and pays with risky methods.
    draw = rng.random((6, n_orders))
    own_device = np.where(draw[0] < 0.85, users.device_main[user], users.device_alt[user])
    ring_device = rings.devices[ring, rng.integers(0, rings.devices.shape[1], n_orders)]
    uses_ring_device = risky & (draw[1] < 0.75)
    device = np.where(uses_ring_device, ring_device, own_device)
    mobile_ip = hash_ints(config.seed, 14, day_index(day), np.arange(n_orders))
    ring_ip = rings.ips[ring, rng.integers(0, rings.ips.shape[1], n_orders)]
    uses_ring_ip = risky & (draw[2] < 0.6)
    ip = np.where(uses_ring_ip, ring_ip, np.where(~risky & (draw[2] < 0.7), users.home_ip[user], mobile_ip))
    random_country = choose(COUNTRY_WEIGHTS, n_orders, rng)
    ship_country = np.where(
        risky,
        np.where(draw[3] < 0.6, rings.country[ring], users.country[user]),
        np.where(draw[3] < 0.03, random_country, users.country[user]),
    )
    payment = np.where(
        risky,
        choose(FRAUD_PAYMENT_WEIGHTS, n_orders, rng),
        np.where(draw[4] < 0.8, users.payment_pref[user], choose(LEGIT_PAYMENT_WEIGHTS, n_orders, rng)),
    )
    channel = np.where(
        risky,
        choose(FRAUD_CHANNEL_WEIGHTS, n_orders, rng),
        np.where(draw[5] < 0.7, users.channel_pref[user], choose(LEGIT_CHANNEL_WEIGHTS, n_orders, rng)),
    )
    status = choose(STATUS_WEIGHTS, n_orders, rng)

    # Velocity: the user's earlier orders of the day (all within 24 h).
    by_user = np.lexsort((created, user))
    sorted_user = user[by_user]
    index = np.arange(n_orders)
    group_first = np.maximum.accumulate(np.where(np.r_[True, sorted_user[1:] != sorted_user[:-1]], index, 0))
    velocity = np.empty(n_orders, np.int64)
    velocity[by_user] = index - group_first
    age_days = (created - users.signup_us[user]) / US_PER_DAY
    night = ((created - start) // US_PER_HOUR) < 6
    logit = (
        -5.6
        + 2.4 * np.exp(-age_days / 3.0)
        + 1.5 * uses_ring_device
        + 1.0 * uses_ring_ip
        + 0.6 * np.minimum(velocity, 3)
        + 0.8 * np.clip(np.log(np.maximum(amount, 1.0) / 150.0), 0.0, 3.0)
        + 1.3 * (ship_country != users.country[user])
        + PAYMENT_RISK[payment]
        + CHANNEL_RISK[channel]
        + 0.8 * night
        + 0.6 * risky
    )
    p_fraud = sigmoid(logit)
    is_fraud = rng.random(n_orders) < p_fraud
    labeled_at = created + (rng.uniform(1.0, 30.0, n_orders) * US_PER_DAY).astype(np.int64)
    return {
        "user": user,
        "created": created,
        "amount": amount,
        "payment": payment,
        "device": device,
        "ip": ip,
        "channel": channel,
        "ship_country": ship_country,
        "status": status,
        "p_fraud": p_fraud,
        "is_fraud": is_fraud,
        "labeled_at": labeled_at,
        "line_order": line_order,
        "line_item": line_item,
        "line_qty": line_qty,
        "unit_price": unit_price,
    }


def simulate_reviews(
    config: SyntheticConfig, day: date, orders: dict[str, np.ndarray], users: Users, items: Items
) -> dict[str, np.ndarray | list]:
    """Reviews of the order lines of one day: rating, truth P(rating <= 2), text and time."""
    rng = stream_rng(config, day_index(day), STREAM_REVIEWS)
    line_order, line_item = orders["line_order"], orders["line_item"]
    cancelled = orders["status"][line_order] == STATUSES.index("cancelled")
    chance = np.where(orders["is_fraud"][line_order], 0.02, 0.30)
    reviewed = np.flatnonzero(~cancelled & (rng.random(len(line_order)) < chance))
    order, item = line_order[reviewed], line_item[reviewed]
    user = orders["user"][order]
    delivery_issue = rng.random(len(reviewed)) < 0.1
    taste = np.log(len(CATEGORIES) * users.taste[user, items.true_category[item]] + 0.1)
    score = 1.1 * items.quality[item] - 0.5 * users.harshness[user] + 0.25 * taste - 2.2 * delivery_issue
    rating = 1 + (score[:, None] + rng.logistic(0.0, 1.0, len(reviewed))[:, None] > RATING_CUTS[None, :]).sum(axis=1)
    p_negative = sigmoid(RATING_CUTS[1] - score)
    created = orders["created"][order] + (rng.uniform(1.0, 14.0, len(reviewed)) * US_PER_DAY).astype(np.int64)
    without_order = rng.random(len(reviewed)) < 0.03
    titles, bodies = compose_review_texts(rating, delivery_issue, items.true_category[item], rng)
    return {
        "order": order,
        "item": item,
        "user": user,
        "rating": rating,
        "p_negative": p_negative,
        "created": created,
        "without_order": without_order,
        "title": titles,
        "body": bodies,
    }


def order_tables(
    day: date, orders: dict[str, np.ndarray], reviews: dict, users: Users, items: Items
) -> dict[str, pl.DataFrame]:
    """orders, order_items, fraud_labels, truth_orders, reviews and truth_reviews rows of one day."""
    key = day_index(day)
    by_time = np.argsort(orders["created"], kind="stable")
    order_id = np.empty(len(by_time), np.int64)
    order_id[by_time] = key * ID_BLOCK + np.arange(len(by_time))
    o = {name: values[by_time] for name, values in orders.items() if not name.startswith(("line_", "unit_"))}
    ids = order_id[by_time]
    line_rank = np.lexsort((orders["line_item"], order_id[orders["line_order"]]))
    fraud = o["is_fraud"]
    tables = {
        "orders": to_table(
            "orders",
            {
                "order_id": ids,
                "user_id": users.user_id[o["user"]],
                "created_at": to_datetime(o["created"]),
                "amount": o["amount"],
                "payment_method": np.array(PAYMENT_METHODS, dtype=object)[o["payment"]].tolist(),
                "device_id": format_device_ids(o["device"]),
                "ip_address": format_ips(o["ip"]),
                "channel": np.array(CHANNELS, dtype=object)[o["channel"]].tolist(),
                "ship_country": np.array(COUNTRIES, dtype=object)[o["ship_country"]].tolist(),
                "status": np.array(STATUSES, dtype=object)[o["status"]].tolist(),
            },
        ),
        "order_items": to_table(
            "order_items",
            {
                "order_id": order_id[orders["line_order"][line_rank]],
                "item_id": items.item_id[orders["line_item"][line_rank]],
                "quantity": orders["line_qty"][line_rank],
                "unit_price": orders["unit_price"][line_rank],
            },
        ),
        "fraud_labels": to_table(
            "fraud_labels",
            {
                "order_id": ids[fraud],
                "is_fraud": np.ones(int(fraud.sum()), dtype=bool),
                "labeled_at": to_datetime(o["labeled_at"][fraud]),
            },
        ),
        "truth_orders": to_table("truth_orders", {"order_id": ids, "p_fraud": o["p_fraud"]}),
    }
    r = reviews
    by_review_time = np.argsort(r["created"], kind="stable")
    review_id = key * ID_BLOCK + np.arange(len(by_review_time), dtype=np.int64)
    review_order = pl.Series(order_id[r["order"][by_review_time]], dtype=pl.Int64)
    without_order = r["without_order"][by_review_time]
    tables["reviews"] = to_table(
        "reviews",
        {
            "review_id": review_id,
            "order_id": pl.select(pl.when(~pl.Series(without_order)).then(review_order)).to_series(),
            "user_id": users.user_id[r["user"][by_review_time]],
            "item_id": items.item_id[r["item"][by_review_time]],
            "rating": r["rating"][by_review_time],
            "title": pl.Series([r["title"][i] for i in by_review_time], dtype=pl.String),
            "body": pl.Series([r["body"][i] for i in by_review_time], dtype=pl.String),
            "created_at": to_datetime(r["created"][by_review_time]),
        },
    )
    tables["truth_reviews"] = to_table(
        "truth_reviews", {"review_id": review_id, "p_negative": r["p_negative"][by_review_time]}
    )
    return tables


def simulate_day_tables(world: DemoWorld, day: date) -> dict[str, pl.DataFrame]:
    """Every row that belongs to ``day`` (population, events, orders, reviews, truth), as contract frames."""
    config = world.config
    users = world.users_before(day)
    items = world.items_before(day)
    tables = population_tables(config, world.users_of(day), world.items_of(day), day_index(day))
    sessions = simulate_sessions(config, day, users, items)
    orders = simulate_orders(config, day, sessions, users, items, world.rings)
    reviews = simulate_reviews(config, day, orders, users, items)
    tables.update(click_tables(day, sessions, users, items))
    tables.update(order_tables(day, orders, reviews, users, items))
    return tables


def write_tables(engine: Engine, tables: dict[str, pl.DataFrame], low: int, high: int) -> dict[str, int]:
    """Replace the rows with ids in [low, high) of every table by ``tables``, in one transaction."""
    written: dict[str, int] = {}
    with engine.begin() as conn:
        for table, frame in tables.items():
            key = DAY_KEYS[table]
            written[table] = replace_rows(
                conn, table, frame, f"{key} >= :low AND {key} < :high", {"low": low, "high": high}
            )
    return written


def generate_warehouse(
    warehouse_url: str, start: date, end: date, scale: float = 1.0, seed: int = 7
) -> dict[str, int]:
    """Fill the demo warehouse for the days ``start..end`` (inclusive); returns rows written per table."""
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    if start < FIRST_DAY:
        raise ValueError(f"days before {FIRST_DAY} cannot be generated (the base population signs up before it)")
    if scale < MIN_SCALE:
        raise ValueError(f"scale must be at least {MIN_SCALE} (a catalogue of a few items), got {scale}")
    config = SyntheticConfig(seed=seed, scale=scale)
    world = DemoWorld(config)
    engine = create_warehouse_engine(warehouse_url)
    totals: dict[str, int] = {table: 0 for table in DAY_KEYS}

    def add(written: dict[str, int]) -> None:
        for table, rows in written.items():
            totals[table] += rows

    try:
        create_tables(engine)
        log.info("generating %s..%s at scale %s seed %s into %s", start, end, scale, seed, mask_url(warehouse_url))
        add(write_tables(engine, population_tables(config, world.base_users, world.base_items, BASE_KEY), 0, ID_BLOCK))
        # New users/items of the days before start may act during the first days: write them too.
        for day in world.recent_days(start):
            low, high = day_id_range(day)
            cohort = population_tables(config, world.users_of(day), world.items_of(day), day_index(day))
            add(write_tables(engine, cohort, low, high))
        day = start
        while day <= end:
            low, high = day_id_range(day)
            add(write_tables(engine, simulate_day_tables(world, day), low, high))
            log.info("generated %s", day)
            day += timedelta(days=1)
    finally:
        engine.dispose()
    return totals


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line arguments of ``python -m etl.synthetic``."""
    parser = argparse.ArgumentParser(prog="python -m etl.synthetic", description=__doc__.split("\n\n")[0])
    parser.add_argument("--warehouse-url", required=True, help="SQLAlchemy URL (sqlite:///... or postgresql://...)")
    parser.add_argument("--start", required=True, type=date.fromisoformat, help="first day, YYYY-MM-DD")
    parser.add_argument("--end", required=True, type=date.fromisoformat, help="last day (inclusive), YYYY-MM-DD")
    parser.add_argument("--scale", type=float, default=1.0, help="size multiplier (1 = documented sizes)")
    parser.add_argument("--seed", type=int, default=7, help="random seed")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: generate the requested days and print the rows written per table as JSON."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    written = generate_warehouse(args.warehouse_url, args.start, args.end, scale=args.scale, seed=args.seed)
    print(json.dumps(written, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
