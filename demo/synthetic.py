"""Demo warehouse generator: fills the source tables (and the generator truth) day by day.

    python -m demo.synthetic --warehouse-url URL --start YYYY-MM-DD --end YYYY-MM-DD --scale S --seed N

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
* impressions happen on a surface (``clicks.scenario``, one per session): ``home_feed`` (~55 % of
  sessions), ``search`` (~30 %), ``product_page`` (~12 %) and the thin ``cart`` (~3 %), each with its
  own base click and conversion rate, position effect and weight of taste; the users, their tastes
  and the items are the same on every surface (``demo.world.SCENARIO_*``);
* reviews: a latent sentiment per review from item quality, user harshness, taste and delivery
  problems plus noise; the rating (ordinal logistic) and the words (``demo.text``; ~8 % of reviews have
  none) each follow the sentiment with noise of their own, so ``truth_reviews.p_negative =
  P(rating <= 2 | sentiment)`` is a true upper bound for a model of the text;
* images: 32x32 PNGs whose shape and colour follow the TRUE category (``demo.images``);
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

Modules, in the order a day is made: ``demo.world`` (the vocabulary, the config, the population of
users, items and fraud rings), ``demo.simulate`` (sessions, clicks, orders and reviews of one day, as
arrays), ``demo.tables`` (those arrays as contract frames) and this module (writing days, the CLI).
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from collections.abc import Sequence
from datetime import date, datetime, timedelta

import polars as pl
from sqlalchemy.engine import Engine

from demo.simulate import simulate_orders, simulate_reviews, simulate_sessions
from demo.tables import click_tables, order_tables, population_tables
from demo.world import BASE_KEY, FIRST_DAY, ID_BLOCK, MIN_SCALE, DemoWorld, SyntheticConfig, day_id_range, day_index
from etl.config import load_settings
from etl.warehouse import create_tables, create_warehouse_engine, mask_url, replace_rows

log = logging.getLogger(__name__)

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


# Rows that arrive days after the day that makes them (a fraud decision, a review after delivery):
# a warehouse seeded up to yesterday cannot hold the ones whose time has not come.
ARRIVAL_COLUMNS = {"fraud_labels": "labeled_at", "reviews": "created_at"}


def withhold_future(tables: dict[str, pl.DataFrame], known_before: datetime | None) -> dict[str, pl.DataFrame]:
    """``tables`` without the late-arriving rows dated at or after ``known_before`` (naive UTC)."""
    if known_before is None:
        return tables
    return {
        table: frame.filter(pl.col(ARRIVAL_COLUMNS[table]) < known_before) if table in ARRIVAL_COLUMNS else frame
        for table, frame in tables.items()
    }


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
    warehouse_url: str, start: date, end: date, scale: float = 1.0, seed: int = 7, known_before: datetime | None = None
) -> dict[str, int]:
    """Fill the demo warehouse for the days ``start..end`` (inclusive); returns rows written per table.
    ``known_before`` (naive UTC; e.g. now): leave out the labels and reviews that would arrive later."""
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
            add(write_tables(engine, withhold_future(simulate_day_tables(world, day), known_before), low, high))
            log.info("generated %s", day)
            day += timedelta(days=1)
    finally:
        engine.dispose()
    # Re-seeding rewrites days the nightly runs may already hold as immutable daily partitions
    # (etl.extract): drop this warehouse's partitions, so the next night reads the days again.
    shutil.rmtree(load_settings().partitions_dir(warehouse_url), ignore_errors=True)
    return totals


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line arguments of ``python -m demo.synthetic``."""
    parser = argparse.ArgumentParser(prog="python -m demo.synthetic", description=__doc__.split("\n\n")[0])
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
