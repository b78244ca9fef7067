"""Warm start: a new day's network starts from the champion's weights where ids and shapes match."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import polars as pl
import pytest
import torch

from training.config import MultiTaskConfig
from training.summary import TrainingSummary
from etl.contract import OBJECTIVES
from etl.layout import prediction_path
from training.data import build_feature_spec, read_feature_tables
from training.predict import merge_states, read_saved_model
from training.splits import split_objective_frames
from training.train import build_model, train_multitask
from training.warm_start import warm_start_from


@pytest.mark.slow
def test_warm_start_copies_embedding_rows_of_shared_ids_and_tensors_of_equal_shape(
    trained: tuple[TrainingSummary, Path], features_dir: Path, tiny_config: MultiTaskConfig
) -> None:
    _, champion_dir = trained
    payload, old_states, served = read_saved_model(champion_dir)
    old_state = merge_states(old_states, served)
    old_users = old_state["user_vocabulary"].tolist()

    # The next day: half of the users are gone and as many new ones arrive; one category is new.
    tables = read_feature_tables(features_dir)
    frames = split_objective_frames(tables)
    leaving = set(old_users[: len(old_users) // 2])
    train = {
        kind: (
            frame.with_columns(pl.when(pl.col("user_id").is_in(leaving)).then(pl.col("user_id") + 1).otherwise(pl.col("user_id")).alias("user_id"))
            if "user_id" in frame.columns
            else frame
        )
        for kind, frame in ((kind, frame.lazy().collect()) for kind, frame in frames.train.items())  # impressions are read lazily
    }
    train["impression"] = train["impression"].with_columns(
        pl.when(pl.col("event_id") % 50 == 0).then(pl.lit("aaa_new")).otherwise(pl.col("category")).alias("category")
    )
    torch.manual_seed(123)
    spec = build_feature_spec(tables.manifest, train, OBJECTIVES, payload["features"]["item_categories"])
    model = build_model(spec, train, OBJECTIVES, tiny_config)
    before = {name: value.detach().clone() for name, value in model.named_parameters()}

    report = warm_start_from(model, spec, champion_dir)

    new_users = model.user_vocabulary.tolist()
    shared = sorted(set(new_users) & set(old_users))
    assert 0 < len(shared) < len(new_users)
    new_rows = torch.tensor([new_users.index(user) + 1 for user in shared])
    old_rows = torch.tensor([old_users.index(user) + 1 for user in shared])
    assert torch.equal(model.user_embedding.weight[new_rows], old_state["user_embedding.weight"][old_rows])
    assert torch.equal(model.user_embedding.weight[0], old_state["user_embedding.weight"][0])  # the default row
    arrivals = torch.tensor([row + 1 for row, user in enumerate(new_users) if user not in set(old_users)])
    assert torch.equal(model.user_embedding.weight[arrivals], before["user_embedding.weight"][arrivals])
    assert report["rows_copied"]["user_embedding.weight"] == [len(shared) + 1, len(new_users) + 1]

    # Categories: the old ones keep their rows (shifted by the new "aaa_new", which sorts first).
    old_categories = payload["features"]["categories"]
    assert spec.categories[0] == "aaa_new" and spec.categories[1:] == old_categories
    assert torch.equal(model.category_embedding.weight[2:], old_state["category_embedding.weight"][1:])
    assert torch.equal(model.category_embedding.weight[1], before["category_embedding.weight"][1])

    # Everything else of unchanged shape is copied whole; the image head's classes match by name.
    assert torch.equal(model.impression_tower.click_head.hidden.shared.weight, old_state["impression_tower.click_head.hidden.shared.weight"])
    assert torch.equal(model.text_encoder.bag.weight, old_state["text_encoder.bag.weight"])
    assert torch.equal(model.category_head.weight, old_state["category_head.weight"])
    assert report["tensors_copied"] > 10 and report["tensors_skipped"] == []
    assert report["model_version"] == payload["model_version"]


@pytest.mark.slow
def test_train_multitask_starts_from_the_champion_and_says_so(
    trained: tuple[TrainingSummary, Path], features_dir: Path, tiny_config: MultiTaskConfig, tmp_path: Path
) -> None:
    champion, champion_dir = trained
    config = dataclasses.replace(tiny_config, max_epochs=1)
    warm = train_multitask(features_dir, tmp_path / "warm", config, warm_start_dir=champion_dir)
    cold = train_multitask(features_dir, tmp_path / "cold", config)
    assert warm.model_version != cold.model_version  # the champion's weights are an input
    warm_metrics = json.loads((tmp_path / "warm" / "metrics.json").read_text())
    cold_metrics = json.loads((tmp_path / "cold" / "metrics.json").read_text())
    report = warm_metrics["warm_start"]
    assert report["from"] == str(champion_dir) and report["model_version"] == champion.model_version
    assert report["rows_copied"]["user_embedding.weight"][0] == report["rows_copied"]["user_embedding.weight"][1]
    assert cold_metrics["warm_start"] is None
    # Before its first step the warm-started network scores as the champion did at its kept epoch (same
    # features, so the same vocabularies, scaling and eval rows), and better than a fresh network.
    champion_metrics = json.loads((champion_dir / "metrics.json").read_text())
    best = champion_metrics["best_epochs"]
    for task in ("click", "purchase", "review", "category", "fraud"):
        kept = champion_metrics["history"][best[task]]["validation"][task]
        if task not in ("click", "purchase") and best[task] != best["click"]:
            continue  # its tower is its own epoch's, the shared parts the impressions' epoch's: another network
        # Exact when every objective kept one epoch; else the image features come from the category's
        # epoch (training.predict.merge_states) and move the impression scores a little.
        exact = len(set(best.values())) == 1
        assert warm_metrics["history"][0]["validation"][task] == pytest.approx(kept, rel=1e-4 if exact else 1e-2), task
    total = lambda metrics: sum(metrics["history"][0]["validation"][task] for task in best)  # noqa: E731
    assert total(warm_metrics) < total(cold_metrics)


def test_a_champion_that_cannot_be_read_means_training_from_scratch(
    features_dir: Path, tiny_config: MultiTaskConfig, tmp_path: Path
) -> None:
    broken = tmp_path / "champion"
    broken.mkdir()
    (broken / "config.json").write_text("{}")  # no model.pt: an older or half-written model directory
    summary = train_multitask(features_dir, tmp_path / "out", dataclasses.replace(tiny_config, max_epochs=1), broken)
    report = json.loads((tmp_path / "out" / "metrics.json").read_text())["warm_start"]
    assert report["from"] == str(broken) and "error" in report
    assert summary.metric("click", "auc") is not None


@pytest.mark.slow
def test_an_incremental_night_trains_a_warm_started_network_on_the_newest_days_and_a_replay_sample(
    trained: tuple[TrainingSummary, Path], features_dir: Path, tiny_config: MultiTaskConfig, tmp_path: Path
) -> None:
    _, champion_dir = trained
    config = dataclasses.replace(tiny_config, max_epochs=1, recent_days=2, replay_fraction=0.1)
    full = train_multitask(features_dir, tmp_path / "full", dataclasses.replace(config, recent_days=None), champion_dir)
    night = train_multitask(features_dir, tmp_path / "night", config, champion_dir)
    again = train_multitask(features_dir, tmp_path / "again", config, champion_dir)

    kept = json.loads((tmp_path / "night" / "metrics.json").read_text())["incremental"]
    impressions = kept["impression"]
    assert impressions["recent"] > 0 and 0 < impressions["replayed"] < impressions["rows"] - impressions["recent"]
    assert night.n_train["click"] == impressions["recent"] + impressions["replayed"] < full.n_train["click"]
    assert json.loads((tmp_path / "full" / "metrics.json").read_text())["incremental"] is None
    # Same data, champion and seed: the same model and the same scores.
    assert night.model_version == again.model_version
    scores = [pl.read_parquet(prediction_path(path, "impressions_eval")) for path in (tmp_path / "night", tmp_path / "again")]
    assert scores[0].equals(scores[1])
    # The vocabulary is still the whole window's: the champion's users keep their rows.
    vocabulary = lambda name: merge_states(*read_saved_model(tmp_path / name)[1:])["user_vocabulary"]  # noqa: E731
    assert vocabulary("night").numel() == vocabulary("full").numel()


def test_without_a_champion_recent_days_trains_on_the_whole_window(
    features_dir: Path, tiny_config: MultiTaskConfig, tmp_path: Path
) -> None:
    config = dataclasses.replace(tiny_config, max_epochs=1, recent_days=1)
    summary = train_multitask(features_dir, tmp_path / "out", config)
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["incremental"] is None and metrics["warm_start"] is None
    tables = read_feature_tables(features_dir)
    window = split_objective_frames(tables, config.validation).train["impression"]  # the whole window but validation
    assert summary.n_train["click"] == window.lazy().select(pl.len()).collect().item() > 0
