"""The LightGBM fraud baseline: learns the planted signal, reloads from text identically, is deterministic."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from training.config import FraudLgbmConfig
from training.fraud_lgbm import MODEL_FILE, load_fraud_lgbm, predict_fraud, train_fraud_lgbm
from training.summary import TrainingSummary

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(
    features_dir: Path, tiny_fraud_config: FraudLgbmConfig, tmp_path_factory: pytest.TempPathFactory
) -> tuple[TrainingSummary, Path]:
    """One baseline run on the tiny features, shared by the tests that only read its outputs."""
    output_dir = tmp_path_factory.mktemp("fraud_lgbm")
    return train_fraud_lgbm(features_dir, output_dir, tiny_fraud_config), output_dir


def test_baseline_learns_the_planted_signal(trained: tuple[TrainingSummary, Path], features_dir: Path) -> None:
    summary, output_dir = trained
    assert summary.metric("fraud", "auc") > 0.8
    assert summary.model_version.startswith("fraud_lgbm-20260204-")
    n_eval = pl.read_parquet(features_dir / "orders.parquet").filter(pl.col("split") == "eval").height
    assert all(row["n_rows"] == n_eval for row in summary.metrics)
    metrics = json.loads((output_dir / "metrics.json").read_text())
    assert {row["metric"] for row in metrics["metrics"] if row["task"] == "fraud"} == {"auc", "pr_auc", "log_loss"}
    # The planted drivers matter more to the trees than the channel, which carries no signal.
    gain = metrics["feature_importance_gain"]
    assert gain["amount_log1p"] > gain["channel"] and gain["payment_method"] > gain["channel"]


def test_predictions_cover_eval_and_score_orders(trained: tuple[TrainingSummary, Path], features_dir: Path) -> None:
    _, output_dir = trained
    predictions = pl.read_parquet(output_dir / "predictions" / "orders.parquet")
    assert predictions.columns == ["order_id", "split", "p_fraud"]
    orders = pl.read_parquet(features_dir / "orders.parquet").filter(pl.col("split").is_in(["eval", "score"]))
    assert predictions.get_column("order_id").to_list() == orders.get_column("order_id").to_list()
    p_fraud = predictions.get_column("p_fraud").to_numpy()
    assert np.isfinite(p_fraud).all() and ((p_fraud > 0) & (p_fraud < 1)).all()


def test_text_model_reloads_and_scores_identically(trained: tuple[TrainingSummary, Path], features_dir: Path) -> None:
    _, output_dir = trained
    assert (output_dir / MODEL_FILE).read_text().startswith("tree\n")  # LightGBM's text format, not a pickle
    model = load_fraud_lgbm(output_dir)
    # The categorical columns keep the manifest's order (the booster's feature order), not JSON's sorted keys.
    assert model.categorical == ["payment_method", "channel", "ship_country"]
    assert model.booster.feature_name() == model.feature_names
    orders = pl.read_parquet(features_dir / "orders.parquet").filter(pl.col("split").is_in(["eval", "score"]))
    saved = pl.read_parquet(output_dir / "predictions" / "orders.parquet").get_column("p_fraud").to_numpy()
    assert np.array_equal(predict_fraud(model, orders), saved)


def test_unseen_and_missing_categories_score(trained: tuple[TrainingSummary, Path]) -> None:
    _, output_dir = trained
    model = load_fraud_lgbm(output_dir)
    orders = pl.DataFrame(
        {
            "order_id": [1, 2],
            **{name: [0.0, 2.0] for name in model.dense},
            "payment_method": ["bitcoin_atm", None],
            "channel": ["web", "fax"],
            "ship_country": [None, "DE"],
        },
        schema_overrides={"payment_method": pl.String, "ship_country": pl.String},
    )
    matrix = model.encode(orders)
    assert np.isnan(matrix[0, len(model.dense)]) and np.isnan(matrix[1, len(model.dense) + 1])
    p_fraud = predict_fraud(model, orders)
    assert p_fraud.shape == (2,) and np.isfinite(p_fraud).all()


def test_same_data_and_config_give_identical_models(
    trained: tuple[TrainingSummary, Path], features_dir: Path, tiny_fraud_config: FraudLgbmConfig, tmp_path: Path
) -> None:
    first_summary, first_dir = trained
    second_summary = train_fraud_lgbm(features_dir, tmp_path / "again", tiny_fraud_config)
    assert second_summary.model_version == first_summary.model_version
    first = pl.read_parquet(first_dir / "predictions" / "orders.parquet")
    assert first.equals(pl.read_parquet(tmp_path / "again" / "predictions" / "orders.parquet"))
    assert (first_dir / MODEL_FILE).read_text() == (tmp_path / "again" / MODEL_FILE).read_text()

    other = train_fraud_lgbm(features_dir, tmp_path / "other", dataclasses.replace(tiny_fraud_config, seed=8))
    assert other.model_version != first_summary.model_version
