"""The network's scenarios (STAR layers, scenario-aware or blind, per-scenario metrics and candidates)
and its behaviour sequence (encoding, target attention, training with it off)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import polars as pl
import pytest
import torch

from etl.contract import ANY_SCENARIO
from training.config import MultiTaskConfig, NetworkConfig
from training.data import FeatureSpec, empty_item_table, history_rows
from training.multitask import MultiTaskModelConfig, MultiTaskNet, ScenarioLinear, TargetAttention
from training.predict import MODEL_FILE, load_multitask, predict_impressions
from training.summary import TrainingSummary
from training.train import train_multitask


def test_a_star_layer_is_the_shared_layer_times_each_scenarios_own() -> None:
    torch.manual_seed(0)
    layer = ScenarioLinear(in_dim=3, out_dim=2, n_scenarios=2)
    x = torch.randn(4, 3)
    rows = torch.tensor([0, 1, 2, 2])
    assert torch.allclose(layer(x, rows), layer.shared(x))  # every scenario starts as the shared layer
    with torch.no_grad():
        layer.scenario_weight[2].mul_(torch.tensor([[2.0], [0.0]]))  # scenario 2: output 0 doubled, output 1 cut
        layer.scenario_bias[2].fill_(0.5)
    out = layer(x, rows)
    assert torch.allclose(out[:2], layer.shared(x[:2]))
    shared = layer.shared(x[2:]) - layer.shared.bias
    assert torch.allclose(out[2:, 0], 2 * shared[:, 0] + layer.shared.bias[0] + 0.5)
    assert torch.allclose(out[2:, 1], layer.shared.bias[1].expand(2) + 0.5)


@pytest.mark.parametrize("scenarios", [True, False])
def test_only_a_scenario_aware_network_reads_the_scenario(scenarios: bool) -> None:
    torch.manual_seed(0)
    config = MultiTaskModelConfig(
        n_users=3, n_items=3, n_categories=2, order_categorical_sizes=(), n_impression_dense=2, n_order_dense=1,
        n_scenarios=3, network=NetworkConfig(scenarios=scenarios),
    )
    model = MultiTaskNet(config).eval()
    with torch.no_grad():  # the auxiliary net starts at zero: give it weights, so both paths carry the scenario
        model.impression_tower.scenario_aux[-1].weight.normal_()
    items = empty_item_table(config.network.text, config.network.image_size)
    items = dataclasses.replace(items, image_features=torch.zeros(items.n_rows, 1))
    batch = {
        "user_rows": torch.tensor([1, 2]), "item_rows": torch.tensor([1, 3]), "category_rows": torch.tensor([1, 2]),
        "content_rows": torch.zeros(2, dtype=torch.int64), "dense": torch.randn(2, 2),
    }
    logits = [model.forward_impressions({**batch, "scenario_rows": torch.full((2,), row)}, items)[0] for row in range(4)]
    differs = any(not torch.equal(logits[0], other) for other in logits[1:])
    assert differs == scenarios
    assert torch.equal(model.forward_impressions(batch, items)[0], logits[0])  # no scenario column: row 0


def test_the_behaviour_sequence_is_encoded_newest_first_and_padded_with_a_mask() -> None:
    config = MultiTaskModelConfig(
        n_users=2, n_items=3, n_categories=2, order_categorical_sizes=(), n_impression_dense=0, n_order_dense=0,
        network=NetworkConfig(history_length=3),
    )
    model = MultiTaskNet(config)
    model.item_vocabulary.copy_(torch.tensor([10, 11, 12]))
    spec = FeatureSpec(impression_dense=[], order_dense=[], order_categorical=[], categories=["a", "b"])
    frame = pl.DataFrame({
        "user_id": [1, 2, 3], "item_id": [10, 11, 12], "category": ["a", "b", "a"],
        "recent_items": [[12, 10, 11, 10], [], [99]], "recent_categories": [["b", "a", "a", "a"], [], ["zzz"]],
    })  # fmt: skip
    encoded = history_rows(model, spec, frame, None, 3)
    assert encoded["history_item_rows"].tolist() == [[3, 1, 2], [0, 0, 0], [0, 0, 0]]  # 99 is unseen: row 0
    assert encoded["history_category_rows"].tolist() == [[2, 1, 1], [0, 0, 0], [0, 0, 0]]
    assert encoded["history_mask"].tolist() == [[True, True, True], [False, False, False], [True, False, False]]


def test_target_attention_reads_only_the_real_positions_and_moves_the_click_logit() -> None:
    torch.manual_seed(0)
    attention = TargetAttention(dim=4, hidden_dim=8)
    target, history = torch.randn(2, 4), torch.randn(2, 3, 4)
    mask = torch.tensor([[True, True, False], [False, False, False]])
    interest = attention(target, history, mask)
    changed = history.clone()
    changed[0, 2] += 100.0  # a padded position
    assert torch.allclose(attention(target, changed, mask), interest)
    assert torch.equal(interest[1], torch.zeros(4))  # no history, no interest

    config = MultiTaskModelConfig(
        n_users=3, n_items=3, n_categories=2, order_categorical_sizes=(), n_impression_dense=1, n_order_dense=1,
        network=NetworkConfig(history_length=2),
    )
    model = MultiTaskNet(config).eval()
    items = empty_item_table(config.network.text, config.network.image_size)
    items = dataclasses.replace(items, image_features=torch.zeros(items.n_rows, 1))
    batch = {
        "user_rows": torch.tensor([1, 2]), "item_rows": torch.tensor([1, 3]), "category_rows": torch.tensor([1, 2]),
        "content_rows": torch.zeros(2, dtype=torch.int64), "dense": torch.randn(2, 1),
        "history_item_rows": torch.tensor([[2, 3], [0, 0]]), "history_content_rows": torch.zeros(2, 2, dtype=torch.int64),
        "history_category_rows": torch.tensor([[1, 2], [0, 0]]), "history_mask": torch.tensor([[True, True], [False, False]]),
    }  # fmt: skip
    with_history = model.forward_impressions(batch, items)[0]
    other = {**batch, "history_item_rows": torch.tensor([[1, 1], [0, 0]])}
    moved = model.forward_impressions(other, items)[0]
    assert moved[0] != with_history[0] and moved[1] == with_history[1]  # only the row with a history moves


@pytest.mark.slow
def test_scenarios_are_learned_scored_per_surface_and_reported_per_scenario(
    trained: tuple[TrainingSummary, Path], features_dir: Path
) -> None:
    summary, output_dir = trained
    impressions = pl.read_parquet(features_dir / "impressions.parquet").filter(pl.col("split") == "eval")
    counts = dict(impressions.group_by("scenario").len().drop_nulls("scenario").iter_rows())
    rows = {(row["task"], row["scenario"], row["metric"]): row for row in summary.scenario_metrics}
    assert {scenario for _, scenario, _ in rows} == set(counts) == {"feed", "search", "cart"}
    for (task, scenario, metric), row in rows.items():
        assert task in ("click", "purchase") and row["n_rows"] == counts[scenario], (task, scenario, metric)
    assert rows["click", "search", "auc"]["value"] > 0.6
    assert summary.metric("click", "auc") is not None  # the overall rows stay in ``metrics``
    assert sum(counts.values()) < impressions.height  # rows without a scenario count only overall

    # The planted offsets (search +0.8, cart -0.6 on the click logit): the same rows, shown on another surface.
    bundle = load_multitask(output_dir)
    items = pl.read_parquet(features_dir / "items.parquet")
    p_click = {
        scenario: predict_impressions(bundle, impressions.with_columns(pl.lit(scenario).alias("scenario")), items=items)
        .get_column("p_click")
        .mean()
        for scenario in ("search", "feed", "cart", None)
    }
    assert p_click["search"] > p_click["feed"] > p_click["cart"], p_click
    assert 0 < p_click[None] < 1

    # Each candidate row is scored for its own scenario.
    candidates = pl.read_parquet(output_dir / "predictions" / "candidates.parquet")
    assert set(candidates.get_column("scenario")) == {"feed", ANY_SCENARIO}


def test_a_network_without_the_behaviour_sequence_trains_and_scores(
    features_dir: Path, tiny_config: MultiTaskConfig, tmp_path: Path
) -> None:
    config = dataclasses.replace(tiny_config, network=dataclasses.replace(tiny_config.network, history_length=0), max_epochs=1)
    summary = train_multitask(features_dir, tmp_path, config)
    assert summary.metric("click", "auc") is not None
    state = torch.load(tmp_path / MODEL_FILE, weights_only=True)
    assert not any(key.startswith("history_attention") for weights in state.values() for key in weights)
