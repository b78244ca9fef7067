"""Model-test fixtures: a tiny synthetic features directory with planted signal, tiny configs, one
shared training run, and helpers to derive other deployments from the features."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from training.config import FraudLgbmConfig, MultiTaskConfig, NetworkConfig, TextHashing
from training.summary import TrainingSummary
from tests.fixtures.synthetic_features import write_synthetic_features
from training.train import train_multitask

FEATURE_FILES = ("impressions.parquet", "orders.parquet", "reviews.parquet", "items.parquet", "candidates.parquet")


@pytest.fixture(scope="session")
def features_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny features directory (3k impressions, 2k orders, 600 reviews, 230 items) with known logistic labels."""
    return write_synthetic_features(
        tmp_path_factory.mktemp("features"),
        n_users=60,
        n_items=30,
        n_impressions=3000,
        n_orders=2000,
        n_candidate_users=5,
        n_reviews=600,
        n_extra_items=200,
        seed=3,
    )


@pytest.fixture(scope="session")
def tiny_config() -> MultiTaskConfig:
    """A small, fast network; one thread so timings and results do not depend on the machine."""
    return MultiTaskConfig(
        network=NetworkConfig(
            embedding_dim=8,
            hidden_dims=(32,),
            head_hidden_dim=8,
            review_hidden_dims=(16,),
            fraud_hidden_dims=(16,),
            text_dim=8,
            text=TextHashing(n_buckets=4096),
            image_channels=(8, 16, 16),
            history_length=4,  # the behaviour sequence (off by default) is trained and scored in every model test
        ),
        batch_size=128,
        review_batch_size=64,
        order_batch_size=128,
        item_batch_size=32,
        impression_ratio=1.0,
        item_ratio=2.0,
        max_epochs=6,
        patience=6,
        min_steps_per_epoch=1,  # ~24 steps an epoch, as before the floor: keeps the model tests' time
        learning_rate=1e-2,
        num_threads=1,
    )


@pytest.fixture(scope="session")
def tiny_fraud_config() -> FraudLgbmConfig:
    """The default LightGBM config with fewer rounds; tiny data stops early anyway."""
    return FraudLgbmConfig(num_boost_round=200, early_stopping_rounds=20)


@pytest.fixture(scope="session")
def trained(
    features_dir: Path, tiny_config: MultiTaskConfig, tmp_path_factory: pytest.TempPathFactory
) -> tuple[TrainingSummary, Path]:
    """One training run of every task on the tiny features, shared by the tests that only read its outputs."""
    output_dir = tmp_path_factory.mktemp("multitask")
    return train_multitask(features_dir, output_dir, tiny_config), output_dir


def write_features_copy(
    features_dir: Path,
    target: Path,
    replace: dict[str, pl.DataFrame] | None = None,
    objectives_available: list[str] | None = None,
    empty: tuple[str, ...] = (),
) -> Path:
    """A copy of ``features_dir`` with some Parquet files replaced or emptied (0 rows, same schema),
    and optionally another ``objectives_available`` in the manifest."""
    replace = replace or {}
    target.mkdir(parents=True)
    for name in FEATURE_FILES:
        if name in replace:
            replace[name].write_parquet(target / name)
        elif name in empty:
            pl.read_parquet(features_dir / name).clear().write_parquet(target / name)
        else:
            (target / name).write_bytes((features_dir / name).read_bytes())
    manifest = json.loads((features_dir / "manifest.json").read_text())
    if objectives_available is not None:
        manifest["objectives_available"] = objectives_available
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


@pytest.fixture(scope="session")
def copy_features():  # noqa: ANN201 - returns the helper above
    """``write_features_copy``, for tests that derive another deployment from the tiny features."""
    return write_features_copy
