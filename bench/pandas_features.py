"""The peer of ``etl.features.add_trailing_sums``: the same trailing-window rule written the way a
pandas user would, a daily calendar per key and a rolling sum.

Rule: ``{prefix}_{value}_{w}d`` = the sum of ``daily[value]`` over the days [as_of - w, as_of) of
the pair's key; the day ``as_of`` itself is never included, and a key without activity gets 0.
"""
from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from etl.features import TRAILING_DAYS


def add_trailing_sums_pandas(
    pairs: pd.DataFrame,
    daily: pd.DataFrame,
    keys: Sequence[str],
    values: Sequence[str],
    prefix: str,
    windows: Sequence[int] = TRAILING_DAYS,
) -> pd.DataFrame:
    """``pairs`` (``keys`` + ``as_of``) with ``{prefix}_{value}_{w}d`` added, rows in their input order."""
    keys = list(keys)
    day = pd.to_datetime(daily["day"])
    as_of = pd.to_datetime(pairs["as_of"])
    totals = daily.assign(day=day).groupby([*keys, "day"])[list(values)].sum()
    # One row per calendar day from the first day either frame names to the last, so that days
    # without activity count as 0 and a rolling window of w rows is exactly w days.
    calendar = pd.date_range(min(day.min(), as_of.min()), max(day.max(), as_of.max()), freq="D", name="as_of")
    result = pairs.assign(_as_of=as_of.astype(calendar.dtype))
    for value in values:
        by_day = totals[value].unstack(keys, fill_value=0.0).reindex(calendar, fill_value=0.0)  # [days, keys]
        for window in windows:
            # rolling(w) on day d sums days d-w+1..d; shifting one day gives [d-w, d).
            trailing = by_day.rolling(window, min_periods=1).sum().shift(1, fill_value=0.0)
            column = f"{prefix}_{value}_{window}d"
            long = trailing.stack(list(range(len(keys)))).rename(column).reset_index()
            long.columns = ["_as_of", *keys, column]
            result = result.merge(long, on=[*keys, "_as_of"], how="left")
            result[column] = result[column].fillna(0.0)
    return result.drop(columns="_as_of").set_axis(pairs.index)
