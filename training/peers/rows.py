"""The network's rows for a peer, in memory, and the prediction files a peer writes.

``read_peer_rows`` splits a features directory exactly as training does (``split_objective_frames``
with the same ``ValidationSplit``), so a peer stops on the rows the network stops on and is scored
on the rows the network is scored on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from etl.io import write_parquet_atomically
from etl.layout import prediction_path
from training.config import ValidationSplit
from training.data import read_feature_tables
from training.splits import split_objective_frames

IMPRESSION_CATEGORICAL = ("user_id", "item_id", "category", "scenario")  # the network's embedded impression inputs
REVIEW_CATEGORICAL = ("user_id", "item_id", "category")


@dataclass(frozen=True)
class PeerRows:
    """Training, validation and evaluation rows per batch kind (impression, review, item, order)."""

    train: dict[str, pl.DataFrame]
    validation: dict[str, pl.DataFrame]
    evaluation: dict[str, pl.DataFrame]
    impression_dense: list[str]


def read_peer_rows(features_dir: Path, validation: ValidationSplit = ValidationSplit()) -> PeerRows:
    """The rows ``train_multitask`` trains, validates and reports on, all in memory."""
    tables = read_feature_tables(Path(features_dir), impression_splits=("eval",))
    frames = split_objective_frames(tables, validation)
    train = {kind: frame if isinstance(frame, pl.DataFrame) else frame.lazy().collect() for kind, frame in frames.train.items()}
    return PeerRows(
        train=train,
        validation=dict(frames.validation),
        evaluation=dict(frames.evaluation),
        impression_dense=list(tables.manifest.get("impression_dense", [])),
    )


def category_codes(train: pl.DataFrame, frame: pl.DataFrame, column: str) -> np.ndarray:
    """``frame[column]`` as float codes 0..n-1 of the training rows' sorted values; NaN when unseen or null
    (LightGBM's "missing" category; torch peers add 1 and read NaN as row 0)."""
    values = sorted(train.get_column(column).cast(pl.String).drop_nulls().unique().to_list())
    lookup = pl.DataFrame({column: values, "code": np.arange(len(values), dtype=np.float64)})
    codes = frame.select(pl.col(column).cast(pl.String)).join(lookup, on=column, how="left", maintain_order="left")
    return codes.get_column("code").fill_null(np.nan).to_numpy()


def dense_matrix(frame: pl.DataFrame, columns: list[str]) -> np.ndarray:
    """[rows, columns] float64 with nulls as NaN."""
    if not columns:
        return np.zeros((frame.height, 0))
    return frame.select(pl.col(column).cast(pl.Float64).fill_null(np.nan) for column in columns).to_numpy()


def write_binary_predictions(model_dir: Path, name: str, frame: pl.DataFrame, key: str, columns: dict[str, np.ndarray]) -> None:
    """A prediction file of ``frame``'s ``key`` and probability ``columns``, as the network writes it."""
    predictions = frame.select(key).with_columns(pl.Series(column, values, dtype=pl.Float64) for column, values in columns.items())
    if "split" in frame.columns and name in ("orders", "reviews"):
        predictions = predictions.with_columns(frame.get_column("split"))
    write_parquet_atomically(predictions, prediction_path(model_dir, name))


def write_category_predictions(model_dir: Path, items: pl.DataFrame, classes: list[str], probabilities: np.ndarray) -> None:
    """The items prediction file (``predict.PREDICTION_SCHEMAS['items']``) from class probabilities [rows, classes]."""
    best = probabilities.argmax(axis=1)
    listed = items.get_column("category").cast(pl.String)
    predictions = items.select("item_id", "split").with_columns(
        listed.alias("listed_category"),
        pl.Series("predicted_category", [classes[index] for index in best], dtype=pl.String),
        pl.Series("confidence", probabilities.max(axis=1), dtype=pl.Float64),
    )
    write_parquet_atomically(predictions, prediction_path(model_dir, "items"))
