"""Model-test fixtures: a tiny synthetic features directory with planted signal, and tiny configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.config import FraudBaselineConfig, MultiTaskConfig
from training.testing import write_synthetic_features


@pytest.fixture(scope="session")
def features_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny features directory (3k impressions, 2k orders) whose labels follow known logistic models."""
    return write_synthetic_features(
        tmp_path_factory.mktemp("features"),
        n_users=60,
        n_items=30,
        n_impressions=3000,
        n_orders=2000,
        n_candidate_users=5,
        seed=3,
    )


@pytest.fixture(scope="session")
def tiny_config() -> MultiTaskConfig:
    """A small, fast network; one thread so timings and results do not depend on the machine."""
    return MultiTaskConfig(
        embedding_dim=8,
        hidden_dims=(32,),
        head_hidden_dim=8,
        fraud_hidden_dims=(16,),
        batch_size=128,
        max_epochs=6,
        patience=6,
        learning_rate=1e-2,
        num_threads=1,
    )


@pytest.fixture(scope="session")
def tiny_fraud_config() -> FraudBaselineConfig:
    """The default LightGBM config with fewer rounds; tiny data stops early anyway."""
    return FraudBaselineConfig(num_boost_round=200, early_stopping_rounds=20)
