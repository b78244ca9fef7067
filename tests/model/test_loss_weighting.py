"""Loss weighting: fixed weights, Kendall et al. uncertainty weighting, and GradNorm."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import polars as pl
import pytest
import torch
from torch import nn

from training.config import MultiTaskConfig
from training.loss_weighting import (
    FixedWeighting,
    GradNormWeighting,
    UncertaintyWeighting,
    build_loss_weighting,
)
from training.train import train_multitask


def test_fixed_weighting_is_the_weighted_sum_of_the_present_tasks() -> None:
    weighting = FixedWeighting(("a", "b", "c"), {"a": 2.0, "b": 0.5})
    total = weighting.combine({"a": torch.tensor(3.0), "b": torch.tensor(4.0)})  # "c" absent this step
    assert total.item() == pytest.approx(2.0 * 3.0 + 0.5 * 4.0)
    assert weighting.objective_weights() == {"a": 2.0, "b": 0.5, "c": 1.0}


def test_uncertainty_weighting_has_the_exact_form_exp_minus_s_times_loss_plus_s() -> None:
    weighting = UncertaintyWeighting(("a", "b"))
    with torch.no_grad():
        weighting.log_variances.copy_(torch.tensor([math.log(2.0), -1.0]))
    total = weighting.combine({"a": torch.tensor(4.0), "b": torch.tensor(1.0)})
    assert total.item() == pytest.approx(0.5 * 4.0 + math.log(2.0) + math.e * 1.0 - 1.0, rel=1e-6)
    assert weighting.objective_weights()["a"] == pytest.approx(0.5)


def test_uncertainty_weights_fall_for_the_noisier_task_and_settle_at_one_over_its_loss() -> None:
    weighting = UncertaintyWeighting(("noisy", "clean"))
    optimizer = torch.optim.Adam(weighting.parameters(), lr=0.05)
    losses = {"noisy": torch.tensor(2.0), "clean": torch.tensor(0.1)}  # a task the data explains poorly vs well
    for _ in range(1500):
        optimizer.zero_grad()
        weighting.combine(losses).backward()
        optimizer.step()
    s = weighting.log_variance()
    # d/ds (exp(-s) L + s) = 0 at s = log L: sigma^2 grows with the task's loss, its weight exp(-s) = 1 / L falls.
    assert s["noisy"] == pytest.approx(math.log(2.0), abs=0.02) and s["clean"] == pytest.approx(math.log(0.1), abs=0.02)
    weights = weighting.objective_weights()
    assert weights["noisy"] < 1.0 < weights["clean"]


@pytest.mark.slow
def test_in_training_the_uncertainty_of_a_task_with_noise_labels_grows(
    features_dir: Path, tiny_config: MultiTaskConfig, tmp_path: Path, copy_features
) -> None:
    config = dataclasses.replace(tiny_config, objectives=("click", "review"), loss_weighting="uncertainty", max_epochs=3)
    reviews = pl.read_parquet(features_dir / "reviews.parquet")
    shuffled = reviews.with_columns(pl.col("negative").shuffle(seed=0))  # labels unrelated to the reviews
    noisy = copy_features(features_dir, tmp_path / "noisy", replace={"reviews.parquet": shuffled})
    log_variance = {}
    for name, directory in (("clean", features_dir), ("noisy", noisy)):
        train_multitask(directory, tmp_path / name, config)
        log_variance[name] = json.loads((tmp_path / name / "metrics.json").read_text())["loss_log_variances"]
    assert log_variance["noisy"]["review"] > log_variance["clean"]["review"] + 0.05
    # The click task is the same in both runs, so its uncertainty barely differs.
    assert abs(log_variance["noisy"]["click"] - log_variance["clean"]["click"]) < 0.05


class TwoTaskNet(nn.Module):
    """A shared layer and two heads, plus a head on its own input (shares nothing)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.shared = nn.Linear(3, 8)
        self.head_a = nn.Linear(8, 1)
        self.head_b = nn.Linear(8, 1)
        self.alone = nn.Linear(3, 1)

    def losses(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = torch.relu(self.shared(x))
        return {
            "big": 10.0 * ((self.head_a(hidden).squeeze(1) - y) ** 2).mean(),  # large gradients on the shared layer
            "small": ((self.head_b(hidden).squeeze(1) + y) ** 2).mean(),
            "alone": ((self.alone(x).squeeze(1) - y) ** 2).mean(),
        }


def test_gradnorm_sets_the_network_gradient_to_the_weighted_sum_of_task_gradients() -> None:
    net = TwoTaskNet()
    weighting = GradNormWeighting(("big", "small", "alone"), alpha=1.5)
    with torch.no_grad():
        weighting.weights.copy_(torch.tensor([0.5, 2.0, 0.5]))
    x, y = torch.randn(16, 3, generator=torch.Generator().manual_seed(1)), torch.randn(16)
    parameters = list(net.parameters())
    weighting.backward(net.losses(x, y), parameters)
    expected = torch.autograd.grad(
        sum(w * loss for w, loss in zip((0.5, 2.0, 0.5), net.losses(x, y).values(), strict=True)), parameters
    )
    for parameter, grad in zip(parameters, expected, strict=True):
        assert torch.allclose(parameter.grad, grad, atol=1e-6)


def test_gradnorm_weights_stay_positive_sum_to_the_task_count_and_balance_gradient_norms() -> None:
    net = TwoTaskNet()
    weighting = GradNormWeighting(("big", "small", "alone"), alpha=1.5)
    network_optimizer = torch.optim.SGD(net.parameters(), lr=0.01)
    weight_optimizer = torch.optim.Adam(weighting.parameters(), lr=0.02)
    generator = torch.Generator().manual_seed(2)
    norms: dict[str, float] = {}
    for _ in range(200):
        x = torch.randn(32, 3, generator=generator)
        y = x.sum(dim=1)
        network_optimizer.zero_grad()
        weight_optimizer.zero_grad()
        norms = weighting.backward(net.losses(x, y), list(net.parameters()))
        network_optimizer.step()
        weight_optimizer.step()
        weighting.renormalize()
        weights = weighting.weights.detach()
        assert (weights > 0).all() and weights.sum().item() == pytest.approx(3.0, rel=1e-5)
    final = weighting.objective_weights()
    # The 10x task's gradient dominates the shared layer, so GradNorm turns its weight down.
    assert final["big"] < final["small"]
    assert set(norms) == {"big", "small"}  # "alone" reaches no shared parameter: not balanced
    ratio = norms["big"] / norms["small"]
    assert 0.2 < ratio < 5.0, f"weighted gradient norms still {ratio:.1f}x apart"


def test_unknown_loss_weighting_is_an_error() -> None:
    with pytest.raises(ValueError, match="loss_weighting must be one of"):
        build_loss_weighting("equal", ("a",), {}, 1.5)
