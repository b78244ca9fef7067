"""The decoded item table is written once per features directory and read back identical."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import torch

from etl.layout import ITEM_TABLES_DIR
from training.config import NetworkConfig
from training.data import encode_item_table, read_feature_tables
from training.item_cache import load_item_table


def test_the_item_table_is_encoded_once_and_read_back_identical(features_dir: Path, copy_features, tmp_path: Path) -> None:
    features = copy_features(features_dir, tmp_path / "features")
    tables = read_feature_tables(features)
    network = NetworkConfig()
    first = load_item_table(tables, network.text, network.image_size)
    written = list((features / ITEM_TABLES_DIR).glob("*.pt"))
    assert len(written) == 1
    second = load_item_table(tables, network.text, network.image_size)
    fresh = encode_item_table(tables.items, network.text, network.image_size)
    for name, value in fresh.tensors().items():
        if value is not None:
            assert torch.equal(getattr(first, name), value) and torch.equal(getattr(second, name), value), name
    # Another image size, or other items, is another table: never a stale read.
    load_item_table(tables, network.text, network.image_size // 2)
    assert len(list((features / ITEM_TABLES_DIR).glob("*.pt"))) == 2
    items = pl.read_parquet(features / "items.parquet")
    items.head(items.height // 2).write_parquet(features / "items.parquet")
    fewer = load_item_table(read_feature_tables(features), network.text, network.image_size)
    assert fewer.item_ids.numel() < first.item_ids.numel()
    assert len(list((features / ITEM_TABLES_DIR).glob("*.pt"))) == 3
