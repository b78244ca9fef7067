"""binary_metrics on arrays small enough to check by hand; model versions and the summary shape."""

from __future__ import annotations

import json
import math
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from training.evaluation import binary_metrics, metric_rows
from training.summary import TrainingSummary, compute_model_version


def test_binary_metrics_on_hand_checked_example() -> None:
    # Pairs (positive, negative) ranked right: (0.35 > 0.1), (0.8 > 0.1), (0.8 > 0.4); wrong: (0.35 < 0.4) -> 3/4.
    # Ranked by score: 0.8 (pos), 0.4 (neg), 0.35 (pos), 0.1 (neg): AP = 0.5 * 1 + 0.5 * 2/3.
    y = [0, 0, 1, 1]
    p = [0.1, 0.4, 0.35, 0.8]
    result = binary_metrics(y, p)
    assert result["auc"] == pytest.approx(0.75)
    assert result["pr_auc"] == pytest.approx(0.5 + 0.5 * 2 / 3)
    expected_log_loss = -(math.log(0.9) + math.log(0.6) + math.log(0.35) + math.log(0.8)) / 4
    assert result["log_loss"] == pytest.approx(expected_log_loss)


def test_binary_metrics_perfect_and_reversed_ranking() -> None:
    assert binary_metrics([0, 1, 0, 1], [0.2, 0.9, 0.1, 0.7])["auc"] == pytest.approx(1.0)
    assert binary_metrics([0, 1, 0, 1], [0.9, 0.2, 0.7, 0.1])["auc"] == pytest.approx(0.0)


def test_binary_metrics_one_class_gives_none_for_ranking_metrics() -> None:
    result = binary_metrics(np.zeros(3, dtype=np.int8), np.array([0.5, 0.5, 0.5]))
    assert result["auc"] is None and result["pr_auc"] is None
    assert result["log_loss"] == pytest.approx(math.log(2))


def test_binary_metrics_empty_and_invalid_inputs() -> None:
    assert binary_metrics([], []) == {"auc": None, "pr_auc": None, "log_loss": None}
    with pytest.raises(ValueError, match="values"):
        binary_metrics([0, 1], [0.5])
    with pytest.raises(ValueError, match="0 and 1"):
        binary_metrics([0, 2], [0.5, 0.5])


def test_binary_metrics_log_loss_is_finite_for_confident_mistakes() -> None:
    result = binary_metrics([1, 0], [0.0, 1.0])
    assert math.isfinite(result["log_loss"]) and result["log_loss"] > 10


def test_compute_model_version_depends_on_config_and_bytes(tmp_path: Path) -> None:
    data = tmp_path / "orders.parquet"
    data.write_bytes(b"abc")
    first = compute_model_version("mtl", date(2026, 2, 4), '{"seed": 7}', [data])
    assert first == compute_model_version("mtl", date(2026, 2, 4), '{"seed": 7}', [data])
    assert first.startswith("mtl-20260204-") and len(first.split("-")[-1]) == 10
    assert first != compute_model_version("mtl", date(2026, 2, 4), '{"seed": 8}', [data])
    elsewhere = tmp_path / "other_run" / "orders.parquet"  # same bytes in another directory: same version
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(b"abc")
    assert first == compute_model_version("mtl", date(2026, 2, 4), '{"seed": 7}', [elsewhere])
    data.write_bytes(b"abd")
    assert first != compute_model_version("mtl", date(2026, 2, 4), '{"seed": 7}', [data])


def test_training_summary_to_dict_is_json() -> None:
    summary = TrainingSummary(
        model_name="multitask",
        model_version="mtl-20260204-0123456789",
        output_dir=Path("/tmp/x"),
        metrics=metric_rows("fraud", [0, 1], [0.2, 0.6])
        + [{"task": "t", "metric": "auc", "value": float("nan"), "n_rows": 0}],
        n_train={"fraud": 2},
        wall_s=1.23456,
    )
    payload = json.loads(json.dumps(summary.to_dict(), allow_nan=False))
    assert payload["output_dir"] == "/tmp/x"
    assert payload["metrics"][0] == {"task": "fraud", "metric": "auc", "value": 1.0, "n_rows": 2}
    assert payload["metrics"][-1]["value"] is None
    assert summary.metric("fraud", "auc") == 1.0 and summary.metric("click", "auc") is None
