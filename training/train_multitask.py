"""Train the multi-task network on a features directory and write the model, metrics and predictions.

    python -m training.train_multitask --features-dir DIR --output-dir DIR [--warm-start-dir DIR]

Inputs (written by the feature builder): impressions, orders, reviews, items and candidates
``.parquet`` files and ``manifest.json`` (``ds``, feature columns, ``tasks_available``). Any file may
be empty or missing. A task trains when it is configured (``MultiTaskConfig.tasks``), available
(the manifest's ``tasks_available``; all five when the manifest predates that key) and has training
rows; every other task is logged with the reason it was skipped, gets an empty prediction file and
no metric rows.

| task | training rows | eval rows (day D) | loss |
|---|---|---|---|
| click | impressions ``split == "train"`` | impressions ``split == "eval"`` | BCE(p_ctr, clicked) |
| purchase | the same impressions | the same | ESMM BCE(p_ctr * p_cvr, converted) |
| review | reviews ``split == "train"`` | reviews ``split == "eval"`` (written on D) | BCE(p_negative, negative) |
| category | items ``split == "train"`` with an image | items ``split == "eval"`` with an image | cross-entropy over the training items' listed categories |
| fraud | labelled orders ``split == "train"`` | labelled orders ``split == "eval"`` | BCE(p_fraud, is_fraud) |

The multi-task sampler: every optimizer step takes one batch of EACH kind (impressions, reviews,
item images, orders) that has a trained task, and the step's loss combines all their task losses
(``training/loss_weighting.py``: fixed, uncertainty or GradNorm). An epoch passes
``<kind>_ratio`` x the training rows of each kind (a ratio of 2 shows every review twice per
epoch, 0.5 half of them); the kind needing the most batches of its own ``<kind>_batch_size`` sets
the number of steps, and the other kinds' rows are spread evenly over those steps, so a small task
is seen in small slices on every step instead of in bursts. Mixing every step, rather than
interleaving single-kind steps, is what the loss weightings assume (they balance the tasks' losses
and gradients within one update) and keeps Adam's moment estimates from alternating between tasks
of very different gradient scales.

Early stopping watches the sum of the trained tasks' day-D eval losses and restores the best
epoch's weights. With ``warm_start_dir`` (the champion's model directory) the network starts from
the champion's weights: embedding rows are copied for ids and categories present in both
vocabularies, other tensors of equal shape are copied whole, and the log says how much.

Outputs in ``output_dir``: model.pt (state_dict), config.json, metrics.json and
predictions/{impressions_eval,candidates,orders,reviews,items}.parquet.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch.nn import functional as F

from training import encoders as encoders_module
from training import loss_weighting as loss_weighting_module
from training import multitask as multitask_module
from training.config import MultiTaskConfig
from training.encoders import TextHashing
from training.loss_weighting import GradNormWeighting, LossWeighting, UncertaintyWeighting, build_loss_weighting
from training.metrics import LOG_LOSS_EPS, TrainingSummary, binary_metrics, compute_model_version, metric_rows, write_json
from training.multitask import (
    UNSEEN_ROW,
    FeatureSpec,
    ItemTable,
    MultiTaskBundle,
    MultiTaskModelConfig,
    MultiTaskNet,
    Tensors,
    autocast_for,
    category_predictions,
    encode_impressions,
    encode_item_labels,
    encode_item_table,
    encode_orders,
    encode_reviews,
    esmm_losses,
    load_multitask,
    n_rows,
    predict_impression_tensors,
    predict_item_tensors,
    predict_order_tensors,
    predict_review_tensors,
    read_saved_model,
    save_multitask,
    select_rows,
    with_image_features,
)

log = logging.getLogger(__name__)

MODEL_NAME = "multitask"
TASKS = ("click", "purchase", "review", "category", "fraud")
TASK_KIND = {"click": "impression", "purchase": "impression", "review": "review", "category": "item", "fraud": "order"}
KINDS = ("impression", "review", "item", "order")  # sampler order (fixed: the shuffles consume the generator in it)
FEATURE_FILES = ("impressions.parquet", "orders.parquet", "reviews.parquet", "items.parquet", "candidates.parquet")
ID_KEYS = {  # inputs that id dropout may set to row 0, per batch kind
    "impression": ("user_rows", "item_rows", "category_rows"),
    "review": ("user_rows", "item_rows", "category_rows"),
    "item": (),
    "order": ("user_rows", "categorical_rows"),
}
PREDICTION_SCHEMAS = {
    "impressions_eval": {"event_id": pl.Int64, "p_click": pl.Float64, "p_purchase": pl.Float64},
    "candidates": {"user_id": pl.Int64, "item_id": pl.Int64, "p_click": pl.Float64, "p_purchase": pl.Float64},
    "orders": {"order_id": pl.Int64, "split": pl.String, "p_fraud": pl.Float64},
    "reviews": {"review_id": pl.Int64, "split": pl.String, "p_negative": pl.Float64},
    "items": {
        "item_id": pl.Int64,
        "split": pl.String,
        "listed_category": pl.String,
        "predicted_category": pl.String,
        "confidence": pl.Float64,
    },
}


# --- reading the features directory -----------------------------------------------------------------


def read_manifest(features_dir: Path) -> dict[str, Any]:
    """The features directory's manifest.json (ds, feature column names, tasks_available)."""
    return json.loads((Path(features_dir) / "manifest.json").read_text())


def source_schemas(manifest: dict[str, Any]) -> dict[str, dict[str, pl.DataType]]:
    """The columns training reads from each features file, for files a deployment does not write."""
    impression_dense = {name: pl.Float32 for name in manifest.get("impression_dense", [])}
    return {
        "impressions.parquet": {
            "event_id": pl.Int64, "user_id": pl.Int64, "item_id": pl.Int64, "category": pl.String,
            "split": pl.String, "clicked": pl.Int8, "converted": pl.Int8, **impression_dense,
        },
        "orders.parquet": {
            "order_id": pl.Int64, "user_id": pl.Int64, "split": pl.String, "is_fraud": pl.Int8,
            **{name: pl.Float32 for name in manifest.get("order_dense", [])},
            **{name: pl.String for name in manifest.get("order_categorical", [])},
        },
        "reviews.parquet": {
            "review_id": pl.Int64, "user_id": pl.Int64, "item_id": pl.Int64, "category": pl.String,
            "text": pl.String, "split": pl.String, "negative": pl.Int8,
        },
        "items.parquet": {
            "item_id": pl.Int64, "category": pl.String, "title": pl.String, "image": pl.Binary, "split": pl.String,
        },
        "candidates.parquet": {"user_id": pl.Int64, "item_id": pl.Int64, "category": pl.String, **impression_dense},
    }  # fmt: skip


@dataclass
class FeatureTables:
    """The frames of one features directory; a file that is missing reads as an empty frame."""

    features_dir: Path
    manifest: dict[str, Any]
    impressions: pl.DataFrame
    orders: pl.DataFrame
    reviews: pl.DataFrame
    items: pl.DataFrame
    candidates: pl.DataFrame

    @property
    def ds(self) -> date:
        """Day D."""
        return date.fromisoformat(self.manifest["ds"])

    @property
    def tasks_available(self) -> tuple[str, ...]:
        """Tasks whose source data this deployment has (all five for a manifest without the key)."""
        return tuple(self.manifest.get("tasks_available", TASKS))

    def input_paths(self) -> list[Path]:
        """The files that exist, in a fixed order (hashed into the model version)."""
        names = (*FEATURE_FILES, "manifest.json")
        return [self.features_dir / name for name in names if (self.features_dir / name).exists()]


def read_feature_tables(features_dir: Path) -> FeatureTables:
    """Read every features file of ``features_dir``."""
    features_dir = Path(features_dir)
    manifest = read_manifest(features_dir)
    frames = {}
    for name, schema in source_schemas(manifest).items():
        path = features_dir / name
        frames[name.removesuffix(".parquet")] = pl.read_parquet(path) if path.exists() else pl.DataFrame(schema=schema)
    return FeatureTables(features_dir=features_dir, manifest=manifest, **frames)


@dataclass
class TaskFrames:
    """Training and day-D evaluation rows per batch kind."""

    train: dict[str, pl.DataFrame]
    evaluation: dict[str, pl.DataFrame]


def split_task_frames(tables: FeatureTables) -> TaskFrames:
    """Training and eval rows of every kind (labels present; item rows need an image and a listed category)."""
    labelled_orders = tables.orders.filter(pl.col("is_fraud").is_not_null())
    labelled_reviews = tables.reviews.filter(pl.col("negative").is_not_null())
    labelled_items = tables.items.filter(pl.col("image").is_not_null() & pl.col("category").is_not_null())
    by_kind = {
        "impression": tables.impressions,
        "review": labelled_reviews,
        "item": labelled_items,
        "order": labelled_orders,
    }
    return TaskFrames(
        train={kind: frame.filter(pl.col("split") == "train") for kind, frame in by_kind.items()},
        evaluation={kind: frame.filter(pl.col("split") == "eval") for kind, frame in by_kind.items()},
    )


def plan_tasks(config: MultiTaskConfig, tables: FeatureTables, frames: TaskFrames) -> tuple[tuple[str, ...], dict[str, str]]:
    """(tasks to train, {skipped task: why}); unknown task names in the config are an error."""
    unknown = sorted(set(config.tasks) - set(TASKS))
    if unknown:
        raise ValueError(f"MultiTaskConfig.tasks has unknown tasks {unknown}; known: {list(TASKS)}")
    trained, skipped = [], {}
    for task in TASKS:
        train_rows = frames.train[TASK_KIND[task]].height
        if task not in config.tasks:
            skipped[task] = "not configured (MultiTaskConfig.tasks)"
        elif task not in tables.tasks_available:
            skipped[task] = f"not in the features' tasks_available {list(tables.tasks_available)}"
        elif train_rows == 0:
            skipped[task] = f"no labelled split == 'train' rows of kind {TASK_KIND[task]!r}"
        else:
            trained.append(task)
    return tuple(trained), skipped


# --- device, seeding, model construction ------------------------------------------------------------


def resolve_device(name: str) -> torch.device:
    """ "auto" -> cuda when available, else cpu; anything else is taken as a torch device string."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@contextlib.contextmanager
def seeded_torch(seed: int, device: torch.device, num_threads: int | None) -> Iterator[torch.Generator]:
    """Seed numpy and torch, turn on deterministic algorithms on CPU; yield a generator for shuffling."""
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    previous_threads = torch.get_num_threads()
    np.random.seed(seed)
    torch.manual_seed(seed)
    # CUDA determinism would need CUBLAS_WORKSPACE_CONFIG set before CUDA starts; the contract is CPU only.
    torch.use_deterministic_algorithms(device.type == "cpu")
    if num_threads:
        torch.set_num_threads(num_threads)
    try:
        yield torch.Generator().manual_seed(seed)
    finally:
        torch.use_deterministic_algorithms(previous_deterministic)
        torch.set_num_threads(previous_threads)


def sorted_strings(frames: list[pl.DataFrame], column: str) -> list[str]:
    """Sorted distinct non-null values of a string column over several frames."""
    values: set[str] = set()
    for frame in frames:
        values.update(frame.get_column(column).cast(pl.String).drop_nulls().unique().to_list())
    return sorted(values)


def build_feature_spec(
    manifest: dict[str, Any], train: dict[str, pl.DataFrame], trained: tuple[str, ...], item_classes: list[str]
) -> FeatureSpec:
    """Input columns from the manifest and string vocabularies from the trained tasks' training rows."""
    kinds = {TASK_KIND[task] for task in trained}
    order_categorical = list(manifest.get("order_categorical", []))
    orders = train["order"] if "order" in kinds else train["order"].clear()
    return FeatureSpec(
        impression_dense=list(manifest.get("impression_dense", [])),
        order_dense=list(manifest.get("order_dense", [])),
        order_categorical=order_categorical,
        categories=sorted_strings([train[kind] for kind in ("impression", "review") if kind in kinds], "category"),
        order_categorical_values={column: sorted_strings([orders], column) for column in order_categorical},
        item_categories=item_classes,
    )


def build_model(
    spec: FeatureSpec, train: dict[str, pl.DataFrame], trained: tuple[str, ...], config: MultiTaskConfig
) -> MultiTaskNet:
    """A freshly initialised network whose id vocabularies are the trained tasks' training users and items."""
    kinds = {TASK_KIND[task] for task in trained}
    user_frames = [train[kind].get_column("user_id") for kind in ("impression", "review", "order") if kind in kinds]
    item_frames = [train[kind].get_column("item_id") for kind in ("impression", "review") if kind in kinds]

    def vocabulary(columns: list[pl.Series]) -> np.ndarray:
        if not columns:
            return np.zeros(0, dtype=np.int64)
        return np.sort(pl.concat([c.cast(pl.Int64) for c in columns]).drop_nulls().unique().to_numpy().astype(np.int64))

    user_vocabulary, item_vocabulary = vocabulary(user_frames), vocabulary(item_frames)  # [n_users], [n_items]
    model = MultiTaskNet(
        MultiTaskModelConfig(
            n_users=user_vocabulary.size,
            n_items=item_vocabulary.size,
            n_categories=len(spec.categories),
            order_categorical_sizes=tuple(len(spec.order_categorical_values[c]) for c in spec.order_categorical),
            n_impression_dense=len(spec.impression_dense),
            n_order_dense=len(spec.order_dense),
            n_item_classes=len(spec.item_categories),
            embedding_dim=config.embedding_dim,
            categorical_embedding_dim=config.categorical_embedding_dim,
            architecture=config.architecture,
            hidden_dims=tuple(config.hidden_dims),
            n_experts=config.n_experts,
            ple_levels=config.ple_levels,
            ple_specific_experts=config.ple_specific_experts,
            ple_shared_experts=config.ple_shared_experts,
            head_hidden_dim=config.head_hidden_dim,
            review_hidden_dims=tuple(config.review_hidden_dims),
            fraud_hidden_dims=tuple(config.fraud_hidden_dims),
            dropout=config.dropout,
            text_dim=config.text_dim,
            text_buckets=config.text_buckets,
            char_ngram_min=config.char_ngram_min,
            char_ngram_max=config.char_ngram_max,
            word_bigrams=config.word_bigrams,
            strip_accents=config.strip_accents,
            image_size=config.image_size,
            image_channels=tuple(config.image_channels),
            crop_padding=config.crop_padding,
            augment=config.augment,
        )
    )
    model.user_vocabulary.copy_(torch.from_numpy(user_vocabulary))
    model.item_vocabulary.copy_(torch.from_numpy(item_vocabulary))
    return model


def log_odds(rate: float) -> float:
    """log(rate / (1 - rate)), with the rate kept inside (1e-4, 1 - 1e-4)."""
    rate = min(max(rate, 1e-4), 1 - 1e-4)
    return math.log(rate / (1 - rate))


def init_output_biases(model: MultiTaskNet, train: dict[str, Tensors]) -> None:
    """Start each head at its training base rate (log-odds, log prior), so early steps learn ranking, not the prior."""
    with torch.no_grad():
        if "impression" in train:
            clicked, converted = train["impression"]["clicked"], train["impression"]["converted"]  # [rows] each
            model.impression_tower.click_head[-1].bias.fill_(log_odds(clicked.mean().item()))
            if clicked.sum() > 0:  # the CVR head predicts conversion given a click
                model.impression_tower.cvr_head[-1].bias.fill_(log_odds((converted.sum() / clicked.sum()).item()))
        if "review" in train:
            model.review_tower[-1].bias.fill_(log_odds(train["review"]["negative"].mean().item()))
        if "item" in train:
            counts = torch.bincount(train["item"]["label"], minlength=model.category_head.out_features).double()
            model.category_head.bias.copy_(torch.log((counts + 1.0) / (counts.sum() + counts.numel())).float())
        if "order" in train:
            model.fraud_tower[-1].bias.fill_(log_odds(train["order"]["is_fraud"].mean().item()))


def set_dense_scaling(mean: torch.Tensor, std: torch.Tensor, dense: torch.Tensor) -> None:
    """Fill a model's mean/std buffers from training features [rows, n_dense]; constant columns get std 1."""
    if dense.shape[0] == 0 or dense.shape[1] == 0:
        return
    column_mean = dense.double().mean(dim=0)  # [n_dense]
    column_std = dense.double().std(dim=0, unbiased=False)  # [n_dense]
    mean.copy_(column_mean.float())
    std.copy_(torch.where(column_std > 1e-6, column_std, torch.ones_like(column_std)).float())


# --- warm start ---------------------------------------------------------------------------------------


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
    payload, old_state = read_saved_model(champion_dir)
    old_spec = FeatureSpec(**payload["features"])
    to_numpy = lambda values: np.asarray(list(values), dtype=str)  # noqa: E731 - str even when empty
    keyed: dict[str, tuple[np.ndarray, np.ndarray, int]] = {  # parameter -> (new keys, old keys, row offset)
        "user_embedding.weight": (model.user_vocabulary.cpu().numpy(), old_state["user_vocabulary"].numpy(), 1),
        "item_embedding.weight": (model.item_vocabulary.cpu().numpy(), old_state["item_vocabulary"].numpy(), 1),
        "category_embedding.weight": (to_numpy(spec.categories), to_numpy(old_spec.categories), 1),
        "category_head.weight": (to_numpy(spec.item_categories), to_numpy(old_spec.item_categories), 0),
        "category_head.bias": (to_numpy(spec.item_categories), to_numpy(old_spec.item_categories), 0),
    }
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


# --- the training loop ---------------------------------------------------------------------------


def drop_ids(rows: torch.Tensor, rate: float, generator: torch.Generator) -> torch.Tensor:
    """Replace a random ``rate`` share of embedding rows by the unseen row, so row 0 is trained too."""
    if rate <= 0:
        return rows
    mask = torch.rand(rows.shape, generator=generator) < rate  # same shape as rows
    return rows.masked_fill(mask, UNSEEN_ROW)


def take_batch(
    tensors: Tensors,
    index: torch.Tensor,
    id_keys: tuple[str, ...],
    id_dropout: float,
    generator: torch.Generator,
    device: torch.device,
) -> Tensors:
    """Rows ``index`` (text bags gathered), id dropout on ``id_keys`` (on the CPU), moved to ``device``."""
    batch = select_rows(tensors, index)
    for key in id_keys:
        batch[key] = drop_ids(batch[key], id_dropout, generator)
    return {key: value.to(device) for key, value in batch.items()}


def kind_settings(config: MultiTaskConfig) -> dict[str, tuple[float, int]]:
    """(ratio, batch size) per batch kind."""
    return {
        "impression": (config.impression_ratio, config.batch_size),
        "review": (config.review_ratio, config.review_batch_size),
        "item": (config.item_ratio, config.item_batch_size),
        "order": (config.order_ratio, config.order_batch_size),
    }


def plan_epoch(sizes: dict[str, int], config: MultiTaskConfig, generator: torch.Generator) -> list[dict[str, torch.Tensor]]:
    """The epoch's steps: per step, the row indices of each kind (see the module docstring)."""
    settings = kind_settings(config)
    epoch_rows = {kind: int(round(settings[kind][0] * n)) for kind, n in sizes.items() if n > 0}
    n_steps = max([math.ceil(rows / settings[kind][1]) for kind, rows in epoch_rows.items()] + [1])
    chunks: dict[str, tuple[torch.Tensor, ...]] = {}
    for kind in KINDS:
        if kind not in epoch_rows:
            continue
        passes = max(math.ceil(settings[kind][0]), 1)
        order = torch.cat([torch.randperm(sizes[kind], generator=generator) for _ in range(passes)])
        chunks[kind] = order[: epoch_rows[kind]].tensor_split(n_steps)
    return [
        {kind: parts[step] for kind, parts in chunks.items() if parts[step].numel()} for step in range(n_steps)
    ]


def task_losses(
    model: MultiTaskNet,
    batches: dict[str, Tensors],
    items: ItemTable,
    trained: tuple[str, ...],
    config: MultiTaskConfig,
    device: torch.device,
    generator: torch.Generator,
) -> dict[str, torch.Tensor]:
    """Mean loss per trained task over its batch in this step (tasks without a batch are absent)."""
    losses: dict[str, torch.Tensor] = {}
    if "impression" in batches:
        batch = batches["impression"]
        with autocast_for(device):
            click_logit, cvr_logit = model.forward_impressions(batch, items)  # [b] each
        click, ctcvr = esmm_losses(click_logit, cvr_logit, batch["clicked"], batch["converted"])
        if "click" in trained:
            losses["click"] = click
        if "purchase" in trained:
            losses["purchase"] = ctcvr
    if "review" in batches:
        batch = batches["review"]
        with autocast_for(device):
            logit = model.forward_reviews(batch, items)  # [b]
        losses["review"] = F.binary_cross_entropy_with_logits(logit.float(), batch["negative"])
    if "item" in batches:
        batch = batches["item"]
        images = items.images[batch["table_rows"]]  # [b, 3, s, s] uint8, already on the device
        with autocast_for(device):
            logits = model.forward_item_images(images, generator)  # [b, n_classes]
        losses["category"] = F.cross_entropy(
            logits.float(), batch["label"], label_smoothing=config.category_label_smoothing
        )
    if "order" in batches:
        batch = batches["order"]
        pos_weight = None if config.fraud_pos_weight is None else torch.tensor(config.fraud_pos_weight, device=device)
        with autocast_for(device):
            logit = model.forward_orders(batch)  # [b]
        losses["fraud"] = F.binary_cross_entropy_with_logits(logit.float(), batch["is_fraud"], pos_weight=pos_weight)
    return losses


@dataclass
class Optimizers:
    """The network's AdamW, and Adam for the loss weighting's own parameters (uncertainty s_i, GradNorm w_i)."""

    network: torch.optim.Optimizer
    weighting: torch.optim.Optimizer | None
    parameters: list[torch.nn.Parameter] = field(default_factory=list)  # the network's trainable parameters


def build_optimizers(model: MultiTaskNet, weighting: LossWeighting, config: MultiTaskConfig) -> Optimizers:
    """AdamW over the network; Adam (no weight decay) over the weighting's parameters when it has any."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    # foreach: one multi-tensor kernel per Adam operation instead of one per parameter tensor
    # (the per-tensor loop cost ~4.5 ms of a ~15 ms step on the demo data, one CPU thread).
    network = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay, foreach=True)
    own = list(weighting.parameters())
    weighting_optimizer = torch.optim.Adam(own, lr=config.loss_weight_learning_rate, foreach=True) if own else None
    return Optimizers(network=network, weighting=weighting_optimizer, parameters=parameters)


def train_step(
    model: MultiTaskNet,
    weighting: LossWeighting,
    optimizers: Optimizers,
    losses: dict[str, torch.Tensor],
    config: MultiTaskConfig,
) -> None:
    """One update from the step's task losses under the configured loss weighting."""
    optimizers.network.zero_grad(set_to_none=True)
    if optimizers.weighting is not None:
        optimizers.weighting.zero_grad(set_to_none=True)
    if isinstance(weighting, GradNormWeighting):
        weighting.backward(losses, optimizers.parameters)
    else:
        weighting.combine(losses).backward()
    torch.nn.utils.clip_grad_norm_(optimizers.parameters, config.grad_clip_norm)
    optimizers.network.step()
    if optimizers.weighting is not None:
        optimizers.weighting.step()
    if isinstance(weighting, GradNormWeighting):
        weighting.renormalize()


def train_one_epoch(
    model: MultiTaskNet,
    weighting: LossWeighting,
    optimizers: Optimizers,
    train: dict[str, Tensors],
    items: ItemTable,
    trained: tuple[str, ...],
    config: MultiTaskConfig,
    device: torch.device,
    generator: torch.Generator,
) -> tuple[dict[str, float], int]:
    """One epoch of mixed steps; returns (mean training loss per trained task, rows processed)."""
    model.train()
    sizes = {kind: n_rows(tensors) for kind, tensors in train.items()}
    # Loss sums stay tensors until the epoch ends: .item() per step would stall a GPU on every batch.
    sums = {task: torch.zeros((), device=device) for task in trained}
    counts = dict.fromkeys(trained, 0)
    processed = 0
    for step in plan_epoch(sizes, config, generator):
        batches = {
            kind: take_batch(train[kind], index, ID_KEYS[kind], config.id_dropout, generator, device)
            for kind, index in step.items()
        }
        losses = task_losses(model, batches, items, trained, config, device, generator)
        if not losses:
            continue
        train_step(model, weighting, optimizers, losses, config)
        for task, loss in losses.items():
            rows = step[TASK_KIND[task]].numel()
            sums[task] += loss.detach() * rows
            counts[task] += rows
        processed += sum(index.numel() for index in step.values())
    return {task: sums[task].item() / counts[task] for task in trained if counts[task]}, processed


def category_metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float | None]:
    """Accuracy and log loss of class probabilities [n, K] against 0-based labels (-1 = a class the
    model does not know: always wrong, probability 0 before clipping)."""
    n = labels.size
    if n == 0:
        return {"accuracy": None, "log_loss": None}
    known = labels >= 0
    p_true = np.zeros(n, dtype=np.float64)
    p_true[known] = probabilities[np.flatnonzero(known), labels[known]]
    correct = known & (probabilities.argmax(axis=1) == labels)  # [n]
    return {
        "accuracy": float(correct.mean()),
        "log_loss": float(-np.mean(np.log(np.clip(p_true, LOG_LOSS_EPS, 1.0)))),
    }


@torch.inference_mode()
def evaluate(
    model: MultiTaskNet,
    evaluation: dict[str, Tensors],
    items: ItemTable,
    trained: tuple[str, ...],
    config: MultiTaskConfig,
) -> dict[str, Any]:
    """Eval loss per trained task ({task}), ranking/accuracy metrics ({task}_auc, category_accuracy),
    and ``monitored``: the sum of the eval losses early stopping watches."""
    model.eval()
    result: dict[str, Any] = {}
    batch_size = config.predict_batch_size
    if n_rows(evaluation.get("impression", {})):
        tensors = evaluation["impression"]
        p_click, p_purchase = predict_impression_tensors(model, tensors, items, batch_size)
        for task, label, p in (("click", "clicked", p_click), ("purchase", "converted", p_purchase)):
            if task in trained:
                metrics = binary_metrics(tensors[label].numpy(), p)
                result |= {task: metrics["log_loss"], f"{task}_auc": metrics["auc"]}
    if "review" in trained and n_rows(evaluation.get("review", {})):
        tensors = evaluation["review"]
        metrics = binary_metrics(tensors["negative"].numpy(), predict_review_tensors(model, tensors, items, batch_size))
        result |= {"review": metrics["log_loss"], "review_auc": metrics["auc"]}
    if "category" in trained and n_rows(evaluation.get("item", {})):
        tensors = evaluation["item"]
        metrics = category_metrics(tensors["label"].numpy(), predict_item_tensors(model, tensors, items))
        result |= {"category": metrics["log_loss"], "category_accuracy": metrics["accuracy"]}
    if "fraud" in trained and n_rows(evaluation.get("order", {})):
        tensors = evaluation["order"]
        metrics = binary_metrics(tensors["is_fraud"].numpy(), predict_order_tensors(model, tensors, batch_size))
        result |= {"fraud": metrics["log_loss"], "fraud_auc": metrics["auc"]}
    losses = [result[task] for task in trained if result.get(task) is not None]
    result["monitored"] = sum(losses) if losses else None
    return result


def fit(
    model: MultiTaskNet,
    weighting: LossWeighting,
    train: dict[str, Tensors],
    evaluation: dict[str, Tensors],
    items: ItemTable,
    trained: tuple[str, ...],
    config: MultiTaskConfig,
    device: torch.device,
    generator: torch.Generator,
) -> tuple[list[dict[str, Any]], int]:
    """AdamW, gradient clipping, early stopping; leaves the best epoch's weights in ``model``.

    Returns the per-epoch history (epoch 0 = the untrained model's eval) and the best epoch.
    """
    optimizers = build_optimizers(model, weighting, config)
    schedule = torch.optim.lr_scheduler.ExponentialLR(optimizers.network, gamma=config.learning_rate_decay)
    items = with_image_features(model, items)  # the CNN's features as of now, for the first epoch's steps
    history: list[dict[str, Any]] = [
        {"epoch": 0, "train": None, "eval": evaluate(model, evaluation, items, trained, config)}
    ]
    log.info("epoch 0 (untrained) eval %s", _format(history[0]["eval"]))
    best_loss, best_epoch, best_state, stale = math.inf, 0, None, 0
    for epoch in range(1, config.max_epochs + 1):
        started = time.perf_counter()
        train_losses, processed = train_one_epoch(
            model, weighting, optimizers, train, items, trained, config, device, generator
        )
        train_s = time.perf_counter() - started
        schedule.step()
        items = with_image_features(model, items)  # refreshed once per epoch (see training/multitask.py)
        eval_result = evaluate(model, evaluation, items, trained, config)
        wall_s = time.perf_counter() - started
        weights = weighting.task_weights()
        history.append(
            {
                "epoch": epoch,
                "train": train_losses,
                "eval": eval_result,
                "loss_weights": weights,
                "wall_s": wall_s,
                "samples_per_s": processed / train_s if train_s > 0 else None,
            }
        )
        log.info(
            "epoch %d train %s | eval %s | weights %s (%.1fs, %.0f samples/s)",
            epoch,
            _format(train_losses),
            _format(eval_result),
            _format(weights),
            wall_s,
            processed / max(train_s, 1e-9),
        )
        monitored = eval_result["monitored"]
        if monitored is None:  # nothing to stop on: train max_epochs and keep the last weights
            continue
        if monitored < best_loss - config.min_delta:
            best_loss, best_epoch, stale = monitored, epoch, 0
            best_state = {key: value.detach().clone() for key, value in model.state_dict().items()}
        else:
            stale += 1
            if stale >= config.patience:
                log.info("early stopping after epoch %d: best epoch %d (eval loss %.4f)", epoch, best_epoch, best_loss)
                break
    if best_state is None:  # no eval rows to choose by: the last epoch stands
        return history, history[-1]["epoch"]
    model.load_state_dict(best_state)
    return history, best_epoch


# --- scoring the features directory (shared by training and evaluate_multitask) ------------------------


def predict_features(
    model: MultiTaskNet,
    spec: FeatureSpec,
    tables: FeatureTables,
    items: ItemTable,
    tasks: tuple[str, ...],
    batch_size: int,
    include_candidates: bool = True,
) -> dict[str, pl.DataFrame]:
    """Prediction frames (PREDICTION_SCHEMAS) of ``tasks`` on the day-D rows; other tasks' frames are empty.

    ``items`` must carry the model's image features. The items frame also keeps ``p_listed`` (the
    probability of the listed category) for the log loss; it is not written out.
    """
    empty = {name: pl.DataFrame(schema=schema) for name, schema in PREDICTION_SCHEMAS.items()}
    predictions = dict(empty)
    impression_tasks = {"click", "purchase"} & set(tasks)
    if impression_tasks:
        sources = [("impressions_eval", tables.impressions.filter(pl.col("split") == "eval"), ["event_id"])]
        if include_candidates:
            sources.append(("candidates", tables.candidates, ["user_id", "item_id"]))
        for name, frame, keys in sources:
            p_click, p_purchase = predict_impression_tensors(
                model, encode_impressions(model, spec, frame, items), items, batch_size
            )
            predictions[name] = frame.select(keys).with_columns(
                pl.Series("p_click", p_click, dtype=pl.Float64) if "click" in tasks else pl.lit(None, pl.Float64).alias("p_click"),
                pl.Series("p_purchase", p_purchase, dtype=pl.Float64)
                if "purchase" in tasks
                else pl.lit(None, pl.Float64).alias("p_purchase"),
            )
    if "review" in tasks:
        reviews = tables.reviews.filter(pl.col("split") == "eval")
        p_negative = predict_review_tensors(model, encode_reviews(model, spec, reviews, items), items, batch_size)
        predictions["reviews"] = reviews.select("review_id", "split").with_columns(
            pl.Series("p_negative", p_negative, dtype=pl.Float64)
        )
    if "category" in tasks:
        with_image = tables.items.filter(pl.col("image").is_not_null())
        rows = items.rows_of(with_image.get_column("item_id"))  # [n]
        decodable = items.has_image.cpu()[rows]  # [n] an undecodable image scores as no image: left out
        with_image, rows = with_image.filter(pl.Series(decodable.numpy())), rows[decodable]
        probabilities = predict_item_tensors(model, {"table_rows": rows}, items)  # [n, n_classes]
        labels = encode_item_labels(spec, items, with_image)["label"].numpy()  # [n], -1 = unknown class
        p_listed = np.where(labels >= 0, probabilities[np.arange(labels.size), np.maximum(labels, 0)], 0.0)
        predictions["items"] = with_image.select(
            "item_id", "split", pl.col("category").cast(pl.String).alias("listed_category")
        ).with_columns(*category_predictions(probabilities, spec.item_categories), pl.Series("p_listed", p_listed))
    if "fraud" in tasks:
        orders = tables.orders.filter(pl.col("split").is_in(["eval", "score"]))
        p_fraud = predict_order_tensors(model, encode_orders(model, spec, orders), batch_size)
        predictions["orders"] = orders.select("order_id", "split").with_columns(
            pl.Series("p_fraud", p_fraud, dtype=pl.Float64)
        )
    return predictions


def eval_metric_rows(tables: FeatureTables, predictions: dict[str, pl.DataFrame], tasks: tuple[str, ...]) -> list[dict[str, Any]]:
    """Metric rows {task, metric, value, n_rows} of ``tasks`` on the day-D rows with labels."""
    rows: list[dict[str, Any]] = []
    if {"click", "purchase"} & set(tasks):
        scored = predictions["impressions_eval"].join(
            tables.impressions.select("event_id", "clicked", "converted"), on="event_id", how="inner", maintain_order="left"
        )
        for task, label, column in (("click", "clicked", "p_click"), ("purchase", "converted", "p_purchase")):
            if task in tasks:
                rows += metric_rows(task, scored.get_column(label).to_numpy(), scored.get_column(column).to_numpy())
    if "review" in tasks:
        scored = predictions["reviews"].join(
            tables.reviews.select("review_id", "negative"), on="review_id", how="inner", maintain_order="left"
        ).filter(pl.col("negative").is_not_null())
        rows += metric_rows("review", scored.get_column("negative").to_numpy(), scored.get_column("p_negative").to_numpy())
    if "category" in tasks:
        scored = predictions["items"].filter((pl.col("split") == "eval") & pl.col("listed_category").is_not_null())
        n = scored.height
        accuracy = (
            float((scored.get_column("predicted_category") == scored.get_column("listed_category")).fill_null(False).mean())
            if n
            else None
        )
        p_listed = np.clip(scored.get_column("p_listed").to_numpy().astype(np.float64), LOG_LOSS_EPS, 1.0)
        log_loss = float(-np.mean(np.log(p_listed))) if n else None
        rows += [
            {"task": "category", "metric": "accuracy", "value": accuracy, "n_rows": n},
            {"task": "category", "metric": "log_loss", "value": log_loss, "n_rows": n},
        ]
    if "fraud" in tasks:
        scored = predictions["orders"].filter(pl.col("split") == "eval").join(
            tables.orders.select("order_id", "is_fraud"), on="order_id", how="inner", maintain_order="left"
        ).filter(pl.col("is_fraud").is_not_null())
        rows += metric_rows("fraud", scored.get_column("is_fraud").to_numpy(), scored.get_column("p_fraud").to_numpy())
    return rows


def write_predictions(predictions: dict[str, pl.DataFrame], predictions_dir: Path) -> None:
    """One Parquet file per prediction frame, in the columns of PREDICTION_SCHEMAS."""
    predictions_dir.mkdir(parents=True, exist_ok=True)
    for name, schema in PREDICTION_SCHEMAS.items():
        predictions[name].select(pl.col(column).cast(dtype) for column, dtype in schema.items()).write_parquet(
            predictions_dir / f"{name}.parquet"
        )


# --- entry points -----------------------------------------------------------------------------------


def encode_task_data(
    model: MultiTaskNet, spec: FeatureSpec, frames: dict[str, pl.DataFrame], items: ItemTable, kinds: set[str]
) -> dict[str, Tensors]:
    """Encoded tensors of the given kinds' frames (item rows without a decodable image or known class dropped)."""
    data: dict[str, Tensors] = {}
    if "impression" in kinds:
        data["impression"] = encode_impressions(model, spec, frames["impression"], items)
    if "review" in kinds:
        data["review"] = encode_reviews(model, spec, frames["review"], items)
    if "item" in kinds:
        tensors = encode_item_labels(spec, items, frames["item"])
        usable = items.has_image[tensors["table_rows"]]  # [rows] decodable images only
        data["item"] = {key: value[usable] for key, value in tensors.items()}
    if "order" in kinds:
        data["order"] = encode_orders(model, spec, frames["order"])
    return data


def item_classes(items: pl.DataFrame, table: ItemTable) -> list[str]:
    """Sorted listed categories of training items with a decodable image: the image head's classes."""
    decodable = table.has_image[table.rows_of(items.get_column("item_id"))]  # [rows]
    return sorted_strings([items.filter(pl.Series(decodable.numpy()))], "category")


@dataclass
class PreparedTraining:
    """A freshly built network and its encoded data, ready for ``fit`` (also used by training.benchmark)."""

    spec: FeatureSpec
    model: MultiTaskNet
    train: dict[str, Tensors]  # per batch kind, training rows
    evaluation: dict[str, Tensors]  # per batch kind, day-D eval rows
    items: ItemTable  # every item's content; rows of both splits (content is an input, not a label)
    trained: tuple[str, ...]
    skipped: dict[str, str]


def prepare_training(tables: FeatureTables, config: MultiTaskConfig) -> PreparedTraining:
    """Plan the tasks, build vocabularies and the network, encode the rows, set scaling and biases."""
    frames = split_task_frames(tables)
    trained, skipped = plan_tasks(config, tables, frames)
    if not trained:
        raise ValueError(f"no task can be trained on {tables.features_dir}: {skipped}")
    kinds = {TASK_KIND[task] for task in trained}
    item_table = encode_item_table(tables.items, text_hashing(config), config.image_size)
    classes = item_classes(frames.train["item"], item_table) if "category" in trained else []
    spec = build_feature_spec(tables.manifest, frames.train, trained, classes)
    model = build_model(spec, frames.train, trained, config)
    train = encode_task_data(model, spec, frames.train, item_table, kinds)
    if "category" in trained and n_rows(train["item"]) == 0:  # every training image failed to decode
        trained, skipped["category"] = tuple(t for t in trained if t != "category"), "no decodable training images"
        del train["item"]
    evaluation = encode_task_data(model, spec, frames.evaluation, item_table, set(train))
    if "impression" in train:
        set_dense_scaling(model.impression_dense_mean, model.impression_dense_std, train["impression"]["dense"])
    if "order" in train:
        set_dense_scaling(model.order_dense_mean, model.order_dense_std, train["order"]["dense"])
    init_output_biases(model, train)
    for task, reason in skipped.items():
        log.info("task %s skipped: %s", task, reason)
    log.info(
        "tasks %s; train/eval rows per batch kind: %s",
        list(trained),
        {kind: (n_rows(train[kind]), n_rows(evaluation[kind])) for kind in KINDS if kind in train},
    )
    return PreparedTraining(spec, model, train, evaluation, item_table, trained, skipped)


def build_task_weighting(config: MultiTaskConfig, trained: tuple[str, ...]) -> LossWeighting:
    """The configured loss weighting over the trained tasks."""
    fixed = {
        "click": config.click_weight,
        "purchase": config.ctcvr_weight,
        "review": config.review_weight,
        "category": config.category_weight,
        "fraud": config.fraud_weight,
    }
    return build_loss_weighting(config.loss_weighting, trained, fixed, config.gradnorm_alpha)


def train_multitask(
    features_dir: Path,
    output_dir: Path,
    config: MultiTaskConfig = MultiTaskConfig(),
    warm_start_dir: Path | None = None,
) -> TrainingSummary:
    """Train the configured and available tasks on ``features_dir``; write model, metrics and predictions."""
    started = time.perf_counter()
    features_dir, output_dir = Path(features_dir), Path(output_dir)
    tables = read_feature_tables(features_dir)
    # The model's source is hashed too, so a code change never reuses a version name for other weights.
    sources = [Path(module.__file__) for module in (multitask_module, encoders_module, loss_weighting_module)]
    warm_inputs = [Path(warm_start_dir) / multitask_module.MODEL_FILE] if warm_start_dir else []
    warm_inputs = [path for path in warm_inputs if path.exists()]
    model_version = compute_model_version(
        "mtl", tables.ds, config.to_json(), [*tables.input_paths(), *warm_inputs, Path(__file__), *sources]
    )
    device = resolve_device(config.device)
    log.info("training %s on %s", model_version, device)

    with seeded_torch(config.seed, device, config.num_threads) as generator:
        prepared = prepare_training(tables, config)
        model, spec, trained = prepared.model, prepared.spec, prepared.trained
        warm_start = None
        if warm_start_dir is not None:
            try:
                warm_start = warm_start_from(model, spec, Path(warm_start_dir))
            except (OSError, KeyError, TypeError, ValueError, RuntimeError, json.JSONDecodeError) as error:
                # A champion saved by an older, incompatible version must not stop the nightly run.
                log.warning("warm start from %s failed (%s: %s); training from scratch", warm_start_dir, type(error).__name__, error)
                warm_start = {"from": str(warm_start_dir), "error": f"{type(error).__name__}: {error}"}
        model.to(device)
        if config.compile:
            model.compile_towers()
        weighting = build_task_weighting(config, trained).to(device)
        history, best_epoch = fit(
            model, weighting, prepared.train, prepared.evaluation, prepared.items, trained, config, device, generator
        )
        items = with_image_features(model, prepared.items)
        predictions = predict_features(model, spec, tables, items, trained, config.predict_batch_size)
        metrics = eval_metric_rows(tables, predictions, trained)

    write_predictions(predictions, output_dir / "predictions")
    summary = TrainingSummary(
        model_name=MODEL_NAME,
        model_version=model_version,
        output_dir=output_dir,
        metrics=metrics,
        device=str(device),
        n_train={task: n_rows(prepared.train[TASK_KIND[task]]) for task in trained},
        wall_s=0.0,
    )
    bundle = MultiTaskBundle(
        model=model,
        spec=spec,
        model_version=model_version,
        extra={"ds": tables.ds.isoformat(), "training": asdict(config), "tasks": list(trained)},
    )
    save_multitask(bundle, output_dir)
    summary.wall_s = time.perf_counter() - started
    write_json(
        output_dir / "metrics.json",
        {
            **summary.to_dict(),
            "best_epoch": best_epoch,
            "history": history,
            "tasks": {"trained": list(trained), "skipped": prepared.skipped},
            "loss_weights": weighting.task_weights(),
            "loss_log_variances": weighting.log_variance() if isinstance(weighting, UncertaintyWeighting) else None,
            "warm_start": warm_start,
        },
    )
    log.info("trained %s in %.1fs: %s", model_version, summary.wall_s, _format_metrics(metrics))
    return summary


def _predict_with_saved_model(
    model_dir: Path, features_dir: Path, include_candidates: bool
) -> tuple[MultiTaskBundle, Any, list[dict[str, Any]]]:
    """(bundle, predictions, metric rows) of a saved model on ``features_dir``: training's own code path."""
    bundle = load_multitask(Path(model_dir))
    tables = read_feature_tables(Path(features_dir))
    tasks = tuple(task for task in bundle.extra.get("tasks", TASKS) if task in tables.tasks_available)
    training = bundle.extra.get("training", {})
    config = bundle.model.config
    with seeded_torch(training.get("seed", 0), torch.device("cpu"), training.get("num_threads", 1)):
        items = with_image_features(
            bundle.model, encode_item_table(tables.items, config.text_hashing, config.image_size)
        )
        predictions = predict_features(
            bundle.model,
            bundle.spec,
            tables,
            items,
            tasks,
            training.get("predict_batch_size", 65536),
            include_candidates=include_candidates,
        )
        return bundle, predictions, eval_metric_rows(tables, predictions, tasks)


def evaluate_multitask(model_dir: Path, features_dir: Path) -> list[dict[str, Any]]:
    """Metric rows of the saved model in ``model_dir`` on ``features_dir``'s day-D rows.

    The same rows and code as the metrics ``train_multitask`` writes, so a champion and a challenger
    are compared on equal terms; ids, items and categories the saved model never saw score through
    its default rows (an unknown listed category counts as a wrong prediction).
    """
    return _predict_with_saved_model(model_dir, features_dir, include_candidates=False)[2]


def score_multitask(model_dir: Path, features_dir: Path, output_dir: Path) -> TrainingSummary:
    """Score ``features_dir`` with a saved model into ``output_dir/predictions``, as training would."""
    bundle, predictions, metrics = _predict_with_saved_model(model_dir, features_dir, include_candidates=True)
    write_predictions(predictions, Path(output_dir) / "predictions")
    return TrainingSummary(MODEL_NAME, bundle.model_version, Path(output_dir), metrics)


def text_hashing(config: MultiTaskConfig) -> TextHashing:
    """How ``config`` hashes text (the model built from it stores the same settings)."""
    return TextHashing(
        n_buckets=config.text_buckets,
        char_ngram_min=config.char_ngram_min,
        char_ngram_max=config.char_ngram_max,
        word_bigrams=config.word_bigrams,
        strip_accents=config.strip_accents,
    )


def _format(values: dict[str, Any]) -> str:
    return " ".join(
        f"{key}={value:.4f}" for key, value in values.items() if isinstance(value, float) and key != "monitored"
    )


def _format_metrics(rows: list[dict[str, Any]]) -> str:
    return " ".join(f"{row['task']}.{row['metric']}={row['value']:.4f}" for row in rows if row["value"] is not None)


def main() -> None:
    """CLI: train on a features directory."""
    parser = argparse.ArgumentParser(description="Train the shopmtl multi-task network.")
    parser.add_argument("--features-dir", type=Path, required=True)
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--warm-start-dir", type=Path, default=None, help="a saved model to start from (the champion)")
    parser.add_argument("--seed", type=int, default=MultiTaskConfig.seed)
    parser.add_argument("--max-epochs", type=int, default=MultiTaskConfig.max_epochs)
    parser.add_argument("--num-threads", type=int, default=MultiTaskConfig.num_threads)
    parser.add_argument("--architecture", choices=multitask_module.ARCHITECTURES, default=MultiTaskConfig.architecture)
    parser.add_argument("--loss-weighting", choices=loss_weighting_module.METHODS, default=MultiTaskConfig.loss_weighting)
    parser.add_argument("--tasks", default=",".join(MultiTaskConfig.tasks), help="comma-separated tasks to train")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = MultiTaskConfig(
        seed=args.seed,
        max_epochs=args.max_epochs,
        num_threads=args.num_threads,
        architecture=args.architecture,
        loss_weighting=args.loss_weighting,
        tasks=tuple(task.strip() for task in args.tasks.split(",") if task.strip()),
    )
    summary = train_multitask(args.features_dir, args.output_dir, config, args.warm_start_dir)
    print(json.dumps(summary.to_dict(), indent=2))


if __name__ == "__main__":
    main()
