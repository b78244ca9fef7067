"""The demo world of one ``(seed, scale)``: its vocabulary and base rates, the generator's config,
and the population that acts in it (users with latent traits, items with a latent quality and a true
category, fraud rings), built from seeded random streams.

``DemoWorld`` holds the base population and caches the newcomers of each day; a day's events draw on
the base plus the newcomers of the ``recent_days`` days before it. ``demo.synthetic`` documents the
generator as a whole (ids, days, the planted structure).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import date, timedelta
from typing import TypeVar

import numpy as np

from demo.text import compose_item_titles

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
# Ordinal-logistic cut points of the rating: rating = 1 + #{k : sentiment + noise > cut_k}.
RATING_CUTS = np.array([-1.9, -1.0, 0.0, 1.3])
# A review's latent sentiment (how the reviewer feels) is its expected score plus logistic noise of this
# scale. The rating and the words each follow the sentiment with noise of their own, so the text tells
# the sentiment only roughly, some reviews have no text (demo.text), and truth_reviews.p_negative =
# P(rating <= 2 | sentiment) is a true upper bound for any model that reads the text.
SENTIMENT_NOISE = 0.85
RATING_NOISE = 0.5
TEXT_NOISE = 0.9
# Surfaces where users meet items (clicks.scenario): the same users, tastes and items on each, with
# each surface's own base rates, position effect and weight of taste. "cart" (cross-selling on the
# cart page) is the thin one, about 3 % of sessions.
SCENARIOS = ("home_feed", "search", "product_page", "cart")
SCENARIO_WEIGHTS = np.array([0.55, 0.30, 0.12, 0.03])
SCENARIO_CLICK_OFFSET = np.array([0.0, 0.45, 0.15, -0.25])
SCENARIO_POSITION_SLOPE = np.array([0.12, 0.25, 0.08, 0.30])
SCENARIO_TASTE_WEIGHT = np.array([1.1, 1.4, 0.9, 0.8])
SCENARIO_CONVERT_OFFSET = np.array([0.0, 0.3, 0.15, 0.5])

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
STREAM_SCENARIOS = 8  # drawn apart from the sessions, so adding scenarios moved none of their draws
BASE_KEY = 0  # the "day index" of the base population's random streams (2000-01-01 is never generated)


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


def draw_arrivals(
    config: SyntheticConfig, day: date | None, stream: int, base_count: int, per_day: float
) -> tuple[np.random.Generator, int, np.ndarray, np.ndarray]:
    """(the stream's generator, n, ids, arrival times in us) of the users or items that arrive on
    ``day``; ``None``: the base population, spread over the years before the first day."""
    key = BASE_KEY if day is None else day_index(day)
    rng = stream_rng(config, key, stream)
    if day is None:
        n = round(base_count * config.scale)
        ids = np.arange(1, n + 1, dtype=np.int64)
        first = day_start_us(FIRST_DAY) - BASE_SPAN_DAYS * US_PER_DAY
        arrivals = np.sort(rng.integers(first, day_start_us(FIRST_DAY), n))
    else:
        n = int(rng.poisson(config.count(per_day)))
        ids = key * ID_BLOCK + np.arange(n, dtype=np.int64)
        arrivals = np.sort(rng.integers(0, US_PER_DAY, n)) + day_start_us(day)
    return rng, n, ids, arrivals


def build_users(config: SyntheticConfig, day: date | None, rings: Rings) -> Users:
    """The users who sign up on ``day`` (``None``: the base population)."""
    rng, n, user_id, signup = draw_arrivals(config, day, STREAM_USERS, config.base_users, config.new_users_per_day)
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
    rng, n, item_id, created = draw_arrivals(config, day, STREAM_ITEMS, config.base_items, config.new_items_per_day)
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
