"""Calibration of the models that scored day D, on their day-D evaluation predictions.

The rows are those of every other quality number: ``training.evaluation.read_labelled_predictions``
joins a model directory's predictions to the labels of the evaluation rows in ``runs/<D>/features``.
The network is drawn for every binary objective, the LightGBM baseline next to it for fraud.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from etl.contract import BINARY_OBJECTIVES, FRAUD_LGBM, MULTITASK
from training.evaluation import LABEL_JOINS, read_labelled_predictions

MAX_CALIBRATION_BINS = 10
MIN_ROWS_PER_BIN = 10
# The models drawn per objective, with their legend labels.
MODEL_LABELS = {MULTITASK: "network", FRAUD_LGBM: "LightGBM"}
CALIBRATED_MODELS = {objective: (MULTITASK, FRAUD_LGBM) if objective == "fraud" else (MULTITASK,)
                     for objective in BINARY_OBJECTIVES}


@dataclass
class CalibrationCurve:
    label: str
    mean_predicted: np.ndarray
    fraction_positive: np.ndarray
    n_rows: int
    n_positive: int


def equal_count_calibration(labels: np.ndarray, probabilities: np.ndarray, max_bins: int = MAX_CALIBRATION_BINS) -> tuple[np.ndarray, np.ndarray]:
    """(mean predicted, observed positive rate) per bin of (about) equal row counts, sorted by score."""
    # Not sklearn's calibration_curve(strategy="quantile"): its quantile edges merge bins when many
    # scores tie (most fraud scores sit near 0), while splitting the sorted rows keeps counts equal.
    order = np.argsort(probabilities, kind="stable")
    n_bins = max(1, min(max_bins, labels.size // MIN_ROWS_PER_BIN))
    chunks = [chunk for chunk in np.array_split(order, n_bins) if chunk.size]
    return (np.array([probabilities[c].mean() for c in chunks]), np.array([labels[c].mean() for c in chunks]))


def calibration_inputs(
    objective: str, features_dir: Path, dirs: Mapping[str, Path]
) -> tuple[list[tuple[str, np.ndarray, np.ndarray]], str | None]:
    """[(model label, labels, probabilities)] of one binary objective's day-D eval rows, or a reason for none.

    ``dirs``: model name -> the directory whose ``predictions/`` scored the day. Rows without a
    probability (null or NaN) are left out.
    """
    join = LABEL_JOINS[objective]
    out: list[tuple[str, np.ndarray, np.ndarray]] = []
    for name in CALIBRATED_MODELS[objective]:
        model_dir = dirs.get(name)
        scored = read_labelled_predictions(objective, model_dir, features_dir) if model_dir else None
        if scored is None:
            continue
        scored = scored.filter(pl.col(join.probability).is_not_null() & ~pl.col(join.probability).is_nan())
        if scored.height:
            out.append((MODEL_LABELS[name], scored[join.label].cast(pl.Float64).to_numpy(),
                        scored[join.probability].cast(pl.Float64).to_numpy()))
    if out:
        return out, None
    if dirs.get(MULTITASK) is None and objective != "fraud":
        return out, "the predictions of the model that scored the day were not found under the run directory"
    return out, "no labelled day-D evaluation rows with predictions"


def calibration_curves(
    objectives: Sequence[str],
    features_dir: Path,
    dirs: Mapping[str, Path],
    objective_dirs: Mapping[str, Mapping[str, Path]] | None = None,
) -> tuple[dict[str, list[CalibrationCurve]], dict[str, str]]:
    """Curves per binary objective of ``objectives``, and a note per objective left without one.
    ``objective_dirs`` (objective -> model name -> directory) overrides ``dirs`` where the gate kept
    another model serving an objective."""
    curves: dict[str, list[CalibrationCurve]] = {}
    notes: dict[str, str] = {}
    for objective in BINARY_OBJECTIVES:
        if objective not in objectives:
            continue
        inputs, reason = calibration_inputs(objective, features_dir, {**dirs, **(objective_dirs or {}).get(objective, {})})
        if not inputs:
            notes[objective] = reason or "no rows"
            continue
        curves[objective] = []
        for label, y, p in inputs:
            mean_predicted, fraction_positive = equal_count_calibration(y, p)
            curves[objective].append(CalibrationCurve(label, mean_predicted, fraction_positive, int(y.size), int(y.sum())))
    return curves, notes
