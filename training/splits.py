"""The rows of each batch kind a training run uses: training, validation (which chooses each kind's
epoch, ``training/selection.py``) and day-D evaluation (which only reports).

Validation rows come out of the features' ``train`` split, from before day D
(``training.config.ValidationSplit``), so nothing that chooses a model is ever reported on.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import polars as pl

from training.config import ValidationSplit
from training.holdout import validation_rows
from training.data import FeatureTables, source_schemas
from training.impression_rows import ImpressionRows


@dataclass
class ObjectiveFrames:
    """Training, validation and day-D evaluation rows per batch kind. The training impressions, the one
    kind that grows with the whole window, are an :class:`ImpressionRows` (read lazily or in batches,
    never whole). Validation rows (``ValidationSplit``) come out of the ``train`` split and choose each
    kind's epoch; evaluation rows (``eval``: day D, the fixed item holdout) only report."""

    train: dict[str, pl.DataFrame | ImpressionRows]
    validation: dict[str, pl.DataFrame]
    evaluation: dict[str, pl.DataFrame]


def split_objective_frames(tables: FeatureTables, validation: ValidationSplit = ValidationSplit()) -> ObjectiveFrames:
    """Training, validation and eval rows of every kind (labels present; item rows need an image and a
    listed category)."""
    labelled_orders = tables.orders.filter(pl.col("is_fraud").is_not_null())
    labelled_reviews = tables.reviews.filter(pl.col("negative").is_not_null())
    labelled_items = tables.items.filter(pl.col("image").is_not_null() & pl.col("category").is_not_null())
    train = {
        "review": labelled_reviews.filter(pl.col("split") == "train"),
        "item": labelled_items.filter(pl.col("split") == "train"),
        "order": labelled_orders.filter(pl.col("split") == "train"),
    }
    held_out = validation_rows(train, tables.ds, validation)
    schema = source_schemas(tables.manifest)["impressions"]
    first_validation_day = tables.ds - timedelta(days=validation.days)
    impressions = ImpressionRows(tables.features_dir, ("train",), schema, last_day=first_validation_day - timedelta(days=1))
    validation_impressions = ImpressionRows(tables.features_dir, ("train",), schema, first_day=first_validation_day)
    return ObjectiveFrames(
        train={"impression": impressions, **{kind: frame.filter(~held_out[kind]) for kind, frame in train.items()}},
        validation={
            "impression": validation_impressions.lazy().collect(),
            **{kind: frame.filter(held_out[kind]) for kind, frame in train.items()},
        },
        evaluation={
            "impression": tables.impressions_of("eval"),
            **{kind: frame.filter(pl.col("split") == "eval") for kind, frame in (
                ("review", labelled_reviews), ("item", labelled_items), ("order", labelled_orders))},
        },
    )
