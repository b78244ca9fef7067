"""Train the multi-task network on a features directory and write the model, metrics and predictions.

    python -m training.train_multitask --features-dir DIR --output-dir DIR

Inputs (written by the feature builder): impressions.parquet, orders.parquet, candidates.parquet,
manifest.json. Training rows are ``split == "train"``; early stopping watches the weighted eval loss
(impressions ``split == "eval"`` for click and purchase, labelled orders ``split == "eval"`` for fraud)
and restores the best epoch's weights.

Each step mixes one impression batch and one order batch into a single weighted loss, so every
epoch passes once over both sets and the shared user embeddings see both tasks' gradients.

Outputs in ``output_dir``: model.pt (state_dict), config.json, metrics.json and
predictions/{impressions_eval,candidates,orders}.parquet.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import asdict
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from torch.nn import functional as F

from training import multitask as multitask_module
from training.config import MultiTaskConfig
from training.metrics import TrainingSummary, binary_metrics, compute_model_version, metric_rows, write_json
from training.multitask import (
    UNSEEN_ROW,
    FeatureSpec,
    MultiTaskBundle,
    MultiTaskModelConfig,
    MultiTaskNet,
    autocast_for,
    encode_impressions,
    encode_orders,
    esmm_losses,
    predict_impression_tensors,
    predict_order_tensors,
    save_multitask,
)

log = logging.getLogger(__name__)

MODEL_NAME = "multitask"
INPUT_FILES = ("impressions.parquet", "orders.parquet", "candidates.parquet", "manifest.json")
IMPRESSION_ID_KEYS = ("user_rows", "item_rows", "category_rows")  # inputs that id dropout may set to row 0
ORDER_ID_KEYS = ("user_rows", "categorical_rows")
Tensors = dict[str, torch.Tensor]


def read_manifest(features_dir: Path) -> dict[str, Any]:
    """The features directory's manifest.json (ds and feature column names)."""
    return json.loads((Path(features_dir) / "manifest.json").read_text())


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


def build_feature_spec(
    manifest: dict[str, Any], impressions_train: pl.DataFrame, orders_train: pl.DataFrame
) -> FeatureSpec:
    """Input columns from the manifest and string vocabularies from the training rows."""

    def sorted_values(frame: pl.DataFrame, column: str) -> list[str]:
        return sorted(frame.get_column(column).cast(pl.String).drop_nulls().unique().to_list())

    return FeatureSpec(
        impression_dense=list(manifest["impression_dense"]),
        order_dense=list(manifest["order_dense"]),
        order_categorical=list(manifest["order_categorical"]),
        categories=sorted_values(impressions_train, "category"),
        order_categorical_values={
            column: sorted_values(orders_train, column) for column in manifest["order_categorical"]
        },
    )


def build_model(
    spec: FeatureSpec, impressions_train: pl.DataFrame, orders_train: pl.DataFrame, config: MultiTaskConfig
) -> MultiTaskNet:
    """A freshly initialised network whose id vocabularies are the training rows' users and items."""
    user_ids = pl.concat([impressions_train.get_column("user_id"), orders_train.get_column("user_id")])
    user_vocabulary = np.sort(user_ids.drop_nulls().unique().to_numpy().astype(np.int64))  # [n_users]
    item_vocabulary = np.sort(impressions_train.get_column("item_id").drop_nulls().unique().to_numpy().astype(np.int64))
    model = MultiTaskNet(
        MultiTaskModelConfig(
            n_users=user_vocabulary.size,
            n_items=item_vocabulary.size,
            n_categories=len(spec.categories),
            order_categorical_sizes=tuple(len(spec.order_categorical_values[c]) for c in spec.order_categorical),
            n_impression_dense=len(spec.impression_dense),
            n_order_dense=len(spec.order_dense),
            embedding_dim=config.embedding_dim,
            categorical_embedding_dim=config.categorical_embedding_dim,
            hidden_dims=tuple(config.hidden_dims),
            head_hidden_dim=config.head_hidden_dim,
            fraud_hidden_dims=tuple(config.fraud_hidden_dims),
            dropout=config.dropout,
        )
    )
    model.user_vocabulary.copy_(torch.from_numpy(user_vocabulary))
    model.item_vocabulary.copy_(torch.from_numpy(item_vocabulary))
    return model


def init_output_biases(model: MultiTaskNet, impressions: Tensors, orders: Tensors) -> None:
    """Start each head at its training base rate (log-odds), so early steps learn ranking, not the prior."""

    def log_odds(rate: float) -> float:
        rate = min(max(rate, 1e-4), 1 - 1e-4)
        return math.log(rate / (1 - rate))

    clicked, converted = impressions["clicked"], impressions["converted"]  # [rows] each
    with torch.no_grad():
        model.click_head[-1].bias.fill_(log_odds(clicked.mean().item()))
        if clicked.sum() > 0:  # the CVR head predicts conversion given a click
            model.cvr_head[-1].bias.fill_(log_odds((converted.sum() / clicked.sum()).item()))
        if orders["is_fraud"].numel():
            model.fraud_tower[-1].bias.fill_(log_odds(orders["is_fraud"].mean().item()))


def set_dense_scaling(mean: torch.Tensor, std: torch.Tensor, dense: torch.Tensor) -> None:
    """Fill a model's mean/std buffers from training features [rows, n_dense]; constant columns get std 1."""
    if dense.shape[0] == 0 or dense.shape[1] == 0:
        return
    column_mean = dense.double().mean(dim=0)  # [n_dense]
    column_std = dense.double().std(dim=0, unbiased=False)  # [n_dense]
    mean.copy_(column_mean.float())
    std.copy_(torch.where(column_std > 1e-6, column_std, torch.ones_like(column_std)).float())


def drop_ids(rows: torch.Tensor, rate: float, generator: torch.Generator) -> torch.Tensor:
    """Replace a random ``rate`` share of embedding rows by the unseen row, so row 0 is trained too."""
    if rate <= 0:
        return rows
    mask = torch.rand(rows.shape, generator=generator) < rate  # same shape as rows
    return rows.masked_fill(mask, UNSEEN_ROW)


def impression_losses(model: MultiTaskNet, batch: Tensors, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(click BCE, ctcvr BCE) of one impression batch."""
    with autocast_for(device):
        click_logit, cvr_logit = model.forward_impressions(
            batch["user_rows"], batch["item_rows"], batch["category_rows"], batch["dense"]
        )  # [batch] each
    return esmm_losses(click_logit, cvr_logit, batch["clicked"], batch["converted"])


def fraud_loss(
    model: MultiTaskNet, batch: Tensors, device: torch.device, pos_weight: torch.Tensor | None
) -> torch.Tensor:
    """Fraud BCE of one order batch."""
    with autocast_for(device):
        logit = model.forward_orders(batch["user_rows"], batch["categorical_rows"], batch["dense"])  # [batch]
    return F.binary_cross_entropy_with_logits(logit.float(), batch["is_fraud"], pos_weight=pos_weight)


def take_batch(
    tensors: Tensors,
    index: torch.Tensor,
    id_keys: tuple[str, ...],
    id_dropout: float,
    generator: torch.Generator,
    device: torch.device,
) -> Tensors:
    """Rows ``index`` of every tensor, with id dropout applied to ``id_keys`` (on the CPU), moved to ``device``."""
    batch = {key: value[index] for key, value in tensors.items()}
    for key in id_keys:
        batch[key] = drop_ids(batch[key], id_dropout, generator)
    return {key: value.to(device) for key, value in batch.items()}


def train_one_epoch(
    model: MultiTaskNet,
    optimizer: torch.optim.Optimizer,
    impressions: Tensors,
    orders: Tensors,
    config: MultiTaskConfig,
    device: torch.device,
    generator: torch.Generator,
) -> dict[str, float | None]:
    """One pass over the training impressions and orders; returns mean training losses per task."""
    model.train()
    n_impressions = impressions["user_rows"].shape[0]
    n_orders = orders["user_rows"].shape[0] if orders else 0
    n_steps = max(math.ceil(n_impressions / config.batch_size), math.ceil(n_orders / config.batch_size), 1)
    impression_batches = torch.randperm(n_impressions, generator=generator).tensor_split(n_steps)
    order_batches = torch.randperm(n_orders, generator=generator).tensor_split(n_steps)
    pos_weight = None if config.fraud_pos_weight is None else torch.tensor(config.fraud_pos_weight, device=device)
    # Loss sums stay tensors until the epoch ends: .item() per step would stall a GPU on every batch.
    sums = {task: torch.zeros((), device=device) for task in ("click", "ctcvr", "fraud")}
    for impression_index, order_index in zip(impression_batches, order_batches, strict=True):
        loss = torch.zeros((), device=device)
        if impression_index.numel():
            batch = take_batch(impressions, impression_index, IMPRESSION_ID_KEYS, config.id_dropout, generator, device)
            click, ctcvr = impression_losses(model, batch, device)
            loss = loss + config.click_weight * click + config.ctcvr_weight * ctcvr
            sums["click"] += click.detach() * impression_index.numel()
            sums["ctcvr"] += ctcvr.detach() * impression_index.numel()
        if order_index.numel():
            batch = take_batch(orders, order_index, ORDER_ID_KEYS, config.id_dropout, generator, device)
            fraud = fraud_loss(model, batch, device, pos_weight)
            loss = loss + config.fraud_weight * fraud
            sums["fraud"] += fraud.detach() * order_index.numel()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip_norm)
        optimizer.step()
    return {
        "click": sums["click"].item() / n_impressions if n_impressions else None,
        "ctcvr": sums["ctcvr"].item() / n_impressions if n_impressions else None,
        "fraud": sums["fraud"].item() / n_orders if n_orders else None,  # None, not NaN: metrics.json stays strict JSON
    }


@torch.inference_mode()
def evaluate(model: MultiTaskNet, impressions: Tensors, orders: Tensors, config: MultiTaskConfig) -> dict[str, Any]:
    """Eval losses (click, ctcvr, fraud), ranking metrics, and the weighted loss early stopping watches."""
    model.eval()
    result: dict[str, Any] = {}
    monitored = []
    if impressions and impressions["user_rows"].numel():
        p_click, p_purchase = predict_impression_tensors(model, impressions, config.predict_batch_size)
        click = binary_metrics(impressions["clicked"].numpy(), p_click)
        purchase = binary_metrics(impressions["converted"].numpy(), p_purchase)
        result |= {"click": click["log_loss"], "ctcvr": purchase["log_loss"]}
        result |= {"click_auc": click["auc"], "purchase_auc": purchase["auc"]}
        monitored += [config.click_weight * click["log_loss"], config.ctcvr_weight * purchase["log_loss"]]
    if orders and orders["user_rows"].numel():
        p_fraud = predict_order_tensors(model, orders, config.predict_batch_size)
        fraud = binary_metrics(orders["is_fraud"].numpy(), p_fraud)
        result |= {"fraud": fraud["log_loss"], "fraud_auc": fraud["auc"]}
        monitored.append(config.fraud_weight * fraud["log_loss"])
    result["monitored"] = sum(monitored) if monitored else None
    return result


def fit(
    model: MultiTaskNet,
    train: tuple[Tensors, Tensors],
    evaluation: tuple[Tensors, Tensors],
    config: MultiTaskConfig,
    device: torch.device,
    generator: torch.Generator,
) -> tuple[list[dict[str, Any]], int]:
    """AdamW, gradient clipping, early stopping; leaves the best epoch's weights in ``model``.

    Returns the per-epoch history (epoch 0 = the untrained model's eval) and the best epoch.
    """
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    history = [{"epoch": 0, "train": None, "eval": evaluate(model, *evaluation, config)}]  # before any step
    log.info("epoch 0 (untrained) eval %s", _format(history[0]["eval"]))
    best_loss, best_epoch, best_state, stale = math.inf, 0, None, 0
    for epoch in range(1, config.max_epochs + 1):
        started = time.perf_counter()
        train_losses = train_one_epoch(model, optimizer, *train, config, device, generator)
        eval_result = evaluate(model, *evaluation, config)
        wall_s = time.perf_counter() - started
        n_samples = sum(tensors["user_rows"].shape[0] for tensors in train if tensors)
        history.append(
            {
                "epoch": epoch,
                "train": train_losses,
                "eval": eval_result,
                "wall_s": wall_s,
                "samples_per_s": n_samples / wall_s,
            }
        )
        log.info(
            "epoch %d train %s | eval %s (%.1fs, %.0f samples/s)",
            epoch,
            _format(train_losses),
            _format(eval_result),
            wall_s,
            n_samples / wall_s,
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


def train_multitask(
    features_dir: Path, output_dir: Path, config: MultiTaskConfig = MultiTaskConfig()
) -> TrainingSummary:
    """Train click/purchase/fraud on ``features_dir``; write model, metrics and predictions to ``output_dir``."""
    started = time.perf_counter()
    features_dir, output_dir = Path(features_dir), Path(output_dir)
    manifest = read_manifest(features_dir)
    ds = date.fromisoformat(manifest["ds"])
    # The model's source is hashed too, so a code change never reuses a version name for other weights.
    sources = [Path(__file__), Path(multitask_module.__file__)]
    model_version = compute_model_version(
        "mtl", ds, config.to_json(), [*(features_dir / name for name in INPUT_FILES), *sources]
    )
    impressions = pl.read_parquet(features_dir / "impressions.parquet")
    orders = pl.read_parquet(features_dir / "orders.parquet")
    candidates = pl.read_parquet(features_dir / "candidates.parquet")

    impressions_train = impressions.filter(pl.col("split") == "train")
    impressions_eval = impressions.filter(pl.col("split") == "eval")
    orders_train = orders.filter((pl.col("split") == "train") & pl.col("is_fraud").is_not_null())
    orders_eval = orders.filter((pl.col("split") == "eval") & pl.col("is_fraud").is_not_null())
    orders_scored = orders.filter(pl.col("split").is_in(["eval", "score"]))
    if impressions_train.is_empty():
        raise ValueError(f"{features_dir / 'impressions.parquet'} has no split == 'train' rows to learn from")
    if orders_train.is_empty():
        log.warning("no labelled training orders: the fraud head stays untrained and p_fraud is written as null")
    device = resolve_device(config.device)
    log.info(
        "training %s on %s: %d/%d train/eval impressions, %d/%d train/eval orders",
        model_version,
        device,
        impressions_train.height,
        impressions_eval.height,
        orders_train.height,
        orders_eval.height,
    )

    with seeded_torch(config.seed, device, config.num_threads) as generator:
        spec = build_feature_spec(manifest, impressions_train, orders_train)
        model = build_model(spec, impressions_train, orders_train, config)
        train = (encode_impressions(model, spec, impressions_train), encode_orders(model, spec, orders_train))
        set_dense_scaling(model.impression_dense_mean, model.impression_dense_std, train[0]["dense"])
        set_dense_scaling(model.order_dense_mean, model.order_dense_std, train[1]["dense"])
        init_output_biases(model, *train)
        evaluation = (encode_impressions(model, spec, impressions_eval), encode_orders(model, spec, orders_eval))
        model.to(device)
        history, best_epoch = fit(model, train, evaluation, config, device, generator)

        p_click, p_purchase = predict_impression_tensors(model, evaluation[0], config.predict_batch_size)
        candidate_click, candidate_purchase = predict_impression_tensors(
            model, encode_impressions(model, spec, candidates), config.predict_batch_size
        )
        p_fraud = predict_order_tensors(model, encode_orders(model, spec, orders_scored), config.predict_batch_size)

    predictions_dir = output_dir / "predictions"
    predictions_dir.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(
        {"event_id": impressions_eval.get_column("event_id"), "p_click": p_click, "p_purchase": p_purchase}
    ).cast({"p_click": pl.Float64, "p_purchase": pl.Float64}).write_parquet(
        predictions_dir / "impressions_eval.parquet"
    )
    pl.DataFrame(
        {
            "user_id": candidates.get_column("user_id"),
            "item_id": candidates.get_column("item_id"),
            "p_click": candidate_click,
            "p_purchase": candidate_purchase,
        }
    ).cast({"p_click": pl.Float64, "p_purchase": pl.Float64}).write_parquet(predictions_dir / "candidates.parquet")
    scored_orders = orders_scored.select("order_id", "split").with_columns(
        pl.Series("p_fraud", p_fraud, dtype=pl.Float64)
    )
    if orders_train.is_empty():  # an untrained head's ~0.5 is no score: publish nulls instead
        scored_orders = scored_orders.with_columns(pl.lit(None, dtype=pl.Float64).alias("p_fraud"))
    scored_orders.write_parquet(predictions_dir / "orders.parquet")

    fraud_eval = scored_orders.filter((pl.col("split") == "eval") & pl.col("p_fraud").is_not_null()).join(
        orders_eval.select("order_id", "is_fraud"), on="order_id", how="inner"
    )
    metrics = (
        metric_rows("click", impressions_eval.get_column("clicked").to_numpy(), p_click)
        + metric_rows("purchase", impressions_eval.get_column("converted").to_numpy(), p_purchase)
        + metric_rows(
            "fraud", fraud_eval.get_column("is_fraud").to_numpy(), fraud_eval.get_column("p_fraud").to_numpy()
        )
    )
    summary = TrainingSummary(
        model_name=MODEL_NAME,
        model_version=model_version,
        output_dir=output_dir,
        metrics=metrics,
        device=str(device),
        n_train={"click": impressions_train.height, "purchase": impressions_train.height, "fraud": orders_train.height},
        wall_s=0.0,
    )
    bundle = MultiTaskBundle(
        model=model, spec=spec, model_version=model_version, extra={"ds": ds.isoformat(), "training": asdict(config)}
    )
    save_multitask(bundle, output_dir)
    summary.wall_s = time.perf_counter() - started
    write_json(output_dir / "metrics.json", {**summary.to_dict(), "best_epoch": best_epoch, "history": history})
    log.info("trained %s in %.1fs: %s", model_version, summary.wall_s, _format_metrics(metrics))
    return summary


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
    parser.add_argument("--seed", type=int, default=MultiTaskConfig.seed)
    parser.add_argument("--max-epochs", type=int, default=MultiTaskConfig.max_epochs)
    parser.add_argument("--num-threads", type=int, default=MultiTaskConfig.num_threads)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = MultiTaskConfig(seed=args.seed, max_epochs=args.max_epochs, num_threads=args.num_threads)
    summary = train_multitask(args.features_dir, args.output_dir, config)
    print(json.dumps(summary.to_dict(), indent=2))


if __name__ == "__main__":
    main()
