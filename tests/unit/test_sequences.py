"""The behaviour sequence (etl.sequences): the user's newest clicks strictly before a row's time, within
the feature history, newest first."""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

from etl.contract import FEATURE_HISTORY_DAYS
from etl.sequences import add_recent_clicks

CLICKS = pl.LazyFrame({
    "user_id": [1, 1, 1, 1, 2],
    "item_id": [10, 11, 12, 13, 20],
    "event_type": ["click", "impression", "click", "click", "click"],
    "event_time": [datetime(2026, 1, 1, 8), datetime(2026, 1, 5, 9), datetime(2026, 1, 5, 10),
                   datetime(2026, 2, 10, 11), datetime(2026, 1, 5, 10)],
})  # fmt: skip
ITEMS = pl.LazyFrame({"item_id": [10, 11, 12, 13, 20], "category": ["a", "b", "c", "d", "e"]})


def sequences(times: list[tuple[int, datetime]], length: int = 2) -> list[tuple[list[int], list[str]]]:
    rows = pl.LazyFrame({"user_id": [user for user, _ in times], "as_of_time": [time for _, time in times]})
    frame = add_recent_clicks(rows, CLICKS, ITEMS, length).collect()
    assert frame.select("user_id", "as_of_time").rows() == times  # the rows, in their order
    return list(zip(frame["recent_items"].to_list(), frame["recent_categories"].to_list(), strict=True))


def test_only_clicks_strictly_before_the_row_newest_first_at_most_length() -> None:
    assert sequences([
        (1, datetime(2026, 1, 5, 10)),  # the click at 10:00 is the row's own time: not before it
        (1, datetime(2026, 1, 5, 11)),
        (2, datetime(2026, 1, 5, 10)),
        (3, datetime(2026, 1, 5)),  # a user with no clicks
    ]) == [([10], ["a"]), ([12, 10], ["c", "a"]), ([], []), ([], [])]
    assert sequences([(1, datetime(2026, 3, 1))], length=1) == [([13], ["d"])]  # the newest of three
    assert sequences([(1, datetime(2026, 3, 1))], length=5) == [([13], ["d"])]  # ...Jan's are out of its history


def test_the_history_starts_feature_history_days_before_the_rows_day() -> None:
    start = datetime(2026, 1, 1)  # the first click's day
    inside = start + timedelta(days=FEATURE_HISTORY_DAYS, hours=23)
    outside = start + timedelta(days=FEATURE_HISTORY_DAYS + 1)
    assert sequences([(1, inside), (1, outside)], length=5) == [([12, 10], ["c", "a"]), ([12], ["c"])]
