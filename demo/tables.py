"""The demo world's arrays as warehouse rows: frames with exactly the contract columns and types of
each table (``etl.warehouse.TABLE_SCHEMAS``), ids encoding the day, text and images rendered.
"""
from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl

from demo.images import render_item_images
from demo.world import (
    CATEGORIES,
    CHANNELS,
    COUNTRIES,
    ID_BLOCK,
    PAYMENT_METHODS,
    SCENARIOS,
    STATUSES,
    STREAM_IMAGES,
    Items,
    SyntheticConfig,
    Users,
    day_index,
    stream_rng,
)
from etl.warehouse import TABLE_SCHEMAS, select_table


def to_datetime(values: np.ndarray) -> pl.Series:
    """Microseconds since the Unix epoch as a naive UTC Datetime series."""
    return pl.Series(np.asarray(values, dtype=np.int64)).cast(pl.Datetime("us"))


def to_table(table: str, columns: dict[str, object]) -> pl.DataFrame:
    """A frame with exactly the contract columns and types of ``table``, from column arrays."""
    return select_table(table, pl.DataFrame({name: columns[name] for name in TABLE_SCHEMAS[table]}))


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
            "scenario": np.array(SCENARIOS, dtype=object)[s["scenario"][row]].tolist(),
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
