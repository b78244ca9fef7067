"""The multi-task sampler's epoch plan: every kind in every step, and a step budget per epoch."""

from __future__ import annotations

import dataclasses

import torch

from training.config import MultiTaskConfig
from training.sampler import plan_epoch

SIZES = {"impression": 100_000, "review": 5_000, "item": 800, "order": 20_000}


def rows_per_kind(steps: list[dict[str, torch.Tensor]]) -> dict[str, int]:
    return {kind: sum(step[kind].numel() for step in steps if kind in step) for kind in SIZES}


def test_an_epoch_passes_each_kinds_ratio_of_its_rows_over_the_steps_the_largest_kind_needs() -> None:
    config = MultiTaskConfig(max_steps_per_epoch=None)
    steps = plan_epoch(SIZES, config, torch.Generator().manual_seed(7))
    assert len(steps) == 157  # the orders need the most: 2 x 20,000 / 256 = 156.25 batches
    assert rows_per_kind(steps) == {"impression": 50_000, "review": 10_000, "item": 6_400, "order": 40_000}
    assert all(set(step) == set(SIZES) for step in steps)  # every kind in every step
    first_pass = torch.cat([step["review"] for step in steps])[:5_000]
    assert torch.equal(first_pass.sort().values, torch.arange(5_000))  # a pass is a permutation


def test_the_step_budget_keeps_each_kinds_share() -> None:
    config = MultiTaskConfig(max_steps_per_epoch=10)
    steps = plan_epoch(SIZES, config, torch.Generator().manual_seed(7))
    assert len(steps) == 10
    rows = rows_per_kind(steps)
    share = 10 / 157
    full = {"impression": 50_000, "review": 10_000, "item": 6_400, "order": 40_000}
    assert rows == {kind: round(n * share) for kind, n in full.items()}
    assert max(step["impression"].numel() for step in steps) <= 1024
    unbounded = plan_epoch(SIZES, dataclasses.replace(config, max_steps_per_epoch=1_000), torch.Generator().manual_seed(7))
    assert len(unbounded) == 157  # a budget above the plan changes nothing


def test_little_data_passes_its_rows_more_often_to_fill_the_minimum_steps() -> None:
    sizes = {"review": 700, "order": 300}  # a small shop: 2 x 700 / 256 -> 6 steps an epoch
    config = MultiTaskConfig(min_steps_per_epoch=50)
    steps = plan_epoch(sizes, config, torch.Generator().manual_seed(7))
    assert len(steps) == 50
    rows = {kind: sum(step[kind].numel() for step in steps if kind in step) for kind in sizes}
    assert rows == {"review": round(1_400 * 50 / 6), "order": round(600 * 50 / 6)}  # each kind's share kept
    assert max(step["review"].numel() for step in steps) <= config.review_batch_size
    reviews = torch.cat([step["review"] for step in steps])
    assert torch.equal(reviews[:700].sort().values, torch.arange(700))  # whole passes, each a permutation
    assert len(plan_epoch(SIZES, config, torch.Generator().manual_seed(7))) == 157  # enough data: unchanged
