"""A plain two-layer convnet for the category from the image: the textbook peer of the image head.

conv 32 -> pool -> conv 64 -> pool -> dense 128 -> classes, on the images decoded exactly as the
network decodes them (``NetworkConfig.image_size``), Adam, no augmentation; the epoch with the lowest
validation loss (the validation items, never day D's holdout) is kept, stopping after ``patience``
epochs without a better one.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch import nn

from training.config import NetworkConfig
from training.encoders import decode_images
from training.peers.rows import PeerRows, write_category_predictions


@dataclass(frozen=True)
class CnnConfig:
    """Training of the two-layer convnet."""

    seed: int = 7
    image_size: int = NetworkConfig.image_size
    batch_size: int = 64
    learning_rate: float = 1e-3
    max_epochs: int = 30
    patience: int = 3


def build_cnn(n_classes: int, image_size: int) -> nn.Sequential:
    """Two conv + pool blocks and a small classifier."""
    flat = 64 * (image_size // 4) ** 2
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(flat, 128), nn.ReLU(), nn.Linear(128, n_classes),
    )  # fmt: skip


def image_tensor(items: pl.DataFrame, image_size: int) -> torch.Tensor:
    """[rows, 3, size, size] float images in [0, 1]."""
    images, _ = decode_images(items.get_column("image").to_list(), image_size)
    return images.float() / 255.0


def train_category_cnn(rows: PeerRows, model_dir: Path, config: CnnConfig = CnnConfig()) -> int:
    """Train, keep the best validation epoch, write ``items``; returns the kept epoch (1-based)."""
    train, validation, evaluation = (split["item"] for split in (rows.train, rows.validation, rows.evaluation))
    classes = sorted(train.get_column("category").unique().to_list())
    index = {name: position for position, name in enumerate(classes)}
    validation = validation.filter(pl.col("category").is_in(classes))

    def labels(frame: pl.DataFrame) -> torch.Tensor:
        return torch.tensor([index[value] for value in frame.get_column("category").to_list()], dtype=torch.int64)

    x_train, y_train = image_tensor(train, config.image_size), labels(train)
    x_validation, y_validation = image_tensor(validation, config.image_size), labels(validation)
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    model = build_cnn(len(classes), config.image_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    loss_fn = nn.CrossEntropyLoss()
    best_loss, best_epoch, best_state = float("inf"), 0, copy.deepcopy(model.state_dict())
    for epoch in range(1, config.max_epochs + 1):
        model.train()
        for batch in torch.randperm(len(y_train), generator=generator).split(config.batch_size):
            optimizer.zero_grad()
            loss_fn(model(x_train[batch]), y_train[batch]).backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            loss = loss_fn(model(x_validation), y_validation).item() if len(y_validation) else -float(epoch)
        if loss < best_loss:
            best_loss, best_epoch, best_state = loss, epoch, copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= config.patience:
            break
    model.load_state_dict(best_state)
    model.eval()
    with torch.no_grad():
        probabilities = torch.softmax(model(image_tensor(evaluation, config.image_size)), dim=1).numpy()
    write_category_predictions(model_dir, evaluation, classes, np.asarray(probabilities, dtype=np.float64))
    return best_epoch
