"""The user's behaviour sequence: the items (and their listed categories) a user clicked before an
event, newest first, the input of the network's target attention (DIN, Zhou et al. KDD 2018).

Point in time: a row's sequence holds only clicks strictly before its time (``as_of_time``), and
only those of the ``FEATURE_HISTORY_DAYS`` days before its day, so the sequence of a day's row is
the same whichever night builds it, as long as those days of history are loaded (the extract keeps
them: ``etl.extract``). Vectorised: two as-of joins count each row's clicks before its time and
before its history starts, and a slice of the user's click list (in time order) takes the newest
``length`` of those in between.
"""
from __future__ import annotations

from datetime import timedelta

import polars as pl

from etl.contract import FEATURE_HISTORY_DAYS

SEQUENCE_COLUMNS = {"recent_items": pl.List(pl.Int64), "recent_categories": pl.List(pl.String)}


def add_recent_clicks(rows: pl.LazyFrame, clicks: pl.LazyFrame, items: pl.LazyFrame, length: int) -> pl.LazyFrame:
    """``rows`` (with ``user_id`` and ``as_of_time``, a naive UTC datetime) plus ``recent_items`` and
    ``recent_categories``: the user's newest ``length`` clicks before ``as_of_time`` and within the
    ``FEATURE_HISTORY_DAYS`` days before its day (empty lists when there are none)."""
    clicked = (
        clicks.filter(pl.col("event_type") == "click")
        .select("user_id", "item_id", pl.col("event_time").alias("clicked_at"))
        .join(items.select("item_id", "category"), on="item_id", how="left")
        .sort("user_id", "clicked_at", "item_id")
        .with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int64).over("user_id").alias("clicks_so_far"))
    )
    sequences = clicked.group_by("user_id").agg(
        pl.col("item_id").alias("clicked_items"), pl.col("category").alias("clicked_categories")
    )  # in time order: the frame is sorted and group_by keeps the order within a group
    marks = clicked.select("user_id", "clicked_at", "clicks_so_far").sort("clicked_at")

    def clicks_before(time: pl.Expr, name: str) -> pl.LazyFrame:
        """Per row: how many of the user's clicks come strictly before ``time``."""
        keyed = rows.select("_row", "user_id", time.alias("_time")).sort("_time")
        return keyed.join_asof(
            marks, left_on="_time", right_on="clicked_at", by="user_id", strategy="backward", allow_exact_matches=False,
            check_sortedness=False,  # both sides are sorted by time above, so within every user too
        ).select("_row", pl.col("clicks_so_far").fill_null(0).alias(name))

    rows = rows.with_row_index("_row")
    history_start = pl.col("as_of_time").dt.truncate("1d") - timedelta(days=FEATURE_HISTORY_DAYS)
    counted = (
        rows.join(clicks_before(pl.col("as_of_time"), "_before"), on="_row", how="left")
        .join(clicks_before(history_start, "_too_old"), on="_row", how="left")
        .join(sequences, on="user_id", how="left")
        .with_columns(pl.min_horizontal(pl.col("_before") - pl.col("_too_old"), pl.lit(length)).alias("_take"))
    )
    newest_first = lambda column: (  # noqa: E731
        pl.col(column).list.slice(pl.col("_before") - pl.col("_take"), pl.col("_take")).list.reverse().fill_null([])
    )
    return (
        counted.with_columns(
            newest_first("clicked_items").alias("recent_items"), newest_first("clicked_categories").alias("recent_categories")
        )
        .sort("_row")
        .drop("_row", "_before", "_too_old", "_take", "clicked_items", "clicked_categories")
    )
