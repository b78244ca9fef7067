"""Olist into the warehouse contract (``python -m demo.public_data olist``).

Olist (Kaggle ``olistbr/brazilian-ecommerce``, CC BY-NC-SA 4.0; ``olist_*_dataset.csv`` and
``product_category_name_translation.csv``) -> users, items, orders, order_items, reviews. Olist has
no clicks, fraud labels, product photos or generator truth, so clicks, fraud_labels, item_images and
truth_* get nothing: a deployment on Olist alone can train the review-sentiment objective only.

* Ids. Olist ids are hex strings; every one becomes the BIGINT
  ``2**62 | (blake2b("<kind>:<string id>", digest_size=8) & (2**62 - 1))`` (kinds ``user``,
  ``product``, ``seller``, ``order``, ``review``). The same string always gets the same integer, in
  every run and every database, so separate loads of overlapping slices agree. Bit 62 is always set:
  Olist ids are positive and never meet the small ids of the demo generator (< 2**40) or of
  Fashion-MNIST (1..10,000). A load fails loudly if two different strings of one kind hash to the
  same integer (with 62 bits, about 1e-7 for a million ids). A review's string id is
  ``review_id/order_id``: the full Olist dataset reuses some review_ids across orders.
* Timestamps are local Brazilian time without zone; they are read as ``America/Sao_Paulo`` (with the
  DST of 2016-2019) and stored as naive UTC. A wall time that is ambiguous (the hour repeated when DST
  ends) is read as the earlier instant, one that does not exist (skipped when DST starts) with the
  offset in force before the jump: Python's ``fold=0`` rule.
* users: one per ``customer_unique_id`` (Olist's ``customer_id`` is per order). signup_at = the
  person's first order purchase time in the slice; country ``'BR'``; birth_year NULL (unknown).
* items: one per product. category = English name from the translation file, else the Portuguese
  name, else ``'unknown'``; price = median price of the product's order lines; seller_id = the seller
  with the most lines of it (ties: smallest Olist seller id); created_at = first purchase of an order
  holding it. title is a PLACEHOLDER, ``"<category words> #<first 8 hex digits of product_id>"``:
  Olist publishes no product titles. Products never sold (none in the slice) are skipped: they have
  no price and no first sale.
* orders: created_at = order_purchase_timestamp; amount = sum of the payments (items + freight when an
  order has no payment rows); payment_method = type of the largest payment (ties: first payment);
  status = order_status. PLACEHOLDERS: device_id and ip_address ``'unknown'`` (Olist has neither),
  channel ``'web'``, ship_country ``'BR'`` (Olist ships only in Brazil).
* order_items: one row per (order, product); Olist repeats a line per unit, so quantity = number of
  lines and unit_price = their mean price.
* reviews: review_score -> rating, review_comment_title -> title, review_comment_message -> body
  (Portuguese, kept byte for byte, nulls stay null), review_creation_date -> created_at, user_id = the
  order's customer. An Olist review rates an ORDER; item_id = the order's first product
  (order_item_id 1). Reviews of orders without any line (canceled or unavailable before an item was
  attached) are skipped, because reviews.item_id is NOT NULL.

Rows for the shared slice (``olist_sample``, 1,000 orders): users 999 (one person ordered twice),
items 923, orders 1,000, order_items 1,025 (1,121 CSV lines), reviews 989 (996 in the CSV; the 7
reviews of 9 item-less orders are skipped). Loading takes well under a second.
"""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from pathlib import Path

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from etl.warehouse import create_tables, create_warehouse_engine, insert_frame, mask_url, select_table

log = logging.getLogger(__name__)

OLIST_TIME_ZONE = "America/Sao_Paulo"
OLIST_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
OLIST_ID_BIT = 62  # the namespace bit every Olist id carries
OLIST_HASH_BITS = 62  # hash bits below it
DELETE_CHUNK = 500  # ids per DELETE ... IN (...): far below SQLite's bound-parameter limit
UNKNOWN = "unknown"  # placeholder for fields Olist does not publish

OLIST_FILES = {
    "customers": "olist_customers_dataset.csv",
    "orders": "olist_orders_dataset.csv",
    "order_items": "olist_order_items_dataset.csv",
    "payments": "olist_order_payments_dataset.csv",
    "reviews": "olist_order_reviews_dataset.csv",
    "products": "olist_products_dataset.csv",
    "translation": "product_category_name_translation.csv",
}
# The id column by which each Olist table's rows are owned (and replaced on a reload).
OLIST_KEYS = {
    "users": "user_id",
    "items": "item_id",
    "orders": "order_id",
    "order_items": "order_id",
    "reviews": "review_id",
}


# ---------------------------------------------------------------------------------------------- ids


def stable_id(kind: str, key: str, hash_bits: int = OLIST_HASH_BITS) -> int:
    """The integer id of the string ``key`` of ``kind``: blake2b hash bits under the Olist namespace bit."""
    digest = hashlib.blake2b(f"{kind}:{key}".encode(), digest_size=8).digest()
    return (1 << OLIST_ID_BIT) | (int.from_bytes(digest, "big") & ((1 << hash_bits) - 1))


def encode_ids(kind: str, keys: pl.Series, hash_bits: int = OLIST_HASH_BITS) -> pl.Series:
    """Integer ids for string ids (hashing once per distinct key); raises on a hash collision."""
    distinct = keys.drop_nulls().unique().sort().to_list()
    mapping = {key: stable_id(kind, key, hash_bits) for key in distinct}
    if len(set(mapping.values())) != len(mapping):
        seen: dict[int, str] = {}
        for key, value in mapping.items():
            if value in seen:
                raise ValueError(f"{kind} ids {seen[value]!r} and {key!r} hash to the same integer {value}")
            seen[value] = key
    return keys.replace_strict(mapping, default=None, return_dtype=pl.Int64)


# ------------------------------------------------------------------------------------------- olist


def local_to_utc(column: pl.Expr, time_zone: str = OLIST_TIME_ZONE) -> pl.Expr:
    """Naive local wall times in ``time_zone`` as naive UTC (ambiguous: earlier; nonexistent: pre-jump offset)."""
    as_local = column.dt.replace_time_zone(time_zone, ambiguous="earliest", non_existent="null")
    # A wall time skipped by a DST jump, read with the offset before the jump, is the same instant
    # as one hour later read with the offset after it (Python's fold=0 rule).
    shifted = (column + pl.duration(hours=1)).dt.replace_time_zone(
        time_zone, ambiguous="earliest", non_existent="null"
    )
    return pl.coalesce(as_local, shifted).dt.convert_time_zone("UTC").dt.replace_time_zone(None)


def parse_olist_time(name: str) -> pl.Expr:
    """An Olist text timestamp column as naive UTC microseconds."""
    return local_to_utc(pl.col(name).str.to_datetime(OLIST_TIME_FORMAT, time_unit="us", strict=True)).alias(name)


def read_olist(path: Path) -> dict[str, pl.DataFrame]:
    """The Olist CSV files under ``path``, every column as text (ids and zip codes stay exact)."""
    missing = [name for name in OLIST_FILES.values() if not (path / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{path} lacks the Olist files {missing}")
    return {key: pl.read_csv(path / name, infer_schema=False) for key, name in OLIST_FILES.items()}


def build_olist_tables(raw: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """The warehouse rows of an Olist slice: users, items, orders, order_items, reviews (contract frames)."""
    customers = raw["customers"].select("customer_id", "customer_unique_id")
    orders = (
        raw["orders"]
        .join(customers, on="customer_id", how="left", validate="m:1")
        .with_columns(parse_olist_time("order_purchase_timestamp"))
    )
    if orders.get_column("customer_unique_id").null_count():
        raise ValueError("some Olist orders name a customer_id missing from the customers file")
    lines = raw["order_items"].with_columns(
        pl.col("order_item_id").cast(pl.Int32),
        pl.col("price").cast(pl.Float64),
        pl.col("freight_value").cast(pl.Float64),
    )
    purchased = orders.select("order_id", "order_purchase_timestamp")
    lines = lines.join(purchased, on="order_id", how="inner", validate="m:1")
    payments = raw["payments"].with_columns(
        pl.col("payment_sequential").cast(pl.Int32), pl.col("payment_value").cast(pl.Float64)
    )

    users = orders.group_by("customer_unique_id").agg(pl.col("order_purchase_timestamp").min().alias("signup_at"))
    users = users.with_columns(
        encode_ids("user", users.get_column("customer_unique_id")).alias("user_id"),
        pl.lit("BR").alias("country"),
        pl.lit(None, dtype=pl.Int32).alias("birth_year"),
    )

    items = items_from_lines(lines, raw["products"], raw["translation"])

    paid = (
        payments.sort("order_id", pl.col("payment_value"), "payment_sequential", descending=[False, True, False])
        .group_by("order_id", maintain_order=True)
        .agg(pl.col("payment_value").sum().alias("paid"), pl.col("payment_type").first().alias("payment_method"))
    )
    billed = lines.group_by("order_id").agg((pl.col("price") + pl.col("freight_value")).sum().alias("billed"))
    # Ids are encoded on the frame they are attached to: a join does not promise to keep row order.
    order_rows = orders.with_columns(
        encode_ids("order", orders.get_column("order_id")).alias("order_key"),
        encode_ids("user", orders.get_column("customer_unique_id")).alias("user_id"),
    )
    order_rows = (
        order_rows.join(paid, on="order_id", how="left")
        .join(billed, on="order_id", how="left")
        .select(
            pl.col("order_key").alias("order_id"),
            "user_id",
            pl.col("order_purchase_timestamp").alias("created_at"),
            pl.coalesce("paid", "billed", pl.lit(0.0)).round(2).alias("amount"),
            pl.col("payment_method").fill_null(UNKNOWN),
            pl.lit(UNKNOWN).alias("device_id"),
            pl.lit(UNKNOWN).alias("ip_address"),
            pl.lit("web").alias("channel"),
            pl.lit("BR").alias("ship_country"),
            pl.col("order_status").alias("status"),
        )
    )

    order_item_rows = (
        lines.group_by("order_id", "product_id")
        .agg(pl.len().cast(pl.Int32).alias("quantity"), pl.col("price").mean().round(2).alias("unit_price"))
    )
    order_item_rows = order_item_rows.with_columns(
        encode_ids("order", order_item_rows.get_column("order_id")).alias("order_id"),
        encode_ids("product", order_item_rows.get_column("product_id")).alias("item_id"),
    )

    review_rows = reviews_from_raw(raw["reviews"], orders, lines)
    return {
        "users": select_table("users", users),
        "items": select_table("items", items),
        "orders": select_table("orders", order_rows),
        "order_items": select_table("order_items", order_item_rows),
        "reviews": select_table("reviews", review_rows),
    }


def items_from_lines(lines: pl.DataFrame, products: pl.DataFrame, translation: pl.DataFrame) -> pl.DataFrame:
    """One item per product: translated category, median price, main seller, first sale, placeholder title."""
    sold = lines.group_by("product_id").agg(
        pl.col("price").median().round(2).alias("price"),
        pl.col("order_purchase_timestamp").min().alias("created_at"),
    )
    main_seller = (
        lines.group_by("product_id", "seller_id")
        .agg(pl.len().alias("n_lines"))
        .sort("product_id", "n_lines", "seller_id", descending=[False, True, False])
        .group_by("product_id", maintain_order=True)
        .agg(pl.col("seller_id").first())
    )
    items = (
        products.select("product_id", "product_category_name")
        .join(translation, on="product_category_name", how="left", validate="m:1")
        .join(sold, on="product_id", how="inner", validate="1:1")  # an unsold product has no price or first sale
        .join(main_seller, on="product_id", how="inner", validate="1:1")
        .with_columns(
            pl.coalesce("product_category_name_english", "product_category_name", pl.lit(UNKNOWN)).alias("category")
        )
    )
    return items.with_columns(
        encode_ids("product", items.get_column("product_id")).alias("item_id"),
        encode_ids("seller", items.get_column("seller_id")).alias("seller_id"),
        (pl.col("category").str.replace_all("_", " ") + pl.lit(" #") + pl.col("product_id").str.slice(0, 8)).alias(
            "title"
        ),
    )


def reviews_from_raw(reviews: pl.DataFrame, orders: pl.DataFrame, lines: pl.DataFrame) -> pl.DataFrame:
    """Reviews with their order's person and first product; reviews of orders without lines are dropped."""
    first_product = (
        lines.sort("order_id", "order_item_id")
        .group_by("order_id", maintain_order=True)
        .agg(pl.col("product_id").first())
    )
    joined = reviews.join(orders.select("order_id", "customer_unique_id"), on="order_id", how="inner", validate="m:1")
    joined = joined.join(first_product, on="order_id", how="inner", validate="m:1")
    skipped = reviews.height - joined.height
    if skipped:
        log.info("skipped %d of %d Olist reviews: their order is unknown or has no items", skipped, reviews.height)
    review_key = pl.concat_str("review_id", pl.lit("/"), "order_id")
    joined = joined.with_columns(review_key.alias("review_key"))
    return joined.select(
        encode_ids("review", joined.get_column("review_key")).alias("review_id"),
        encode_ids("order", joined.get_column("order_id")).alias("order_id"),
        encode_ids("user", joined.get_column("customer_unique_id")).alias("user_id"),
        encode_ids("product", joined.get_column("product_id")).alias("item_id"),
        pl.col("review_score").cast(pl.Int16).alias("rating"),
        pl.col("review_comment_title").alias("title"),
        pl.col("review_comment_message").alias("body"),
        parse_olist_time("review_creation_date").alias("created_at"),
    )


def delete_ids(conn: Connection, table: str, column: str, ids: Iterable[int]) -> None:
    """Delete the rows of ``table`` whose ``column`` is one of ``ids`` (in chunks of bound parameters)."""
    statement = sa.text(f"DELETE FROM {table} WHERE {column} IN :ids").bindparams(sa.bindparam("ids", expanding=True))
    values = sorted(set(ids))
    for start in range(0, len(values), DELETE_CHUNK):
        conn.execute(statement, {"ids": values[start : start + DELETE_CHUNK]})


def load_olist(path: Path, warehouse_url: str) -> dict[str, int]:
    """Load an Olist slice into the warehouse, replacing the rows of its ids; returns rows written per table."""
    tables = build_olist_tables(read_olist(Path(path)))
    engine = create_warehouse_engine(warehouse_url)
    written: dict[str, int] = {}
    try:
        create_tables(engine)
        log.info("loading Olist from %s into %s", path, mask_url(warehouse_url))
        with engine.begin() as conn:
            for table, frame in tables.items():
                key = OLIST_KEYS[table]
                delete_ids(conn, table, key, frame.get_column(key).to_list())
                written[table] = insert_frame(conn, table, frame)
    finally:
        engine.dispose()
    return written
