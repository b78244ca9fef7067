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
from datetime import timedelta

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


def select_incremental_rows(
    train: dict[str, pl.DataFrame], recent_days: int, replay_fraction: float, seed: int
) -> tuple[dict[str, pl.DataFrame], dict[str, dict[str, object]]]:
    """Each kind's newest ``recent_days`` days of training rows plus a ``replay_fraction`` sample of the
    older ones (row order kept); and, per kind, what was kept (:class:`KindSelection` as a dict)."""
    if recent_days < 1:
        raise ValueError(f"recent_days must be >= 1, got {recent_days}")
    if not 0.0 <= replay_fraction <= 1.0:
        raise ValueError(f"replay_fraction must be within [0, 1], got {replay_fraction}")
    selected: dict[str, pl.DataFrame] = {}
    report: dict[str, dict[str, object]] = {}
    for kind, frame in train.items():
        column = DATE_COLUMNS.get(kind)
        if column is None or frame.height == 0:
            selected[kind] = frame
            report[kind] = asdict(KindSelection(frame.height, frame.height, 0, None))
            continue
        day = frame.get_column(column).cast(pl.Date)  # [rows]
        first_recent = day.max() - timedelta(days=recent_days - 1)
        recent = (day >= first_recent).fill_null(False).to_numpy()  # [rows] bool
        # One generator per kind, seeded by (seed, kind), so adding a kind never shifts another's draw.
        draw = np.random.default_rng([seed, KINDS.index(kind)]).random(frame.height) < replay_fraction  # [rows]
        replayed = draw & ~recent  # [rows]
        selected[kind] = frame.filter(pl.Series(recent | replayed))
        report[kind] = asdict(
            KindSelection(frame.height, int(recent.sum()), int(replayed.sum()), first_recent.isoformat())
        )
    return selected, report
