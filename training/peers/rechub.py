"""torch-rechub's MMoE and PLE for click and purchase: the open-source multi-task recommender a user
would try first (https://github.com/datawhalechina/torch-rechub; the optional ``peers`` extra).

Its models and its trainer (``MTLTrainer``: Adam, BCE per task, early stopping on the first task's
validation AUC) on the network's impression inputs: user, item, category and scenario as
``SparseFeature`` embeddings, the dense features (standardised on the training rows) as one
``DenseFeature`` vector. Labels: clicked, and clicked-and-converted over every impression (the
quantity the network's ESMM head predicts). Only the batching is ours: rechub's ``DataGenerator``
builds batches a row at a time in Python, about 100x slower than slicing tensors, and the trainer
takes any iterable of (inputs, labels) batches.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch

from training.peers.rows import IMPRESSION_CATEGORICAL, PeerRows, category_codes, dense_matrix, write_binary_predictions

log = logging.getLogger(__name__)
ARCHITECTURES = ("mmoe", "ple")
DENSE = "dense"  # the one DenseFeature holding every dense column


@dataclass(frozen=True)
class RechubConfig:
    """torch-rechub model and trainer settings (sizes of the order of rechub's own examples)."""

    seed: int = 7
    embed_dim: int = 16
    expert_dims: tuple[int, ...] = (64, 32)
    n_expert: int = 4  # MMoE experts; PLE: specific and shared experts per level
    ple_levels: int = 1
    tower_dims: tuple[int, ...] = (16,)
    batch_size: int = 1024
    learning_rate: float = 1e-3
    weight_decay: float = 1e-5
    max_epochs: int = 20
    patience: int = 2


class Batches:
    """(inputs, labels) batches of in-memory tensors, reshuffled every pass by a seeded generator."""

    def __init__(self, inputs: dict[str, torch.Tensor], labels: torch.Tensor, batch_size: int, seed: int | None) -> None:
        self.inputs, self.labels, self.batch_size = inputs, labels, batch_size
        self.generator = None if seed is None else torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
        n = len(self.labels)
        order = torch.arange(n) if self.generator is None else torch.randperm(n, generator=self.generator)
        for rows in order.split(self.batch_size):
            yield {name: values[rows] for name, values in self.inputs.items()}, self.labels[rows]


def impression_inputs(
    train: pl.DataFrame, frame: pl.DataFrame, dense: list[str], scaling: tuple[np.ndarray, np.ndarray]
) -> dict[str, torch.Tensor]:
    """Sparse codes (0 = unseen or null) and the dense vector of ``frame`` standardised by the training
    rows' (mean, std)."""
    inputs = {
        column: torch.from_numpy(np.nan_to_num(category_codes(train, frame, column) + 1.0, nan=0.0).astype(np.int64))
        for column in IMPRESSION_CATEGORICAL
    }
    mean, std = scaling
    values = (dense_matrix(frame, dense) - mean) / np.where(std > 0, std, 1.0)
    inputs[DENSE] = torch.from_numpy(np.nan_to_num(values, nan=0.0).astype(np.float32))
    return inputs


def impression_labels(frame: pl.DataFrame) -> torch.Tensor:
    """[rows, 2]: clicked, clicked and converted."""
    return torch.from_numpy(frame.select(pl.col("clicked").cast(pl.Float32), pl.col("converted").cast(pl.Float32)).to_numpy())


def build_rechub_model(architecture: str, train: pl.DataFrame, n_dense: int, config: RechubConfig) -> torch.nn.Module:
    """An MMOE or PLE over the impression features, two classification tasks."""
    from torch_rechub.basic.features import DenseFeature, SparseFeature
    from torch_rechub.models.multi_task import MMOE, PLE

    features = [
        SparseFeature(column, vocab_size=train.get_column(column).n_unique() + 1, embed_dim=config.embed_dim)
        for column in IMPRESSION_CATEGORICAL
    ]
    features.append(DenseFeature(DENSE, embed_dim=n_dense))
    expert = {"dims": list(config.expert_dims)}
    towers = [{"dims": list(config.tower_dims)}] * 2
    tasks = ["classification", "classification"]
    if architecture == "mmoe":
        return MMOE(features, tasks, config.n_expert, expert, towers)
    if architecture == "ple":
        return PLE(features, tasks, config.ple_levels, config.n_expert, config.n_expert, expert, towers)
    raise ValueError(f"unknown torch-rechub architecture {architecture!r}; known: {list(ARCHITECTURES)}")


def train_rechub(architecture: str, rows: PeerRows, model_dir: Path, config: RechubConfig = RechubConfig()) -> int:
    """Train with rechub's MTLTrainer, keep its best validation epoch, write ``impressions_eval``;
    returns the epochs trained."""
    from torch_rechub.trainers import MTLTrainer

    train, validation, evaluation = (split["impression"] for split in (rows.train, rows.validation, rows.evaluation))
    dense = rows.impression_dense
    reference = dense_matrix(train, dense)
    scaling = (np.nanmean(reference, axis=0), np.nanstd(reference, axis=0))  # the training rows', computed once
    inputs = {name: impression_inputs(train, frame, dense, scaling) for name, frame in
              (("train", train), ("validation", validation), ("evaluation", evaluation))}  # fmt: skip
    torch.manual_seed(config.seed)
    model = build_rechub_model(architecture, train, len(dense), config)
    scratch = tempfile.TemporaryDirectory(prefix="shopmtl_rechub_")  # its trainer pickles a checkpoint: not kept
    trainer = MTLTrainer(
        model,
        task_types=["classification", "classification"],
        optimizer_params={"lr": config.learning_rate, "weight_decay": config.weight_decay},
        n_epoch=config.max_epochs,
        earlystop_patience=config.patience,
        device="cpu",
        model_path=scratch.name,
    )
    printed = io.StringIO()  # rechub prints per-batch progress bars and losses: kept out of our logs
    with scratch, contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        history = trainer.fit(
            Batches(inputs["train"], impression_labels(train), config.batch_size, config.seed),
            Batches(inputs["validation"], impression_labels(validation), 65536, None),
        )
    if trainer.early_stopper.best_weights is not None:  # rechub restores them only when patience ran out
        model.load_state_dict(trainer.early_stopper.best_weights)
    model.eval()
    with torch.no_grad():
        probabilities = model(inputs["evaluation"]).numpy().astype(np.float64)  # [rows, 2]
    log.info("torch-rechub %s: %d epochs, best validation click AUC %.4f", architecture, len(history), trainer.early_stopper.best_auc)
    write_binary_predictions(
        model_dir, "impressions_eval", evaluation, "event_id", {"p_click": probabilities[:, 0], "p_purchase": probabilities[:, 1]}
    )
    return len(history)
