"""Warm start: initialise a new network from the champion's saved weights where they fit.

Vocabularies change from day to day, so embedding rows are matched by id, category or scenario value, the
image head's rows by class name and order categorical embeddings by column name; any other tensor
is copied when its shape is unchanged. Buffers (vocabularies, dense scaling) stay the new data's.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.data import FeatureSpec
from training.multitask import MultiTaskNet
from training.predict import merge_states, read_saved_model

log = logging.getLogger(__name__)


def copy_matching_rows(
    target: torch.Tensor, source: torch.Tensor, new_keys: np.ndarray, old_keys: np.ndarray, offset: int
) -> int:
    """Copy rows of ``source`` into ``target`` for keys in both vocabularies; rows are key position + offset.

    ``offset`` is 1 for embedding tables (row 0 = the unseen default, copied too) and 0 for class heads.
    Returns the number of rows copied.
    """
    common, new_index, old_index = np.intersect1d(new_keys, old_keys, assume_unique=True, return_indices=True)
    with torch.no_grad():
        if offset:
            target[:offset] = source[:offset]
        if common.size:
            target[torch.from_numpy(new_index + offset)] = source[torch.from_numpy(old_index + offset)]
    return int(common.size) + offset


def warm_start_from(model: MultiTaskNet, spec: FeatureSpec, champion_dir: Path) -> dict[str, Any]:
    """Initialise ``model`` from a saved model's weights where they fit; returns what was copied.

    Embedding rows are matched by id or category value (vocabularies change from day to day), the
    image head's rows by class name, order categorical embeddings by column name; any other
    parameter is copied when its shape is unchanged. Buffers (vocabularies, dense scaling) stay the
    new data's.
    """
    payload, old_states, served = read_saved_model(champion_dir)
    old_state = merge_states(old_states, served)  # each tower from the epoch that served its objective
    old_spec = FeatureSpec(**payload["features"])
    to_numpy = lambda values: np.asarray(list(values), dtype=str)  # noqa: E731 - str even when empty
    keyed: dict[str, tuple[np.ndarray, np.ndarray, int]] = {  # parameter -> (new keys, old keys, row offset)
        "user_embedding.weight": (model.user_vocabulary.cpu().numpy(), old_state["user_vocabulary"].numpy(), 1),
        "item_embedding.weight": (model.item_vocabulary.cpu().numpy(), old_state["item_vocabulary"].numpy(), 1),
        "category_embedding.weight": (to_numpy(spec.categories), to_numpy(old_spec.categories), 1),
        "category_head.weight": (to_numpy(spec.item_categories), to_numpy(old_spec.item_categories), 0),
        "category_head.bias": (to_numpy(spec.item_categories), to_numpy(old_spec.item_categories), 0),
    }
    # The scenario rows of the embedding and of the heads' star-topology layers, matched by name.
    scenario_keys = (to_numpy(spec.scenarios), to_numpy(old_spec.scenarios), 1)
    for name, _ in model.named_parameters():
        if name == "scenario_embedding.weight" or name.endswith((".scenario_weight", ".scenario_bias")):
            keyed[name] = scenario_keys
    old_order_columns = {column: k for k, column in enumerate(old_spec.order_categorical)}
    renamed: dict[str, str] = {}  # new parameter name -> old parameter name, where they differ
    for k, column in enumerate(spec.order_categorical):
        name = f"order_categorical_embeddings.{k}.weight"
        if column in old_order_columns:
            renamed[name] = f"order_categorical_embeddings.{old_order_columns[column]}.weight"
            keyed[name] = (
                to_numpy(spec.order_categorical_values[column]),
                to_numpy(old_spec.order_categorical_values.get(column, [])),
                1,
            )
    report: dict[str, Any] = {
        "from": str(champion_dir),
        "model_version": payload.get("model_version", ""),
        "tensors_copied": 0,
        "rows_copied": {},
        "tensors_skipped": [],
    }
    for name, parameter in model.named_parameters():
        old = old_state.get(renamed.get(name, name))
        if old is None:
            report["tensors_skipped"].append(name)
            continue
        if name in keyed:
            new_keys, old_keys, offset = keyed[name]
            if old.shape[1:] != parameter.shape[1:] or old.shape[0] != old_keys.size + offset:
                report["tensors_skipped"].append(name)
                continue
            copied = copy_matching_rows(parameter.data, old.to(parameter.device), new_keys, old_keys, offset)
            report["rows_copied"][name] = [copied, int(parameter.shape[0])]
        elif old.shape == parameter.shape:
            with torch.no_grad():
                parameter.copy_(old.to(parameter.device))
            report["tensors_copied"] += 1
        else:
            report["tensors_skipped"].append(name)
    rows = ", ".join(f"{name.split('.')[0]} {done}/{total}" for name, (done, total) in report["rows_copied"].items())
    log.info(
        "warm start from %s (%s): %d tensors copied whole; rows copied (incl. default row): %s; "
        "%d tensors left as initialised (absent or another shape): %s",
        champion_dir,
        report["model_version"],
        report["tensors_copied"],
        rows,
        len(report["tensors_skipped"]),
        report["tensors_skipped"],
    )
    return report
