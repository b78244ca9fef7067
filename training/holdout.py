"""Which training rows are held out to choose each model's stopping point (``ValidationSplit``).

Torch-free, so the LightGBM fraud baseline stops on the same orders as the network without importing
the network's stack.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import polars as pl

from training.config import ValidationSplit


def validation_rows(train: dict[str, pl.DataFrame], ds: date, validation: ValidationSplit) -> dict[str, pl.Series]:
    """Per kind (review, item, order), which training rows are held out for validation (a bool mask)."""
    reviews, items = train["review"], train["item"]
    first_day = datetime.combine(ds - timedelta(days=validation.days), datetime.min.time())
    # Sparse reviews (a real shop's few a day, or evaluation over many days) leave the last days
    # nearly empty: then the newest min_review_share of them validate instead.
    recent = reviews.select(pl.col("created_at") >= first_day).to_series()
    return {
        "review": recent | newest_rows(reviews, "review_id", validation.min_review_share),
        "item": items.select(pl.col("item_id") % validation.item_modulus == 1).to_series(),
        "order": newest_rows(train["order"], "order_id", validation.order_share),
    }


def newest_rows(frame: pl.DataFrame, key: str, share: float) -> pl.Series:
    """Which rows are the newest ``share`` of them (a bool mask): ranked by (created_at, ``key``), so ties
    split the same way every run. The fraud validation orders of the network and of LightGBM."""
    n_rows = int(round(share * frame.height))
    rank = frame.select(pl.struct("created_at", key).rank("ordinal", descending=True)).to_series()
    return (rank <= n_rows).alias("validation")
