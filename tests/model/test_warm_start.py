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
from training.data import build_feature_spec, read_feature_tables, split_objective_frames
from training.predict import read_saved_model
from training.train import build_model, train_multitask
from training.warm_start import warm_start_from


@pytest.mark.slow
def test_warm_start_copies_embedding_rows_of_shared_ids_and_tensors_of_equal_shape(
    trained: tuple[TrainingSummary, Path], features_dir: Path, tiny_config: MultiTaskConfig
) -> None:
    _, champion_dir = trained
    payload, old_state = read_saved_model(champion_dir)
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
        for kind, frame in frames.train.items()
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
    assert torch.equal(model.impression_tower.click_head[0].weight, old_state["impression_tower.click_head.0.weight"])
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
    # Before its first step the warm-started network already scores like the champion.
    for task in ("click", "review", "category", "fraud"):
        assert warm_metrics["history"][0]["eval"][task] < cold_metrics["history"][0]["eval"][task], task


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
