"""Train the multi-task network on a features directory and write the model, metrics and predictions.

    python -m training.train --features-dir DIR --output-dir DIR [--warm-start-dir DIR]

Inputs (written by the feature builder): impressions, orders, reviews, items and candidates
``.parquet`` files and ``manifest.json`` (``ds``, feature columns, ``objectives_available``). Any
file may be empty or missing. An objective trains when it is configured
(``MultiTaskConfig.objectives``), available (the manifest's ``objectives_available``) and has
training rows; every other objective is logged with the reason it was skipped, gets an empty
prediction file and no metric rows.

| objective | training rows | validation rows (choose the epoch) | eval rows (report only) | loss |
|---|---|---|---|---|
| click | impressions ``split == "train"`` before the validation days | ``split == "train"`` of the last ``validation.days`` days before D | ``split == "eval"`` (day D) | BCE(p_ctr, clicked) |
| purchase | the same impressions | the same | the same | ESMM BCE(p_ctr * p_cvr, converted) |
| review | reviews ``split == "train"`` before the validation days | reviews of those days | ``split == "eval"`` (written on D) | BCE(p_negative, negative) |
| category | items ``split == "train"`` with an image, but | those whose id % ``validation.item_modulus`` == 1 | ``split == "eval"`` with an image | cross-entropy over the training items' listed categories |
| fraud | labelled orders ``split == "train"``, but | the newest ``validation.order_share`` of them | labelled ``split == "eval"`` | BCE(p_fraud, is_fraud) |

This file sets up (vocabularies, the network, scaling, output biases, seeding) and writes the
results; the loop is ``training/loop.py``, the per-kind model selection ``training/selection.py``.
With ``warm_start_dir`` (the champion's model directory) the network starts from the champion's
weights (``training/warm_start.py``).

Outputs in ``output_dir``: model.pt (one state_dict per distinct best epoch; config.json's
``served_by`` says which serves which objective), config.json, metrics.json and
predictions/{impressions_eval,candidates,orders,reviews,items}.parquet.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from etl.config import load_settings
from etl.contract import MULTITASK, OBJECTIVES
from etl.io import point_link, write_json_atomically
from etl.layout import METRICS_FILE
from training import data as data_module
from training import device as device_module
from training import distributed as distributed_module
from training import encoders as encoders_module
from training import impression_rows as impression_rows_module
from training import incremental as incremental_module
from training import loop as loop_module
from training import loss_weighting as loss_weighting_module
from training import multitask as multitask_module
from training import parallel as parallel_module
from training import predict as predict_module
from training import sampler as sampler_module
from training import selection as selection_module
from training import splits as splits_module
from training import warm_start as warm_start_module
from training.config import MultiTaskConfig, NetworkConfig
from training.data import (
    KINDS,
    OBJECTIVE_KIND,
    FeatureSpec,
    FeatureTables,
    ItemTable,
    Tensors,
    build_feature_spec,
    encode_objective_data,
    item_classes,
    n_rows,
    read_feature_tables,
)
from training.device import resolve_device, seeded_torch
from training.distributed import DistributedReplica, launch_training
from training.evaluation import format_metric_rows
from training.impression_rows import ImpressionRows, count_rows
from training.incremental import kept_whole, plan_replay
from training.item_cache import load_item_table
from training.loop import fit
from training.loss_weighting import METHODS, LossWeighting, UncertaintyWeighting, build_loss_weighting
from training.multitask import ARCHITECTURES, MultiTaskModelConfig, MultiTaskNet
from training.parallel import Replica, resolve_processes
from training.predict import (
    MODEL_FILE,
    MultiTaskBundle,
    eval_metric_rows,
    eval_scenario_metric_rows,
    predict_features,
    save_multitask,
    write_predictions,
)
from training.selection import FitResult
from training.splits import ObjectiveFrames, split_objective_frames
from training.summary import TrainingSummary, compute_model_version, version_dir
from training.warm_start import warm_start_from

log = logging.getLogger(__name__)

# The model's source is hashed into its version, so a code change never reuses a version name for
# other weights (this file is hashed too).
SOURCE_MODULES = (
    multitask_module, data_module, encoders_module, loss_weighting_module, loop_module, predict_module,
    warm_start_module, device_module, incremental_module, parallel_module, impression_rows_module, selection_module,
    splits_module, distributed_module, sampler_module,
)


def plan_objectives(
    config: MultiTaskConfig, tables: FeatureTables, frames: ObjectiveFrames
) -> tuple[tuple[str, ...], dict[str, str]]:
    """(objectives to train, {skipped objective: why}); unknown names in the config are an error."""
    unknown = sorted(set(config.objectives) - set(OBJECTIVES))
    if unknown:
        raise ValueError(f"MultiTaskConfig.objectives has unknown objectives {unknown}; known: {list(OBJECTIVES)}")
    trained, skipped = [], {}
    for objective in OBJECTIVES:
        train_rows = count_rows(frames.train[OBJECTIVE_KIND[objective]])
        if objective not in config.objectives:
            skipped[objective] = "not configured (MultiTaskConfig.objectives)"
        elif objective not in tables.objectives_available:
            skipped[objective] = f"not in the features' objectives_available {list(tables.objectives_available)}"
        elif train_rows == 0:
            skipped[objective] = f"no labelled split == 'train' rows of kind {OBJECTIVE_KIND[objective]!r}"
        else:
            trained.append(objective)
    return tuple(trained), skipped


def build_model(
    spec: FeatureSpec, train: dict[str, pl.DataFrame | ImpressionRows], trained: tuple[str, ...], config: MultiTaskConfig
) -> MultiTaskNet:
    """A freshly initialised network whose id vocabularies are the trained objectives' training users and items."""
    kinds = {OBJECTIVE_KIND[objective] for objective in trained}
    ids = lambda kind, column: train[kind].lazy().select(pl.col(column).cast(pl.Int64))  # noqa: E731 - read lazily
    user_frames = [ids(kind, "user_id") for kind in ("impression", "review", "order") if kind in kinds]
    item_frames = [ids(kind, "item_id") for kind in ("impression", "review") if kind in kinds]

    def vocabulary(columns: list[pl.LazyFrame]) -> np.ndarray:
        if not columns:
            return np.zeros(0, dtype=np.int64)
        ids = pl.concat([column.rename(lambda _: "id") for column in columns]).drop_nulls().unique().collect()
        return np.sort(ids.to_series().to_numpy().astype(np.int64))

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
            n_scenarios=len(spec.scenarios),
            network=config.network,
        )
    )
    model.user_vocabulary.copy_(torch.from_numpy(user_vocabulary))
    model.item_vocabulary.copy_(torch.from_numpy(item_vocabulary))
    return model


def log_odds(rate: float) -> float:
    """log(rate / (1 - rate)), with the rate kept inside (1e-4, 1 - 1e-4)."""
    rate = min(max(rate, 1e-4), 1 - 1e-4)
    return math.log(rate / (1 - rate))


def init_output_biases(model: MultiTaskNet, train: dict[str, Tensors], replica: Replica = Replica()) -> None:
    """Start each head at its training base rate (log-odds, log prior), so early steps learn ranking, not
    the prior. The counts are summed over the replicas (torchrun's ranks each hold a shard of the rows)."""

    def count(*labels: torch.Tensor) -> list[float]:  # [rows, sum of each label]
        return replica.sum(torch.tensor([labels[0].numel(), *(label.double().sum() for label in labels)], dtype=torch.float64)).tolist()

    with torch.no_grad():
        if "impression" in train:
            rows, clicks, conversions = count(train["impression"]["clicked"], train["impression"]["converted"])
            model.impression_tower.click_head.output.bias.fill_(log_odds(clicks / rows if rows else math.nan))
            if clicks > 0:  # the CVR head predicts conversion given a click
                model.impression_tower.cvr_head.output.bias.fill_(log_odds(conversions / clicks))
        if "review" in train:
            rows, negatives = count(train["review"]["negative"])
            model.review_tower[-1].bias.fill_(log_odds(negatives / rows if rows else math.nan))
        if "item" in train:
            counts = replica.sum(torch.bincount(train["item"]["label"], minlength=model.category_head.out_features).double())
            model.category_head.bias.copy_(torch.log((counts + 1.0) / (counts.sum() + counts.numel())).float())
        if "order" in train:
            rows, frauds = count(train["order"]["is_fraud"])
            model.fraud_tower[-1].bias.fill_(log_odds(frauds / rows if rows else math.nan))


SCALING_CHUNK_ROWS = 1 << 20  # rows summed at a time in float64 (a float64 copy of 14M x 22 would be 2.5 GB)


def set_dense_scaling(mean: torch.Tensor, std: torch.Tensor, dense: torch.Tensor, replica: Replica = Replica()) -> None:
    """Fill a model's mean/std buffers from training features [rows, n_dense]; constant columns get std 1.
    The sums are over the replicas (torchrun's ranks each hold a shard of the rows)."""
    if dense.shape[1] == 0:
        return
    total = torch.zeros(dense.shape[1] + 1, dtype=torch.float64)  # [1 + n_dense] rows, then column sums
    total[0] = dense.shape[0]
    for chunk in dense.split(SCALING_CHUNK_ROWS):
        total[1:] += chunk.double().sum(dim=0)
    total = replica.sum(total)
    rows = total[0]
    if rows == 0:
        return
    column_mean = total[1:] / rows  # [n_dense]
    squares = torch.zeros_like(column_mean)  # [n_dense] sum of squared deviations (two passes: no cancellation)
    for chunk in dense.split(SCALING_CHUNK_ROWS):
        squares += (chunk.double() - column_mean).pow(2).sum(dim=0)
    column_std = (replica.sum(squares) / rows).sqrt()  # [n_dense] population std
    mean.copy_(column_mean.float())
    std.copy_(torch.where(column_std > 1e-6, column_std, torch.ones_like(column_std)).float())


@dataclass
class PreparedTraining:
    """A built network and its encoded data, ready for ``fit`` (also used by training.benchmark)."""

    spec: FeatureSpec
    model: MultiTaskNet
    train: dict[str, Tensors]  # per batch kind, training rows
    validation: dict[str, Tensors]  # per batch kind, the rows that choose each kind's epoch (before D)
    items: ItemTable  # every item's content; rows of both splits (content is an input, not a label)
    trained: tuple[str, ...]
    skipped: dict[str, str]
    warm_start: dict[str, Any] | None = None  # what was copied from the champion, or the error; None: no warm start
    incremental: dict[str, dict[str, object]] | None = None  # rows kept per kind on an incremental night


def start_from_champion(model: MultiTaskNet, spec: FeatureSpec, warm_start_dir: Path) -> dict[str, Any]:
    """Warm-start ``model`` from the champion; a champion that cannot be used is logged and reported, not raised."""
    try:
        return warm_start_from(model, spec, warm_start_dir)
    except (OSError, KeyError, TypeError, ValueError, RuntimeError, json.JSONDecodeError) as error:
        # A champion saved by an older, incompatible version must not stop the nightly run.
        log.warning("warm start from %s failed (%s: %s); training from scratch", warm_start_dir, type(error).__name__, error)
        return {"from": str(warm_start_dir), "error": f"{type(error).__name__}: {error}"}


def prepare_training(
    tables: FeatureTables,
    config: MultiTaskConfig,
    warm_start_dir: Path | None = None,
    scratch_dir: Path | None = None,
    replica: Replica = Replica(),
) -> PreparedTraining:
    """Plan the objectives, build vocabularies and the network (warm-started when asked), choose the
    training rows (an incremental night's subset when warm-started with ``recent_days``), encode them
    (the window's impressions into memory maps under ``scratch_dir``, which must outlive the returned
    tensors; in memory when None), set scaling and, for a network trained from scratch, the output biases.

    A torchrun ``replica`` (training/distributed.py) encodes only its shard of the training rows
    (``replica.shard_frames``); the vocabularies come from the whole window's id columns, so every
    process builds the same network (DDP requires it), and scaling and biases from counts summed
    over the processes, so they are the ones a single process would set."""
    frames = split_objective_frames(tables, config.validation)
    trained, skipped = plan_objectives(config, tables, frames)
    if not trained:
        raise ValueError(f"no objective can be trained on {tables.features_dir}: {skipped}")
    kinds = {OBJECTIVE_KIND[objective] for objective in trained}
    item_table = load_item_table(tables, config.network.text, config.network.image_size)
    classes = item_classes(frames.train["item"], item_table) if "category" in trained else []
    spec = build_feature_spec(tables.manifest, frames.train, trained, classes)
    model = build_model(spec, frames.train, trained, config)  # vocabularies: the whole window's ids
    warm_start = start_from_champion(model, spec, Path(warm_start_dir)) if warm_start_dir is not None else None
    warm = warm_start is not None and "error" not in warm_start
    selections = {}
    if warm and config.recent_days is not None:
        selections = {
            kind: selection
            for kind in kinds
            if (selection := plan_replay(frames.train[kind], kind, config.recent_days, config.replay_fraction, config.seed))
        }
    train = encode_objective_data(model, spec, replica.shard_frames(frames.train), item_table, kinds, selections, scratch_dir)
    incremental = None
    if warm and config.recent_days is not None:
        incremental = {
            kind: selections[kind].report() if kind in selections else kept_whole(count_rows(frames.train[kind]))
            for kind in KINDS if kind in kinds
        }
        log.info("incremental night: training rows kept per kind %s", incremental)
    frames.train.clear()  # the tensors replace the window's Polars rows: free them before going on
    item_rows = int(replica.sum(torch.tensor([n_rows(train["item"]) if "item" in train else 0], dtype=torch.float64)))
    if "category" in trained and item_rows == 0:  # every training image failed to decode (on every process)
        trained, skipped["category"] = tuple(t for t in trained if t != "category"), "no decodable training images"
        del train["item"]
    validation = encode_objective_data(model, spec, frames.validation, item_table, set(train))
    if "impression" in train:
        set_dense_scaling(model.impression_dense_mean, model.impression_dense_std, train["impression"]["dense"], replica)
    if "order" in train:
        set_dense_scaling(model.order_dense_mean, model.order_dense_std, train["order"]["dense"], replica)
    if not warm:  # a warm-started network keeps the champion's heads, biases included
        init_output_biases(model, train, replica)
    for objective, reason in skipped.items():
        log.info("objective %s skipped: %s", objective, reason)
    log.info(
        "objectives %s; train/validation rows per batch kind: %s",
        list(trained),
        {kind: (n_rows(train[kind]), n_rows(validation[kind])) for kind in KINDS if kind in train},
    )
    return PreparedTraining(spec, model, train, validation, item_table, trained, skipped, warm_start, incremental)


def build_objective_weighting(config: MultiTaskConfig, trained: tuple[str, ...]) -> LossWeighting:
    """The configured loss weighting over the trained objectives."""
    fixed = {
        "click": config.click_weight,
        "purchase": config.ctcvr_weight,
        "review": config.review_weight,
        "category": config.category_weight,
        "fraud": config.fraud_weight,
    }
    return build_loss_weighting(config.loss_weighting, trained, fixed, config.gradnorm_alpha)


def best_networks(model: MultiTaskNet, fitted: FitResult) -> dict[str, MultiTaskNet]:
    """Objective -> the network of its best epoch: ``model`` itself holds one of those epochs' weights
    (the newest), copies of it the others; objectives of one epoch share a network."""
    by_epoch: dict[int, MultiTaskNet] = {}
    for number, epoch in enumerate(sorted(set(fitted.best_epochs.values()), reverse=True)):
        network = model if number == 0 else copy.deepcopy(model)
        by_epoch[epoch] = network
    for epoch, network in by_epoch.items():
        network.load_state_dict(fitted.snapshots[epoch])
        network.eval()
    return {objective: by_epoch[epoch] for objective, epoch in fitted.best_epochs.items()}


def train_multitask(
    features_dir: Path,
    output_dir: Path,
    config: MultiTaskConfig = MultiTaskConfig(),
    warm_start_dir: Path | None = None,
    versioned: bool = False,
) -> TrainingSummary:
    """Train the configured and available objectives on ``features_dir``; write model, metrics and predictions.

    ``versioned`` (the nightly DAG): write into ``version_dir(output_dir, model_version)`` and then
    make ``output_dir`` a link to it, so a version that serves is never overwritten by a later one.
    With ``SHOPMTL_TRAIN_PROCS`` above 1 (``etl.config.Settings.train_procs``) torchrun trains that
    many DistributedDataParallel processes (training/distributed.py), which write the same files."""
    started = time.perf_counter()
    features_dir, output_dir = Path(features_dir), Path(output_dir)
    link_dir = output_dir
    procs = load_settings().train_procs
    tables = read_feature_tables(features_dir, impression_splits=("eval",))  # training reads its rows itself
    # The model's source is hashed too, so a code change never reuses a version name for other weights.
    sources = [Path(module.__file__) for module in SOURCE_MODULES]
    warm_inputs = [Path(warm_start_dir) / MODEL_FILE] if warm_start_dir else []
    warm_inputs = [path for path in warm_inputs if path.exists()]
    device = resolve_device(config.device)
    # The replica count changes the weights (training/parallel.py): resolve "one per core" before hashing.
    # Under torchrun its processes are the replicas (each forks none), and their count is hashed instead.
    config = replace(config, processes=1 if procs > 1 else resolve_processes(config.processes, device))
    hashed = config.to_json() if procs == 1 else json.dumps({"config": json.loads(config.to_json()), "train_procs": procs})
    model_version = compute_model_version(
        MULTITASK, tables.ds, hashed, [*tables.input_paths(), *warm_inputs, Path(__file__), *sources]
    )
    if versioned:
        output_dir = version_dir(link_dir, model_version)
    if procs > 1:
        log.info("training %s on %d torchrun processes into %s", model_version, procs, output_dir)
        summary = launch_training(procs, features_dir, output_dir, config, warm_start_dir, model_version)
        summary.wall_s = time.perf_counter() - started
    else:
        log.info("training %s on %s into %s", model_version, device, output_dir)
        summary = train_and_save(tables, output_dir, config, warm_start_dir, model_version, device, started)
    if versioned:
        point_link(link_dir, output_dir)
    log.info("trained %s in %.1fs: %s", model_version, summary.wall_s, format_metric_rows(summary.metrics))
    return summary


def train_and_save(
    tables: FeatureTables,
    output_dir: Path,
    config: MultiTaskConfig,
    warm_start_dir: Path | None,
    model_version: str,
    device: torch.device,
    started: float,
    replica: Replica = Replica(),
) -> TrainingSummary | None:
    """Train ``model_version`` in this process (as the torchrun rank ``replica`` when given) and, on the
    first replica, write the model, metrics and predictions into ``output_dir``; None on the others."""
    features_dir = tables.features_dir
    # The window's encoded impressions are memory-mapped files here (training/impression_rows.py),
    # beside the features they come from; removed when training ends, however it ends.
    with (
        tempfile.TemporaryDirectory(prefix=".encoded-", dir=features_dir) as scratch_dir,
        seeded_torch(config.seed, device, config.num_threads) as generator,
    ):
        prepared = prepare_training(tables, config, warm_start_dir, Path(scratch_dir), replica)
        model, spec, trained = prepared.model, prepared.spec, prepared.trained
        model.to(device)
        if config.compile:
            model.compile_towers()
        sizes = {kind: n_rows(tensors) for kind, tensors in prepared.train.items()}
        n_train = replica.count_totals(sizes) or sizes
        ranks = replica.describe(sizes) if isinstance(replica, DistributedReplica) else None
        weighting = build_objective_weighting(config, trained).to(device)
        fitted = fit(
            model, weighting, prepared.train, prepared.validation, prepared.items, trained, config, device, generator,
            replica if isinstance(replica, DistributedReplica) else None,
        )  # fmt: skip
        if not replica.leads:
            return None
        networks = best_networks(model, fitted)
        predictions = predict_features(networks, spec, tables, prepared.items, trained, config.predict_batch_size)
        metrics = eval_metric_rows(tables, predictions, trained)
        scenario_metrics = eval_scenario_metric_rows(tables, predictions, trained)

    write_predictions(predictions, output_dir)
    summary = TrainingSummary(
        model_name=MULTITASK,
        model_version=model_version,
        output_dir=output_dir,
        metrics=metrics,
        scenario_metrics=scenario_metrics,
        device=str(device),
        n_train={objective: n_train[OBJECTIVE_KIND[objective]] for objective in trained},
        wall_s=0.0,
    )
    bundle = MultiTaskBundle(
        networks=networks,
        spec=spec,
        model_version=model_version,
        extra={"ds": tables.ds.isoformat(), "training": asdict(config), "objectives": list(trained)},
    )
    save_multitask(bundle, output_dir)
    summary.wall_s = time.perf_counter() - started
    write_json_atomically(
        output_dir / METRICS_FILE,
        {
            **summary.to_dict(),
            "best_epochs": fitted.best_epochs,
            "history": fitted.history,
            "objectives": {"trained": list(trained), "skipped": prepared.skipped},
            "loss_weights": weighting.objective_weights(),
            "loss_log_variances": weighting.log_variance() if isinstance(weighting, UncertaintyWeighting) else None,
            "warm_start": prepared.warm_start,
            "incremental": prepared.incremental,
            "distributed": ranks,  # torchrun: world size, backend and each rank's training rows; None alone
        },
    )
    return summary


def main() -> None:
    """CLI: train on a features directory."""
    parser = argparse.ArgumentParser(description="Train the shopmtl multi-task network.")
    parser.add_argument("--features-dir", type=Path, required=True)
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--warm-start-dir", type=Path, default=None, help="a saved model to start from (the champion)")
    parser.add_argument(
        "--recent-days", type=int, default=None,
        help="with --warm-start-dir: an incremental night on the newest days plus a replay sample of older rows",
    )
    parser.add_argument("--replay-fraction", type=float, default=MultiTaskConfig.replay_fraction)
    parser.add_argument("--seed", type=int, default=MultiTaskConfig.seed)
    parser.add_argument("--max-epochs", type=int, default=MultiTaskConfig.max_epochs)
    parser.add_argument("--num-threads", type=int, default=MultiTaskConfig.num_threads)
    parser.add_argument("--processes", type=int, default=MultiTaskConfig.processes, help="data-parallel CPU replicas (default: one per core)")
    parser.add_argument("--architecture", choices=ARCHITECTURES, default=NetworkConfig.architecture)
    parser.add_argument("--loss-weighting", choices=METHODS, default=MultiTaskConfig.loss_weighting)
    parser.add_argument("--objectives", default=",".join(MultiTaskConfig.objectives), help="comma-separated objectives to train")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = MultiTaskConfig(
        seed=args.seed,
        max_epochs=args.max_epochs,
        num_threads=args.num_threads,
        processes=args.processes,
        network=NetworkConfig(architecture=args.architecture),
        loss_weighting=args.loss_weighting,
        objectives=tuple(name.strip() for name in args.objectives.split(",") if name.strip()),
        recent_days=args.recent_days,
        replay_fraction=args.replay_fraction,
    )
    summary = train_multitask(args.features_dir, args.output_dir, config, args.warm_start_dir)
    print(json.dumps(summary.to_dict(), indent=2))


if __name__ == "__main__":
    main()
