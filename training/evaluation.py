"""Evaluation: the one join of predictions to their labels, and the metrics computed on it.

Every consumer of a model's quality goes through ``join_labels``: training's metrics, the gate's
re-evaluation of a saved champion, the LightGBM baseline, the run report's calibration curves and the
demo's oracle comparison. So "AUC of the click objective" means the same rows everywhere: the day-D
evaluation rows (``split == "eval"``) of the features table, with a known label.

Metric rows are ``{task, metric, value, n_rows}`` (``task`` holds the objective: it is the
``model_runs`` column name).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from etl.layout import feature_path, parquet_files, prediction_path

# Probabilities are clipped this far from 0 and 1 before taking logs, so a confident mistake costs
# a large but finite log loss.
LOG_LOSS_EPS = 1e-7


@dataclass(frozen=True)
class LabelJoin:
    """Where a binary objective's predictions and labels live and how they meet."""

    prediction: str  # prediction file (etl.layout.PREDICTIONS)
    features: str  # features table holding the label (etl.layout.FEATURE_TABLES)
    key: str
    label: str  # 0/1 label column of the features table (null: not known yet)
    probability: str  # probability column of the prediction file


LABEL_JOINS: dict[str, LabelJoin] = {
    "click": LabelJoin("impressions_eval", "impressions", "event_id", "clicked", "p_click"),
    "purchase": LabelJoin("impressions_eval", "impressions", "event_id", "converted", "p_purchase"),
    "review": LabelJoin("reviews", "reviews", "review_id", "negative", "p_negative"),
    "fraud": LabelJoin("orders", "orders", "order_id", "is_fraud", "p_fraud"),
}


# --- the join -----------------------------------------------------------------------------------


def eval_labels(objective: str, features: pl.DataFrame) -> pl.DataFrame:
    """[key, label]: the features table's day-D evaluation rows whose label is known."""
    join = LABEL_JOINS[objective]
    return features.filter((pl.col("split") == "eval") & pl.col(join.label).is_not_null()).select(join.key, join.label)


def join_labels(objective: str, predictions: pl.DataFrame, features: pl.DataFrame) -> pl.DataFrame:
    """[key, probability, label]: predictions of the evaluation rows with a known label, in prediction order."""
    join = LABEL_JOINS[objective]
    return predictions.select(join.key, join.probability).join(
        eval_labels(objective, features), on=join.key, how="inner", maintain_order="left"
    )


def read_eval_labels(objective: str, features_dir: Path) -> pl.DataFrame | None:
    """``eval_labels`` of a features directory; None when its table is missing or lacks the label."""
    join = LABEL_JOINS[objective]
    frame = _read_columns(feature_path(features_dir, join.features), [join.key, "split", join.label])
    return None if frame is None else eval_labels(objective, frame)


def read_labelled_predictions(objective: str, model_dir: Path, features_dir: Path) -> pl.DataFrame | None:
    """``join_labels`` of a model directory's prediction file; None when either file is missing."""
    join = LABEL_JOINS[objective]
    predictions = _read_columns(prediction_path(model_dir, join.prediction), [join.key, join.probability])
    labels = read_eval_labels(objective, features_dir)
    if predictions is None or labels is None:
        return None
    return predictions.join(labels, on=join.key, how="inner", maintain_order="left")


def _read_columns(path: Path, columns: list[str]) -> pl.DataFrame | None:
    """``columns`` of a Parquet file or dataset folder; None when it is missing or lacks one."""
    files = parquet_files(path)
    if not files or not set(columns) <= set(pl.read_parquet_schema(files[0])):
        return None
    return pl.read_parquet(files, columns=columns)


# --- metrics ------------------------------------------------------------------------------------


def binary_metrics(y_true: Any, p_pred: Any) -> dict[str, float | None]:
    """ROC AUC, PR AUC (average precision) and log loss; AUCs are None unless both classes occur."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(p_pred, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise ValueError(f"y_true has {y.size} values but p_pred has {p.size}")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("y_true must hold only 0 and 1")
    if y.size == 0:
        return {"auc": None, "pr_auc": None, "log_loss": None}
    p_clipped = np.clip(p, LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS)
    log_loss = float(-np.mean(y * np.log(p_clipped) + (1.0 - y) * np.log1p(-p_clipped)))
    if y.min() == y.max():  # ranking metrics are undefined with one class
        return {"auc": None, "pr_auc": None, "log_loss": log_loss}
    return {
        "auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "log_loss": log_loss,
    }


def metric_rows(task: str, y_true: Any, p_pred: Any) -> list[dict[str, Any]]:
    """binary_metrics as long rows {task, metric, value, n_rows}, the shape of metrics.json."""
    n_rows = int(np.asarray(y_true).size)
    return [
        {"task": task, "metric": name, "value": value, "n_rows": n_rows}
        for name, value in binary_metrics(y_true, p_pred).items()
    ]


def objective_metric_rows(objective: str, predictions: pl.DataFrame, features: pl.DataFrame) -> list[dict[str, Any]]:
    """Metric rows of one binary objective: ``join_labels``, then ``binary_metrics``."""
    join = LABEL_JOINS[objective]
    scored = join_labels(objective, predictions, features)
    return metric_rows(objective, scored.get_column(join.label).to_numpy(), scored.get_column(join.probability).to_numpy())


def scenario_metric_rows(objective: str, predictions: pl.DataFrame, features: pl.DataFrame) -> list[dict[str, Any]]:
    """``objective_metric_rows`` over each scenario's evaluation impressions alone, with a ``scenario``
    key, scenarios sorted by name; rows without a scenario count only in the overall rows. Nothing for
    an objective that is not impression-shaped or features without a ``scenario`` column."""
    join = LABEL_JOINS[objective]
    if join.features != "impressions" or "scenario" not in features.columns:
        return []
    scenarios = features.filter(pl.col("split") == "eval").select(join.key, "scenario")
    scored = join_labels(objective, predictions, features).join(scenarios, on=join.key, how="left")
    rows: list[dict[str, Any]] = []
    for scenario in sorted(scored.get_column("scenario").drop_nulls().unique().to_list()):
        part = scored.filter(pl.col("scenario") == scenario)
        labels, probabilities = part.get_column(join.label).to_numpy(), part.get_column(join.probability).to_numpy()
        rows += [{**row, "scenario": scenario} for row in metric_rows(objective, labels, probabilities)]
    return rows


def labelled_category_predictions(item_predictions: pl.DataFrame) -> pl.DataFrame:
    """The evaluation items with a listed category, with ``correct``: whether the predicted category is
    the listed one (no prediction counts as wrong). The rows of every category accuracy."""
    return item_predictions.filter((pl.col("split") == "eval") & pl.col("listed_category").is_not_null()).with_columns(
        (pl.col("predicted_category") == pl.col("listed_category")).fill_null(False).alias("correct")
    )


def category_metric_rows(item_predictions: pl.DataFrame) -> list[dict[str, Any]]:
    """Accuracy and log loss of the image category on the evaluation items with a listed category.

    ``item_predictions`` carries ``listed_category``, ``predicted_category`` and ``p_listed`` (the
    probability given to the listed category, 0 for a class the model does not know).
    """
    scored = labelled_category_predictions(item_predictions)
    n = scored.height
    accuracy = log_loss = None
    if n:
        accuracy = float(scored.get_column("correct").mean())
        p_listed = np.clip(scored.get_column("p_listed").to_numpy().astype(np.float64), LOG_LOSS_EPS, 1.0)
        log_loss = float(-np.mean(np.log(p_listed)))
    return [
        {"task": "category", "metric": "accuracy", "value": accuracy, "n_rows": n},
        {"task": "category", "metric": "log_loss", "value": log_loss, "n_rows": n},
    ]


def format_metric_rows(rows: Iterable[Mapping[str, Any]]) -> str:
    """Metric rows for a log line: ``task.metric=value``, leaving out missing and NaN values."""
    return " ".join(f"{row['task']}.{row['metric']}={row['value']:.4f}" for row in rows if is_usable(row["value"]))


def is_usable(value: Any) -> bool:
    """A metric value that can be compared or shown: neither missing nor NaN."""
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def category_metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float | None]:
    """Accuracy and log loss of class probabilities [n, K] against 0-based labels (-1 = a class the
    model does not know: always wrong, probability 0 before clipping). Used on tensors in training."""
    n = labels.size
    if n == 0:
        return {"accuracy": None, "log_loss": None}
    known = labels >= 0
    p_true = np.zeros(n, dtype=np.float64)
    p_true[known] = probabilities[np.flatnonzero(known), labels[known]]
    correct = known & (probabilities.argmax(axis=1) == labels)  # [n]
    return {
        "accuracy": float(correct.mean()),
        "log_loss": float(-np.mean(np.log(np.clip(p_true, LOG_LOSS_EPS, 1.0)))),
    }

