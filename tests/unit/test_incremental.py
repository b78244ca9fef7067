"""Incremental nights: which training rows a warm-started network sees."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import polars as pl
import pytest

from training.incremental import select_incremental_rows


def frames(n_days: int = 10, per_day: int = 200) -> dict[str, pl.DataFrame]:
    """Training rows of every kind over ``n_days`` days; orders end 5 days earlier (maturity)."""
    first = date(2026, 1, 1)
    days = [first + timedelta(days=k) for k in range(n_days) for _ in range(per_day)]
    times = [datetime(d.year, d.month, d.day, 12) for d in days]
    return {
        "impression": pl.DataFrame({"event_id": range(len(days)), "event_date": days}),
        "review": pl.DataFrame({"review_id": range(len(days)), "created_at": times}),
        "item": pl.DataFrame({"item_id": range(50)}),
        "order": pl.DataFrame({"order_id": range(len(days) - 5 * per_day), "created_at": times[: len(days) - 5 * per_day]}),
    }


def test_the_newest_days_are_kept_whole_and_older_rows_are_sampled() -> None:
    train = frames()
    selected, report = select_incremental_rows(train, recent_days=2, replay_fraction=0.25, seed=7)

    impressions = selected["impression"]
    recent = impressions.filter(pl.col("event_date") >= date(2026, 1, 9))
    assert recent.height == 400  # days 9 and 10, all of them
    older = impressions.height - recent.height
    assert 0.15 * 1600 < older < 0.35 * 1600  # a quarter of the 1,600 older rows, give or take
    assert impressions["event_id"].is_sorted()  # row order kept
    assert report["impression"] == {"rows": 2000, "recent": 400, "replayed": older, "first_recent_day": "2026-01-09"}

    # Orders count their newest days back from their own newest row (mature orders end before D).
    assert report["order"]["first_recent_day"] == "2026-01-04" and report["order"]["recent"] == 400
    assert selected["item"].height == 50 and report["item"]["replayed"] == 0  # the catalogue, kept whole


def test_the_selection_is_seeded() -> None:
    train = frames()
    first, _ = select_incremental_rows(train, 1, 0.1, seed=7)
    again, _ = select_incremental_rows(train, 1, 0.1, seed=7)
    other, _ = select_incremental_rows(train, 1, 0.1, seed=8)
    assert all(first[kind].equals(again[kind]) for kind in train)
    assert not first["impression"].equals(other["impression"])


def test_no_replay_and_full_replay_are_the_bounds() -> None:
    train = frames()
    none, _ = select_incremental_rows(train, 3, 0.0, seed=7)
    every, _ = select_incremental_rows(train, 3, 1.0, seed=7)
    assert none["impression"]["event_date"].min() == date(2026, 1, 8)
    assert every["impression"].equals(train["impression"])


@pytest.mark.parametrize(("recent_days", "replay_fraction"), [(0, 0.1), (1, -0.1), (1, 1.5)])
def test_settings_out_of_range_are_named(recent_days: int, replay_fraction: float) -> None:
    with pytest.raises(ValueError, match="recent_days|replay_fraction"):
        select_incremental_rows(frames(), recent_days, replay_fraction, seed=7)
