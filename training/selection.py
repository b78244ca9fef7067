"""Model selection per batch kind (``training/loop.py`` runs it): each kind's early stopping on its
objectives' summed validation loss, and the weights of the epochs the objectives keep.

A kind, not an objective, is the unit: click and purchase share the impressions, and p_purchase =
p_click * p_cvr must come from one network (``etl.contract.OBJECTIVE_KIND``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from etl.contract import OBJECTIVE_KIND
from training.config import MultiTaskConfig
from training.data import KINDS
from training.multitask import MultiTaskNet


@dataclass
class KindSelection:
    """Early stopping of one batch kind on the sum of its objectives' validation losses."""

    best_loss: float = math.inf
    best_epoch: int = 0
    stale: int = 0  # epochs since the best one
    stopped: bool = False

    def update(self, epoch: int, loss: float | None, config: MultiTaskConfig) -> bool:
        """Record ``epoch``'s validation loss; True when this epoch is now the kind's best."""
        if loss is None:  # no validation rows: nothing to choose by, so the newest epoch stands
            self.best_epoch = epoch
            return True
        if loss < self.best_loss - config.min_delta:
            self.best_loss, self.best_epoch, self.stale = loss, epoch, 0
            return True
        self.stale += 1
        self.stopped = self.stale >= config.patience
        return False


@dataclass
class FitResult:
    """What ``fit`` leaves: the per-epoch history (epoch 0 = the untrained network), each objective's
    best epoch and the weights of every epoch some objective keeps (epoch -> state_dict on the CPU)."""

    history: list[dict[str, Any]]
    best_epochs: dict[str, int]
    snapshots: dict[int, dict[str, torch.Tensor]]


def kind_objectives(trained: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """The trained objectives of each batch kind that has any, in sampler order."""
    by_kind = {kind: tuple(o for o in trained if OBJECTIVE_KIND[o] == kind) for kind in KINDS}
    return {kind: objectives for kind, objectives in by_kind.items() if objectives}


def kind_loss(result: dict[str, Any], objectives: tuple[str, ...]) -> float | None:
    """The summed validation loss of a kind's objectives; None when none of them has validation rows."""
    losses = [result[objective] for objective in objectives if result.get(objective) is not None]
    return sum(losses) if losses else None


def snapshot_state(model: MultiTaskNet) -> dict[str, torch.Tensor]:
    """A CPU copy of the network's state_dict."""
    return {key: value.detach().to("cpu", copy=True) for key, value in model.state_dict().items()}
