"""The multi-task sampler: every optimizer step takes one batch of EACH kind (impressions, reviews,
item images, orders) that has a trained objective, and the step's loss combines all their losses
(``training/loss_weighting.py``: fixed, uncertainty or GradNorm). An epoch passes
``<kind>_ratio`` x the training rows of each kind (a ratio of 2 shows every review twice per
epoch, 0.5 half of them); the kind needing the most batches of its own ``<kind>_batch_size`` sets
the number of steps, and the other kinds' rows are spread evenly over those steps, so a small
objective is seen in small slices on every step instead of in bursts. ``max_steps_per_epoch``
caps the steps: beyond it, every kind passes the same share of its epoch rows. Mixing every step, rather
than interleaving single-kind steps, is what the loss weightings assume (they balance the
objectives' losses and gradients within one update) and keeps Adam's moment estimates from
alternating between objectives of very different gradient scales.

Data-parallel replicas each take their own batch of every kind per step (``count_replicas`` says how
many replicas an epoch's steps allow); torchrun's ranks, each holding only its shard of the rows,
plan their steps from the summed counts (``plan_epoch``'s ``totals``, ``plan_shard_rows``).
"""

from __future__ import annotations

import math

import torch

from training.config import MultiTaskConfig
from training.data import KINDS

KIND_FIELDS = {
    "impression": ("impression_ratio", "batch_size"),
    "review": ("review_ratio", "review_batch_size"),
    "item": ("item_ratio", "item_batch_size"),
    "order": ("order_ratio", "order_batch_size"),
}


def kind_settings(config: MultiTaskConfig) -> dict[str, tuple[float, int]]:
    """(ratio, batch size) per batch kind."""
    return {kind: (getattr(config, ratio), getattr(config, batch)) for kind, (ratio, batch) in KIND_FIELDS.items()}


def count_epoch_rows(sizes: dict[str, int], config: MultiTaskConfig) -> dict[str, int]:
    """Rows an epoch passes per batch kind that has any: ratio x rows."""
    settings = kind_settings(config)
    return {kind: int(round(settings[kind][0] * n)) for kind, n in sizes.items() if n > 0}


def count_uncapped_steps(sizes: dict[str, int], config: MultiTaskConfig, replicas: int = 1) -> int:
    """Steps an epoch would take before ``max_steps_per_epoch`` caps it."""
    settings = kind_settings(config)
    epoch_rows = count_epoch_rows(sizes, config)
    return max([math.ceil(rows / (settings[kind][1] * replicas)) for kind, rows in epoch_rows.items()] + [1])


def count_replicas(sizes: dict[str, int], config: MultiTaskConfig, processes: int) -> int:
    """Data-parallel replicas to use, at most ``processes``. Each replica takes its own batch of every
    kind per step, so n replicas make an epoch n times shorter in steps; a replica is added only while
    every epoch keeps at least ``min_steps_per_replica`` steps. Fewer updates an epoch moved the
    objectives' best epochs apart on the demo (~70 steps: with two replicas review AUC fell from
    0.9965 to 0.9875 and image accuracy from 0.979 to 0.955, while click and purchase did not move)."""
    steps = count_uncapped_steps(sizes, config)
    return max(1, min(processes, steps // max(config.min_steps_per_replica, 1)))


def plan_epoch(
    sizes: dict[str, int],
    config: MultiTaskConfig,
    generator: torch.Generator,
    replicas: int = 1,
    totals: dict[str, int] | None = None,
) -> list[dict[str, torch.Tensor]]:
    """The epoch's steps: per step, the row indices of each kind (see the module docstring). The batch
    sizes are per replica, so ``replicas`` data-parallel replicas take that many batches a step.
    ``totals``: every replica's rows per kind when this one holds only ``sizes`` of them (torchrun's
    ranks, training/distributed.py): the steps follow the totals, so every rank takes as many, and
    this rank passes its share of each kind's epoch rows. A step then holds ``count_replicas`` batches
    (as the forked replicas would be counted), split among the ``replicas`` ranks: on little data the
    ranks share one batch a step instead of halving the updates an epoch (which cost the image head
    up to 0.34 accuracy on the tests' features)."""
    settings = kind_settings(config)
    if totals is None:
        totals = sizes
    else:
        replicas = count_replicas(totals, config, replicas)
    epoch_rows = count_epoch_rows(totals, config)
    n_steps = count_uncapped_steps(totals, config, replicas)
    if config.max_steps_per_epoch is not None and n_steps > config.max_steps_per_epoch:
        share = config.max_steps_per_epoch / n_steps  # every kind passes the same share of its epoch rows
        epoch_rows = {kind: max(int(round(rows * share)), 1) for kind, rows in epoch_rows.items()}
        n_steps = config.max_steps_per_epoch
    elif n_steps < config.min_steps_per_epoch:
        # Little data (a shop's few hundred reviews): more passes an epoch, so that patience and
        # max_epochs mean enough updates to converge (6 steps an epoch could not fit a text model).
        factor = config.min_steps_per_epoch / n_steps
        epoch_rows = {kind: int(round(rows * factor)) for kind, rows in epoch_rows.items()}
        n_steps = config.min_steps_per_epoch
    if totals is not sizes:
        epoch_rows = plan_shard_rows(epoch_rows, sizes, totals, n_steps)
    chunks: dict[str, tuple[torch.Tensor, ...]] = {}
    for kind in KINDS:
        if kind not in epoch_rows:
            continue
        passes = max(math.ceil(settings[kind][0]), math.ceil(epoch_rows[kind] / sizes[kind]), 1)
        order = torch.cat([torch.randperm(sizes[kind], generator=generator) for _ in range(passes)])
        chunks[kind] = order[: epoch_rows[kind]].tensor_split(n_steps)
    return [
        {kind: parts[step] for kind, parts in chunks.items() if parts[step].numel()} for step in range(n_steps)
    ]


def plan_shard_rows(epoch_rows: dict[str, int], sizes: dict[str, int], totals: dict[str, int], n_steps: int) -> dict[str, int]:
    """A rank's share of each kind's epoch rows: in proportion to the rows it holds. Its most plentiful
    kind has a row on every step, even on a tiny shard: DDP's all-reduce runs in the backward pass,
    and a rank with nothing to backpropagate would leave the others waiting for it."""
    shares = {kind: int(round(rows * sizes[kind] / totals[kind])) for kind, rows in epoch_rows.items() if sizes.get(kind)}
    if not shares:
        raise ValueError(f"this rank holds no training rows ({sizes}) of the {totals} there are: fewer rows than processes")
    largest = max(shares, key=lambda kind: shares[kind])
    shares[largest] = max(shares[largest], n_steps)
    return shares
