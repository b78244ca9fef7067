"""The ablation's peers: each writes the network's prediction files for exactly the rows the network
scores, learns the planted signal, repeats itself under a seed, and never reads day D's labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from etl.layout import prediction_path
from training.config import FraudLgbmConfig
from training.evaluation import binary_metrics, read_labelled_predictions
from training.fraud_lgbm import train_fraud_lgbm
from training.peers import cnn, gbdt, tfidf
from training.peers.rows import PeerRows, category_codes, read_peer_rows
from training.predict import PREDICTION_SCHEMAS

FAST_GBDT = gbdt.GbdtConfig(num_boost_round=60, early_stopping_rounds=10)
PREDICTION_FILES = (  # (peer directory, prediction file, batch kind, row key)
    ("lightgbm", "impressions_eval", "impression", "event_id"),
    ("lightgbm", "reviews", "review", "review_id"),
    ("lightgbm", "items", "item", "item_id"),
    ("tfidf", "reviews", "review", "review_id"),
    ("cnn", "items", "item", "item_id"),
)


def train_peers(rows: PeerRows, model_dir: Path) -> None:
    """Every torch-free-or-small peer on ``rows`` (rechub's are tested apart: an optional extra)."""
    gbdt.train_impression_gbdt(rows, model_dir / "lightgbm", FAST_GBDT)
    gbdt.train_review_gbdt(rows, model_dir / "lightgbm", FAST_GBDT)
    gbdt.train_category_gbdt(rows, model_dir / "lightgbm", FAST_GBDT, image_size=16)
    tfidf.train_review_tfidf(rows, model_dir / "tfidf")
    cnn.train_category_cnn(rows, model_dir / "cnn", cnn.CnnConfig(max_epochs=3, patience=1, image_size=16))


def flip_eval_labels(frame: pl.DataFrame, labels: tuple[str, ...]) -> pl.DataFrame:
    """``frame`` with the 0/1 ``labels`` of its evaluation rows reversed (types kept)."""
    return frame.with_columns(
        pl.when(pl.col("split") == "eval").then(pl.col(label).cast(pl.Int8) == 0).otherwise(pl.col(label).cast(pl.Int8) == 1)
        .cast(frame.schema[label]).alias(label)
        for label in labels
    )  # fmt: skip


@pytest.fixture(scope="module")
def peer_rows(features_dir: Path) -> PeerRows:
    return read_peer_rows(features_dir)


@pytest.fixture(scope="module")
def peers_dir(peer_rows: PeerRows, tmp_path_factory: pytest.TempPathFactory) -> Path:
    model_dir = tmp_path_factory.mktemp("peers")
    train_peers(peer_rows, model_dir)
    return model_dir


def test_codes_follow_the_training_values_and_unseen_values_are_missing() -> None:
    train = pl.DataFrame({"scenario": ["search", "cart", "search", None]})
    frame = pl.DataFrame({"scenario": ["cart", "home_feed", None, "search"]})
    codes = category_codes(train, frame, "scenario")
    assert codes[0] == 0.0 and codes[3] == 1.0 and np.isnan(codes[1]) and np.isnan(codes[2])


@pytest.mark.slow
def test_peers_write_the_networks_files_for_the_networks_rows_and_learn_the_signal(
    peers_dir: Path, peer_rows: PeerRows, trained: tuple, features_dir: Path
) -> None:
    _, network_dir = trained
    for directory, name, kind, key in PREDICTION_FILES:
        peer = pl.read_parquet(prediction_path(peers_dir / directory, name))
        assert dict(peer.schema) == PREDICTION_SCHEMAS[name], (directory, name)
        assert peer[key].to_list() == peer_rows.evaluation[kind][key].to_list(), (directory, name)  # all, in order
    for objective in ("click", "purchase", "review"):  # the network's labelled evaluation rows are the peers'
        network_keys = read_labelled_predictions(objective, network_dir, features_dir)[0].to_series().sort()
        assert read_labelled_predictions(objective, peers_dir / "lightgbm", features_dir)[0].to_series().sort().equals(network_keys)
    for objective, directory in (("click", "lightgbm"), ("purchase", "lightgbm"), ("review", "lightgbm"), ("review", "tfidf")):
        scored = read_labelled_predictions(objective, peers_dir / directory, features_dir)
        label, probability = scored.columns[-1], scored.columns[1]
        assert binary_metrics(scored[label], scored[probability])["auc"] > 0.6, (objective, directory)
    for directory in ("lightgbm", "cnn"):
        items = pl.read_parquet(prediction_path(peers_dir / directory, "items"))
        assert set(items["split"]) == {"eval"} and items["predicted_category"].null_count() == 0


@pytest.mark.slow
def test_peers_are_deterministic_and_never_read_day_ds_labels(
    peers_dir: Path, features_dir: Path, copy_features, tmp_path: Path
) -> None:
    # Day D's labels reversed: a peer (or the fraud baseline) that chose anything on them would change.
    flipped = {
        f"{table}.parquet": flip_eval_labels(pl.read_parquet(features_dir / f"{table}.parquet"), labels)
        for table, labels in (("impressions", ("clicked", "converted")), ("reviews", ("negative",)), ("orders", ("is_fraud",)))
    }
    flipped_dir = copy_features(features_dir, tmp_path / "flipped", replace=flipped)
    again = tmp_path / "again"
    train_peers(read_peer_rows(flipped_dir), again)
    for directory, name, _, _ in PREDICTION_FILES:
        expected = pl.read_parquet(prediction_path(peers_dir / directory, name))
        assert pl.read_parquet(prediction_path(again / directory, name)).equals(expected), (directory, name)
    config = FraudLgbmConfig(num_boost_round=100, early_stopping_rounds=10)
    train_fraud_lgbm(features_dir, tmp_path / "fraud", config)
    train_fraud_lgbm(flipped_dir, tmp_path / "fraud_flipped", config)
    fraud = [pl.read_parquet(prediction_path(tmp_path / name, "orders")) for name in ("fraud", "fraud_flipped")]
    assert fraud[0].equals(fraud[1])


@pytest.mark.slow
@pytest.mark.parametrize("architecture", ["mmoe", "ple"])
def test_rechub_peers_learn_click_and_purchase_deterministically(
    architecture: str, peer_rows: PeerRows, features_dir: Path, tmp_path: Path
) -> None:
    pytest.importorskip("torch_rechub", reason="the optional peers extra: pip install '.[peers]'")
    from training.peers import rechub

    config = rechub.RechubConfig(max_epochs=10, patience=3, batch_size=128)
    for run in ("a", "b"):
        rechub.train_rechub(architecture, peer_rows, tmp_path / run, config)
    first, second = (pl.read_parquet(prediction_path(tmp_path / run, "impressions_eval")) for run in ("a", "b"))
    assert dict(first.schema) == PREDICTION_SCHEMAS["impressions_eval"] and first.equals(second)
    assert not list(tmp_path.glob("**/*.pth"))  # rechub's pickled checkpoint is not kept
    scored = read_labelled_predictions("click", tmp_path / "a", features_dir)
    assert binary_metrics(scored["clicked"], scored["p_click"])["auc"] > 0.6
    # Purchase positives are few here: only check rechub's second task predicts something row-specific.
    assert first["p_purchase"].is_between(0.0, 1.0).all() and first["p_purchase"].n_unique() > 100
