"""LightGBM per objective on the network's input columns: the peer a tabular team would pick.

- click and purchase: one binary model each on the impression's dense features and its user, item,
  category and scenario as LightGBM categoricals (purchase = clicked and converted, over every
  impression, the quantity the network's ESMM head predicts);
- review: the text as TF-IDF word and bigram weights (a sparse matrix) beside the categoricals;
- category: the image's pixels at the network's image size, one multiclass model.

Each stops early on the validation rows (never day D) and writes the network's prediction files.
Fraud's LightGBM is the production baseline (``training/fraud_lgbm.py``), not repeated here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl
import scipy.sparse as sp

from training.config import NetworkConfig
from training.encoders import decode_images
from training.peers.rows import (
    IMPRESSION_CATEGORICAL,
    REVIEW_CATEGORICAL,
    PeerRows,
    category_codes,
    dense_matrix,
    write_binary_predictions,
    write_category_predictions,
)
from training.peers.tfidf import fit_vectorizer


@dataclass(frozen=True)
class GbdtConfig:
    """LightGBM settings shared by every objective; early stopping on the validation rows picks the trees."""

    seed: int = 7
    num_boost_round: int = 1000
    early_stopping_rounds: int = 30
    no_validation_rounds: int = 100  # trees grown when there is nothing to stop on
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_data_in_leaf: int = 20
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    bagging_freq: int = 1
    lambda_l2: float = 1.0
    cat_smooth: float = 10.0
    # One thread: reproducible, and on a shared or busy machine LightGBM's OpenMP threads spin-wait
    # (measured here: a 3.5 s review model took 184 s beside another training run with all cores).
    num_threads: int = 1
    category_feature_fraction: float = 0.3  # pixels are many and redundant: a third of them per tree, 3x faster
    category_learning_rate: float = 0.1  # ten trees per round (one per class): fewer rounds


def build_params(config: GbdtConfig, objective: str, num_class: int = 1) -> dict[str, Any]:
    """LightGBM parameters for a binary or multiclass objective."""
    params = {
        "objective": objective,
        "learning_rate": config.learning_rate,
        "num_leaves": config.num_leaves,
        "min_data_in_leaf": config.min_data_in_leaf,
        "feature_fraction": config.feature_fraction,
        "bagging_fraction": config.bagging_fraction,
        "bagging_freq": config.bagging_freq,
        "lambda_l2": config.lambda_l2,
        "cat_smooth": config.cat_smooth,
        "seed": config.seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": config.num_threads,
        "verbosity": -1,
    }
    return params | ({"num_class": num_class} if objective == "multiclass" else {})


def fit_booster(
    config: GbdtConfig,
    params: dict[str, Any],
    train: tuple[Any, np.ndarray],
    validation: tuple[Any, np.ndarray],
    categorical: list[int] | str = "auto",
) -> lgb.Booster:
    """Train on (matrix, label), stopping when the validation loss has not improved for a while
    (``no_validation_rounds`` trees when there are no validation rows)."""
    train_set = lgb.Dataset(train[0], label=train[1], categorical_feature=categorical, free_raw_data=True)
    if validation[1].size == 0:
        return lgb.train(params, train_set, num_boost_round=config.no_validation_rounds)
    valid_set = lgb.Dataset(validation[0], label=validation[1], reference=train_set)
    return lgb.train(
        params,
        train_set,
        num_boost_round=config.num_boost_round,
        valid_sets=[valid_set],
        callbacks=[lgb.early_stopping(config.early_stopping_rounds, first_metric_only=True, verbose=False)],
    )


def impression_matrix(train: pl.DataFrame, frame: pl.DataFrame, dense: list[str]) -> np.ndarray:
    """[rows, dense + categorical]: the dense features, then the categorical codes of the training rows."""
    codes = [category_codes(train, frame, column)[:, None] for column in IMPRESSION_CATEGORICAL if column in frame.columns]
    return np.hstack([dense_matrix(frame, dense), *codes])


def train_impression_gbdt(rows: PeerRows, model_dir: Path, config: GbdtConfig = GbdtConfig()) -> None:
    """Click and purchase LightGBM models; writes ``impressions_eval`` (p_click, p_purchase)."""
    train, validation, evaluation = (split["impression"] for split in (rows.train, rows.validation, rows.evaluation))
    dense = rows.impression_dense
    n_categorical = sum(column in train.columns for column in IMPRESSION_CATEGORICAL)
    categorical = list(range(len(dense), len(dense) + n_categorical))
    matrices = [impression_matrix(train, frame, dense) for frame in (train, validation, evaluation)]
    probabilities = {}
    for column, label in (("p_click", "clicked"), ("p_purchase", "converted")):
        labels = [frame.get_column(label).cast(pl.Float64).to_numpy() for frame in (train, validation)]
        booster = fit_booster(
            config, build_params(config, "binary"), (matrices[0], labels[0]), (matrices[1], labels[1]), categorical
        )
        probabilities[column] = booster.predict(matrices[2], num_iteration=booster.best_iteration)
    write_binary_predictions(model_dir, "impressions_eval", evaluation, "event_id", probabilities)


def train_review_gbdt(rows: PeerRows, model_dir: Path, config: GbdtConfig = GbdtConfig()) -> None:
    """Review sentiment on TF-IDF text weights and the categoricals; writes ``reviews`` (p_negative)."""
    train, validation, evaluation = (split["review"] for split in (rows.train, rows.validation, rows.evaluation))
    vectorizer = fit_vectorizer(train)

    def matrix(frame: pl.DataFrame) -> sp.csr_matrix:
        codes = np.column_stack([category_codes(train, frame, column) for column in REVIEW_CATEGORICAL])
        return sp.hstack([sp.csr_matrix(codes), vectorizer.transform(frame.get_column("text").fill_null("").to_list())]).tocsr()

    labels = [frame.get_column("negative").cast(pl.Float64).to_numpy() for frame in (train, validation)]
    booster = fit_booster(
        config,
        build_params(config, "binary"),
        (matrix(train), labels[0]),
        (matrix(validation), labels[1]),
        list(range(len(REVIEW_CATEGORICAL))),
    )
    p_negative = booster.predict(matrix(evaluation), num_iteration=booster.best_iteration)
    write_binary_predictions(model_dir, "reviews", evaluation, "review_id", {"p_negative": p_negative})


def image_pixels(items: pl.DataFrame, image_size: int) -> np.ndarray:
    """[rows, 3 * size * size] float32 pixels of the decoded images (blank when undecodable)."""
    images, _ = decode_images(items.get_column("image").to_list(), image_size)
    return images.reshape(items.height, -1).numpy().astype(np.float32)


def train_category_gbdt(
    rows: PeerRows, model_dir: Path, config: GbdtConfig = GbdtConfig(), image_size: int = NetworkConfig.image_size
) -> None:
    """The category from image pixels (multiclass); writes ``items``."""
    train, validation, evaluation = (split["item"] for split in (rows.train, rows.validation, rows.evaluation))
    classes = sorted(train.get_column("category").unique().to_list())
    index = {name: position for position, name in enumerate(classes)}
    validation = validation.filter(pl.col("category").is_in(classes))  # a class never trained on cannot be stopped on

    def labels(frame: pl.DataFrame) -> np.ndarray:
        return np.array([index[value] for value in frame.get_column("category").to_list()], dtype=np.float64)

    params = build_params(config, "multiclass", len(classes)) | {
        "feature_fraction": config.category_feature_fraction, "learning_rate": config.category_learning_rate,
    }  # fmt: skip
    booster = fit_booster(
        config,
        params,
        (image_pixels(train, image_size), labels(train)),
        (image_pixels(validation, image_size), labels(validation)),
    )
    probabilities = booster.predict(image_pixels(evaluation, image_size), num_iteration=booster.best_iteration)
    write_category_predictions(model_dir, evaluation, classes, np.asarray(probabilities).reshape(evaluation.height, -1))
