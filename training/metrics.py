"""Evaluation metrics, the training summary handed to Airflow, and deterministic model versions."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

# Probabilities are clipped this far from 0 and 1 before taking logs, so a confident mistake costs
# a large but finite log loss.
LOG_LOSS_EPS = 1e-7


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


def compute_model_version(prefix: str, ds: date, config_json: str, input_paths: Iterable[Path]) -> str:
    """``{prefix}-{YYYYMMDD}-{hash}``: the hash covers the config and the bytes of every input file."""
    # Files are hashed in the order given, by name and bytes only: the same inputs in another
    # directory (another checkout, another run folder) give the same version.
    digest = hashlib.sha256(config_json.encode())
    for path in map(Path, input_paths):
        digest.update(f"{path.name}\0{path.stat().st_size}\0".encode())  # unambiguous file boundaries
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return f"{prefix}-{ds:%Y%m%d}-{digest.hexdigest()[:10]}"


@dataclass
class TrainingSummary:
    """What a training run returns: small and JSON-able, fit for an Airflow XCom."""

    model_name: str
    model_version: str
    output_dir: Path
    metrics: list[dict[str, Any]] = field(default_factory=list)  # rows {task, metric, value, n_rows}
    device: str = "cpu"
    n_train: dict[str, int] = field(default_factory=dict)  # training rows per task
    wall_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only (paths as strings, NaN as None)."""
        summary = asdict(self)
        summary["output_dir"] = str(self.output_dir)
        summary["metrics"] = [
            {**row, "value": None if row["value"] is None or math.isnan(row["value"]) else row["value"]}
            for row in self.metrics
        ]
        summary["wall_s"] = round(self.wall_s, 3)
        return summary

    def metric(self, task: str, metric: str) -> float | None:
        """The value of one metric row, or None when absent."""
        for row in self.metrics:
            if row["task"] == task and row["metric"] == metric:
                return row["value"]
        return None


def write_json(path: Path, payload: Any) -> None:
    """Write JSON atomically enough for one writer: to a temporary name, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, allow_nan=False) + "\n")  # strict JSON
    tmp.replace(path)
