"""A features directory's items decoded once: training, the gate and scoring share one item table.

Decoding the item images (one PIL decode per item, in Python) and hashing the titles costs about a
minute at 100x the demo (112k items); training did it, then the gate did it again for the champion
and the challenger. The first to need the table writes it under ``<features>/item_tables/`` and the
others load it. The file name is a digest of ``items.parquet``'s bytes, the text hashing, the image
size and this package's encoding code, so a change to any of them encodes afresh instead of reading
a stale table. The file holds plain tensors and loads with ``torch.load(weights_only=True)``: no
pickled objects.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

import torch

from etl.io import write_atomically
from etl.layout import feature_path, item_table_path
from training import data as data_module
from training import encoders as encoders_module
from training.config import TextHashing
from training.data import FeatureTables, ItemTable, encode_item_table
from training.summary import digest_inputs

log = logging.getLogger(__name__)

ENCODING_SOURCES = (data_module, encoders_module)  # the code that turns items into the table's tensors


def item_table_key(tables: FeatureTables, hashing: TextHashing, image_size: int) -> str | None:
    """The digest naming the table's file, or None when the features have no items file to key on."""
    items_file = feature_path(tables.features_dir, "items")
    if not items_file.exists():
        return None
    encoding = json.dumps({"hashing": asdict(hashing), "image_size": image_size}, sort_keys=True)
    return digest_inputs(encoding, [items_file, *(Path(module.__file__) for module in ENCODING_SOURCES)])[:16]


def load_item_table(tables: FeatureTables, hashing: TextHashing, image_size: int) -> ItemTable:
    """The item table of ``tables``' items: read from its file when an earlier stage wrote it, else
    encoded from ``tables.items`` and written for the next one."""
    key = item_table_key(tables, hashing, image_size)
    if key is None:
        return encode_item_table(tables.items, hashing, image_size)
    path = item_table_path(tables.features_dir, key)
    if path.exists():
        tensors = torch.load(path, weights_only=True)
        log.info("item table read from %s (%d items)", path, tensors["item_ids"].numel())
        return ItemTable(**tensors)
    table = encode_item_table(tables.items, hashing, image_size)
    tensors = {name: value for name, value in table.tensors().items() if value is not None}
    write_atomically(path, lambda tmp: torch.save(tensors, tmp))
    log.info("item table encoded and written to %s (%d items)", path, table.item_ids.numel())
    return table
