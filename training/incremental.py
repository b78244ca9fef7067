"""Incremental nights: a warm-started network trains on the newest days plus a replay sample of older rows.

Full-window retraining passes over every training row of the window each night, so its cost follows
the window (28 days by default), not the new day. A network that starts from the champion's weights
already knows the older days; it needs the newest ones, and a sample of the older ones so it does
not forget them (replay, the standard remedy for catastrophic forgetting in continual learning).

Per batch kind, the newest ``recent_days`` days are counted back from that kind's newest training
row, not from day D: fraud training orders end ``maturity_days`` before D (their labels must have
matured), so "the newest days" of orders are the newest mature ones. Item images have no date (they
are the catalogue, not events) and are kept whole. The replay sample is a seeded Bernoulli draw per
older row, so the same data and seed select the same rows.

Vocabularies still come from the whole window (``training.train.build_model``): an id seen only in
the older days keeps the row the champion learnt for it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, timedelta

import numpy as np
import polars as pl

from training.data import KINDS

DATE_COLUMNS = {"impression": "event_date", "review": "created_at", "order": "created_at"}  # item rows: kept whole


@dataclass(frozen=True)
class KindSelection:
    """What an incremental night kept of one batch kind's training rows."""

    rows: int  # training rows in the window
    recent: int  # rows of the newest days, all kept
    replayed: int  # older rows drawn into the replay sample
    first_recent_day: str | None  # ISO date; None when the kind is kept whole


class ReplaySelection:
    """The rows an incremental night keeps of one dated batch kind, chosen a frame (or a batch) at a time.

    Called on the kind's training rows in order, whole or in consecutive batches: the replay draw
    takes one number per row from one generator seeded by (seed, kind), so the same rows are kept
    however they are cut (``training.impression_rows`` reads impressions a Parquet batch at a time).
    """

    def __init__(self, kind: str, column: str, first_recent: date, replay_fraction: float, seed: int) -> None:
        self.kind, self.column, self.first_recent, self.replay_fraction = kind, column, first_recent, replay_fraction
        # One generator per kind, seeded by (seed, kind), so adding a kind never shifts another's draw.
        self.generator = np.random.default_rng([seed, KINDS.index(kind)])
        self.rows = self.recent = self.replayed = 0

    def __call__(self, frame: pl.DataFrame) -> pl.DataFrame:
        """The rows of ``frame`` (the next rows of the kind, in order) that are recent or drawn for replay."""
        recent = (frame.get_column(self.column).cast(pl.Date) >= self.first_recent).fill_null(False).to_numpy()  # [rows]
        replayed = (self.generator.random(frame.height) < self.replay_fraction) & ~recent  # [rows]
        self.rows += frame.height
        self.recent += int(recent.sum())
        self.replayed += int(replayed.sum())
        return frame.filter(pl.Series(recent | replayed))

    def report(self) -> dict[str, object]:
        """What was kept so far (:class:`KindSelection` as a dict)."""
        return asdict(KindSelection(self.rows, self.recent, self.replayed, self.first_recent.isoformat()))


def plan_replay(
    frame: pl.DataFrame | pl.LazyFrame, kind: str, recent_days: int, replay_fraction: float, seed: int
) -> ReplaySelection | None:
    """The selection of ``kind``'s training rows on an incremental night; None when the kind is kept
    whole (no date, or no rows). A lazy frame is read for its newest day only."""
    if recent_days < 1:
        raise ValueError(f"recent_days must be >= 1, got {recent_days}")
    if not 0.0 <= replay_fraction <= 1.0:
        raise ValueError(f"replay_fraction must be within [0, 1], got {replay_fraction}")
    column = DATE_COLUMNS.get(kind)
    if column is None:
        return None
    newest = frame.lazy().select(pl.col(column).cast(pl.Date).max()).collect().item()
    if newest is None:
        return None
    return ReplaySelection(kind, column, newest - timedelta(days=recent_days - 1), replay_fraction, seed)


def kept_whole(rows: int) -> dict[str, object]:
    """The report of a kind an incremental night keeps whole."""
    return asdict(KindSelection(rows, rows, 0, None))


def select_incremental_rows(
    train: dict[str, pl.DataFrame], recent_days: int, replay_fraction: float, seed: int
) -> tuple[dict[str, pl.DataFrame], dict[str, dict[str, object]]]:
    """Each kind's newest ``recent_days`` days of training rows plus a ``replay_fraction`` sample of the
    older ones (row order kept); and, per kind, what was kept (:class:`KindSelection` as a dict)."""
    selected: dict[str, pl.DataFrame] = {}
    report: dict[str, dict[str, object]] = {}
    for kind, frame in train.items():
        selection = plan_replay(frame, kind, recent_days, replay_fraction, seed)
        if selection is None:
            selected[kind], report[kind] = frame, kept_whole(frame.height)
        else:
            selected[kind], report[kind] = selection(frame), selection.report()
    return selected, report
