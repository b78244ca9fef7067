"""The training loop: mixed multi-task steps, evaluation per epoch, early stopping.

Every optimizer step takes one batch of each kind that has a trained objective and combines their
losses (``training/loss_weighting.py``); which rows each step holds is ``training/sampler.py``'s.

Model selection is per batch kind, on validation rows held out of training from the days before D
(``training.config.ValidationSplit``; day D only reports): a kind stops training after ``patience``
epochs without a lower validation loss (the sum of its objectives' losses: click and purchase share
the impressions and one epoch, so p_purchase = p_click * p_cvr comes from one network), and each
objective is served from its kind's best epoch (``training/selection.py``). The kinds still training go on
without the stopped ones, so a kind that converges late (the image head) costs only its own steps.

On several CPU cores, ``fit`` trains data-parallel replicas (``training/parallel.py``): each takes
its own batches of every kind each step, their gradients are averaged, and replica 0 validates and
decides which kinds stop (``sampler.count_replicas`` says how many). Processes launched by torchrun
(``training/distributed.py``) do the same, each on its own shard of the rows, through DDP.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.nn import functional as F

from training.config import MultiTaskConfig
from training.data import OBJECTIVE_KIND, UNSEEN_ROW, ItemTable, Tensors, n_rows, select_rows
from training.evaluation import binary_metrics, category_metrics
from training.loss_weighting import GradNormWeighting, LossWeighting
from training.multitask import MultiTaskNet, autocast_for, esmm_losses, with_image_features
from training.parallel import Replica, resolve_processes, run_replicas
from training.predict import predict_impression_tensors, predict_item_tensors, predict_order_tensors, predict_review_tensors
from training.sampler import count_replicas, plan_epoch
from training.selection import FitResult, KindSelection, kind_loss, kind_objectives, snapshot_state

log = logging.getLogger(__name__)

ID_KEYS = {  # inputs that id dropout may set to row 0, per batch kind
    "impression": ("user_rows", "item_rows", "category_rows", "scenario_rows", "history_item_rows"),
    "review": ("user_rows", "item_rows", "category_rows"),
    "item": (),
    "order": ("user_rows", "categorical_rows"),
}


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
        if key in batch:  # the behaviour sequence is absent when the network reads none
            batch[key] = drop_ids(batch[key], id_dropout, generator)
    return {key: value.to(device) for key, value in batch.items()}


# The MultiTaskConfig fields of each batch kind: (passes per epoch, rows per step).
def objective_losses(
    model: MultiTaskNet,
    batches: dict[str, Tensors],
    items: ItemTable,
    trained: tuple[str, ...],
    config: MultiTaskConfig,
    device: torch.device,
    generator: torch.Generator,
) -> dict[str, torch.Tensor]:
    """Mean loss per trained objective over its batch in this step (objectives without a batch are absent)."""
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


class ObjectiveLosses(torch.nn.Module):
    """``objective_losses`` as a module's forward, so that ``DistributedDataParallel`` can wrap it: DDP
    prepares its gradient all-reduce in its own forward, which the network's per-kind forwards bypass."""

    def __init__(self, model: MultiTaskNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, batches: dict[str, Tensors], *args: Any) -> dict[str, torch.Tensor]:
        """The step's loss per objective: ``objective_losses(model, batches, *args)``."""
        return objective_losses(self.model, batches, *args)


WIDE_PARAMETERS = ("review_text_linear.",)  # state_dict prefixes trained at MultiTaskConfig.wide_learning_rate


@dataclass
class Optimizers:
    """AdamW over the network's dense parameters, SparseAdam over its sparse embedding tables, and Adam
    for the loss weighting's own parameters (uncertainty s_i, GradNorm w_i)."""

    network: torch.optim.Optimizer
    sparse: torch.optim.Optimizer | None  # the id tables with sparse gradients (training/multitask.py)
    weighting: torch.optim.Optimizer | None
    parameters: list[torch.nn.Parameter] = field(default_factory=list)  # the network's trainable parameters
    dense: list[torch.nn.Parameter] = field(default_factory=list)  # those with dense gradients (clipped)

    def all(self) -> list[torch.optim.Optimizer]:
        """Every optimizer there is."""
        return [optimizer for optimizer in (self.network, self.sparse, self.weighting) if optimizer is not None]


def sparse_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The weights of the embedding tables that produce sparse gradients."""
    return [
        module.weight for module in model.modules()
        if isinstance(module, torch.nn.Embedding) and module.sparse and module.weight.requires_grad
    ]  # fmt: skip


def build_optimizers(model: MultiTaskNet, weighting: LossWeighting, config: MultiTaskConfig) -> Optimizers:
    """AdamW over the dense parameters, SparseAdam over the sparse id tables (lazy Adam: a row's moments
    and weights move only on steps that use it, the usual optimizer of large embedding tables; it has
    no weight decay, and id dropout regularises those rows instead), Adam (no weight decay) over the
    weighting's parameters when it has any."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    sparse_ids = {id(p) for p in sparse_parameters(model)}
    dense = [p for p in parameters if id(p) not in sparse_ids]
    sparse = [p for p in parameters if id(p) in sparse_ids]
    # foreach: one multi-tensor kernel per Adam operation instead of one per parameter tensor
    # (the per-tensor loop cost ~4.5 ms of a ~15 ms step on the demo data, one CPU thread).
    # The review head's wide part (one weight per hashed n-gram) takes larger steps, as wide & deep
    # trains its wide part with its own optimizer: at the deep part's rate it stays near zero for the
    # few epochs before the deep part overfits a small review set.
    wide_ids = {id(p) for name, p in model.named_parameters() if name.startswith(WIDE_PARAMETERS)}
    groups = [{"params": [p for p in dense if id(p) not in wide_ids]}]
    if wide_ids:
        groups.append({"params": [p for p in dense if id(p) in wide_ids], "lr": config.wide_learning_rate, "weight_decay": 0.0})
    network = torch.optim.AdamW(groups, lr=config.learning_rate, weight_decay=config.weight_decay, foreach=True)
    sparse_optimizer = torch.optim.SparseAdam(sparse, lr=config.learning_rate) if sparse else None
    own = list(weighting.parameters())
    weighting_optimizer = torch.optim.Adam(own, lr=config.loss_weight_learning_rate, foreach=True) if own else None
    return Optimizers(network=network, sparse=sparse_optimizer, weighting=weighting_optimizer, parameters=parameters, dense=dense)


def train_step(
    model: MultiTaskNet,
    weighting: LossWeighting,
    optimizers: Optimizers,
    losses: dict[str, torch.Tensor],
    config: MultiTaskConfig,
    replica: Replica = Replica(),
) -> None:
    """One update from the step's objective losses under the configured loss weighting, with the
    gradients averaged over the data-parallel replicas (a replica whose share of the step had no
    rows has no losses, yet joins the average)."""
    for optimizer in optimizers.all():
        optimizer.zero_grad(set_to_none=True)
    if isinstance(weighting, GradNormWeighting):
        if losses:
            weighting.backward(losses, optimizers.parameters)
    elif losses:
        weighting.combine(losses).backward()
    sparse = optimizers.sparse.param_groups[0]["params"] if optimizers.sparse is not None else []
    replica.average_gradients([*optimizers.dense, *weighting.parameters()], sparse)
    # The global norm of the dense gradients; torch's clipping takes no sparse gradient, and the id
    # tables' sparse rows need none (Adam's per-coordinate scaling bounds each row's step).
    torch.nn.utils.clip_grad_norm_(optimizers.dense, config.grad_clip_norm)
    for optimizer in optimizers.all():
        optimizer.step()
    if isinstance(weighting, GradNormWeighting):
        weighting.renormalize()


@dataclass(frozen=True)
class EpochStats:
    """What one training epoch did: mean loss and rows per objective, and all rows processed."""

    losses: dict[str, float]
    rows: int  # rows of every kind, counted once (click and purchase share their impressions)
    rows_by_objective: dict[str, int]

    def rates(self, seconds: float) -> dict[str, float]:
        """Training rows per second per objective over ``seconds`` of training."""
        return {objective: rows / max(seconds, 1e-9) for objective, rows in self.rows_by_objective.items() if rows}


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
    replica: Replica = Replica(),
    noise: torch.Generator | None = None,
    network: torch.nn.Module | None = None,
) -> EpochStats:
    """One epoch of mixed steps: mean training loss and rows seen per trained objective, rows processed.

    ``generator`` plans the epoch and must be in the same state on every replica; ``noise`` (id
    dropout, image augmentation; ``generator`` when None) is the replica's own. ``network``: what the
    forward runs through (``replica.wrap`` of ``ObjectiveLosses(model)``; that itself when None)."""
    model.train()
    noise = generator if noise is None else noise
    network = ObjectiveLosses(model) if network is None else network
    sizes = {kind: n_rows(tensors) for kind, tensors in train.items()}
    # Loss sums stay tensors until the epoch ends: .item() per step would stall a GPU on every batch.
    sums = torch.zeros(len(trained), device=device)  # [objectives] loss x rows
    counts = torch.zeros(len(trained), dtype=torch.float64)  # [objectives] rows
    processed = 0
    for step in plan_epoch(sizes, config, generator, replica.world, replica.count_totals(sizes)):
        shares = {kind: replica.shard(index) for kind, index in step.items()}
        batches = {
            kind: take_batch(train[kind], index, ID_KEYS[kind], config.id_dropout, noise, device)
            for kind, index in shares.items() if index.numel()
        }  # fmt: skip
        losses = network(batches, items, trained, config, device, noise)
        if not losses and replica.world == 1:
            continue
        train_step(model, weighting, optimizers, losses, config, replica)
        for objective, loss in losses.items():
            rows = shares[OBJECTIVE_KIND[objective]].numel()
            sums[trained.index(objective)] += loss.detach() * rows
            counts[trained.index(objective)] += rows
        processed += sum(index.numel() for index in shares.values())
    totals = replica.sum(torch.cat([sums.double().cpu(), counts, torch.tensor([float(processed)], dtype=torch.float64)]))
    sums, counts = totals[: len(trained)], totals[len(trained) : 2 * len(trained)]
    rows_by_objective = {objective: int(counts[i]) for i, objective in enumerate(trained)}
    losses = {objective: float(sums[i] / counts[i]) for i, objective in enumerate(trained) if counts[i] > 0}
    return EpochStats(losses=losses, rows=int(totals[-1]), rows_by_objective=rows_by_objective)


@torch.inference_mode()
def evaluate(
    model: MultiTaskNet,
    rows: dict[str, Tensors],
    items: ItemTable,
    objectives: tuple[str, ...],
    config: MultiTaskConfig,
) -> dict[str, Any]:
    """Loss per objective of ``objectives`` ({objective}) and ranking/accuracy metrics
    ({objective}_auc, category_accuracy) on encoded rows (the validation rows, in training)."""
    model.eval()
    result: dict[str, Any] = {}
    batch_size = config.predict_batch_size
    if {"click", "purchase"} & set(objectives) and n_rows(rows.get("impression", {})):
        tensors = rows["impression"]
        p_click, p_purchase = predict_impression_tensors(model, tensors, items, batch_size)
        for objective, label, p in (("click", "clicked", p_click), ("purchase", "converted", p_purchase)):
            if objective in objectives:
                metrics = binary_metrics(tensors[label].numpy(), p)
                result |= {objective: metrics["log_loss"], f"{objective}_auc": metrics["auc"]}
    if "review" in objectives and n_rows(rows.get("review", {})):
        tensors = rows["review"]
        metrics = binary_metrics(tensors["negative"].numpy(), predict_review_tensors(model, tensors, items, batch_size))
        result |= {"review": metrics["log_loss"], "review_auc": metrics["auc"]}
    if "category" in objectives and n_rows(rows.get("item", {})):
        tensors = rows["item"]
        metrics = category_metrics(tensors["label"].numpy(), predict_item_tensors(model, tensors, items))
        result |= {"category": metrics["log_loss"], "category_accuracy": metrics["accuracy"]}
    if "fraud" in objectives and n_rows(rows.get("order", {})):
        tensors = rows["order"]
        metrics = binary_metrics(tensors["is_fraud"].numpy(), predict_order_tensors(model, tensors, batch_size))
        result |= {"fraud": metrics["log_loss"], "fraud_auc": metrics["auc"]}
    return result


def fit(
    model: MultiTaskNet,
    weighting: LossWeighting,
    train: dict[str, Tensors],
    validation: dict[str, Tensors],
    items: ItemTable,
    trained: tuple[str, ...],
    config: MultiTaskConfig,
    device: torch.device,
    generator: torch.Generator,
    replica: Replica | None = None,
) -> FitResult:
    """AdamW, gradient clipping, early stopping per batch kind on the validation rows, on
    ``config.processes`` data-parallel replicas (training/parallel.py), or as the torchrun rank
    ``replica`` (training/distributed.py). ``model`` ends with the last epoch's weights; the result
    holds each objective's best epoch and its weights (empty on every replica but the first)."""
    if replica is not None:
        return fit_on_replica(model, weighting, train, validation, items, trained, config, device, generator, replica)
    sizes = {kind: n_rows(tensors) for kind, tensors in train.items()}
    processes = count_replicas(sizes, config, resolve_processes(config.processes, device))
    log.info("training on %d data-parallel replica(s)", processes)

    def fit_replica(replica: Replica) -> FitResult:
        return fit_on_replica(model, weighting, train, validation, items, trained, config, device, generator, replica)

    return run_replicas(processes, fit_replica)


def fit_on_replica(
    model: MultiTaskNet,
    weighting: LossWeighting,
    train: dict[str, Tensors],
    validation: dict[str, Tensors],
    items: ItemTable,
    trained: tuple[str, ...],
    config: MultiTaskConfig,
    device: torch.device,
    generator: torch.Generator,
    replica: Replica,
) -> FitResult:
    """``fit``'s loop on one replica: every replica trains on its share of each step of the kinds still
    training; replica 0 alone validates, decides which kinds stop and keeps the best weights (the
    others return an empty result)."""
    optimizers = build_optimizers(model, weighting, config)
    network = replica.wrap(ObjectiveLosses(model), weighting)
    schedules = [
        torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=config.learning_rate_decay)
        for optimizer in (optimizers.network, optimizers.sparse) if optimizer is not None
    ]  # fmt: skip
    noise = None  # alone: one generator, as before; replicas: their own id dropout and augmentation draws
    if replica.world > 1:
        noise = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)) + replica.rank)
    objectives_of = kind_objectives(trained)
    kinds = [kind for kind in objectives_of if kind in train]
    selection = {kind: KindSelection() for kind in kinds}
    snapshots: dict[int, dict[str, torch.Tensor]] = {}
    items = with_image_features(model, items)  # the CNN's features as of now, for the first epoch's steps
    history: list[dict[str, Any]] = []
    if replica.leads:
        history.append({"epoch": 0, "train": None, "validation": evaluate(model, validation, items, trained, config)})
        log_epoch(0, None, None, history[0]["validation"], trained, selection, config)
    for epoch in range(1, config.max_epochs + 1):
        active = [kind for kind in kinds if not selection[kind].stopped]
        active_objectives = tuple(o for o in trained if OBJECTIVE_KIND[o] in active)
        started = time.perf_counter()
        stats = train_one_epoch(
            model, weighting, optimizers, {kind: train[kind] for kind in active}, items, active_objectives,
            config, device, generator, replica, noise, network,
        )  # fmt: skip
        train_s = time.perf_counter() - started
        rates = stats.rates(train_s)
        for schedule in schedules:
            schedule.step()
        items = with_image_features(model, items)  # refreshed once per epoch (see training/multitask.py)
        if replica.leads:
            result = evaluate(model, validation, items, active_objectives, config)
            improved = [kind for kind in active if selection[kind].update(epoch, kind_loss(result, objectives_of[kind]), config)]
            if improved:
                snapshots[epoch] = snapshot_state(model)
            kept = {selection[kind].best_epoch for kind in kinds}
            snapshots = {kept_epoch: state for kept_epoch, state in snapshots.items() if kept_epoch in kept}
            stopped = [kind for kind in active if selection[kind].stopped]
            wall_s = time.perf_counter() - started
            history.append(
                {
                    "epoch": epoch,
                    "train": stats.losses,
                    "validation": result,
                    "improved": improved,
                    "stopped": stopped,
                    "loss_weights": weighting.objective_weights(),
                    "wall_s": wall_s,
                    "replicas": replica.world,
                    "samples_per_s": stats.rows / train_s if train_s > 0 else None,
                    "samples_per_s_by_objective": rates,
                }
            )
            log_epoch(epoch, wall_s, stats.rows / max(train_s, 1e-9), result, active_objectives, selection, config)
        flags = replica.follow_leader([selection[kind].stopped for kind in kinds])
        for kind, flag in zip(kinds, flags, strict=True):
            selection[kind].stopped = flag
        if all(flags):
            break
    if not replica.leads:
        return FitResult(history=[], best_epochs={}, snapshots={})
    last_epoch = history[-1]["epoch"]
    if last_epoch not in snapshots:
        snapshots[last_epoch] = snapshot_state(model)
    best_epochs = {}
    for objective in trained:
        best = selection[OBJECTIVE_KIND[objective]].best_epoch if OBJECTIVE_KIND[objective] in selection else 0
        best_epochs[objective] = best if best in snapshots else last_epoch  # never improved (NaN loss): the last epoch
    snapshots = {epoch: state for epoch, state in snapshots.items() if epoch in set(best_epochs.values())}
    every_stopped = all(selection[kind].stopped for kind in kinds)
    log.info(
        "training stopped after epoch %d: %s; kept %s",
        last_epoch,
        "all objectives stopped early" if every_stopped else f"max_epochs {config.max_epochs} reached",
        " ".join(f"{objective}@{epoch}" for objective, epoch in best_epochs.items()),
    )
    return FitResult(history=history, best_epochs=best_epochs, snapshots=snapshots)


def log_epoch(
    epoch: int,
    wall_s: float | None,
    samples_per_s: float | None,
    result: dict[str, Any],
    objectives: tuple[str, ...],
    selection: dict[str, KindSelection],
    config: MultiTaskConfig,
) -> None:
    """One short line for the epoch, then one per objective: its validation loss and metric, the epoch
    it would be served from so far, and, on the epoch its batch kind stops, that it stopped and why."""
    if wall_s is None:
        log.info("epoch %d: the untrained network", epoch)
    else:
        log.info("epoch %d: %.1fs, %.0f samples/s", epoch, wall_s, samples_per_s)
    for objective in objectives:
        kind = selection.get(OBJECTIVE_KIND[objective], KindSelection())
        metric = next((f" {key.split('_', 1)[1]} {value:.4f}" for key, value in result.items()
                       if key.startswith(f"{objective}_") and isinstance(value, float)), "")  # fmt: skip
        loss = result.get(objective)
        stopped = f"; stopped (no better validation loss in {config.patience} epochs)" if kind.stopped and kind.stale == config.patience else ""
        log.info(
            "epoch %d %s: validation loss %s%s, best epoch %d%s",
            epoch, objective, "n/a" if loss is None else f"{loss:.4f}", metric, kind.best_epoch, stopped,
        )  # fmt: skip
