"""Saving, loading and scoring the multi-task network.

A saved model is ``model.pt`` (a state_dict, loaded with ``weights_only=True``: never pickle) and
``config.json`` (``MultiTaskModelConfig``, the ``FeatureSpec`` vocabularies, the training config,
day and objectives): enough to rebuild the module. Scoring a features directory writes the
prediction files of ``etl.layout.PREDICTIONS``; training and the gate's re-evaluation of a saved
champion go through the same ``predict_features`` and ``eval_metric_rows``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from etl.contract import MULTITASK, OBJECTIVES
from etl.io import write_atomically, write_json_atomically, write_parquet_atomically
from etl.layout import CONFIG_FILE, WEIGHTS_FILES, prediction_path
from training.data import (
    FeatureSpec,
    FeatureTables,
    ItemTable,
    Tensors,
    batched,
    empty_item_table,
    encode_impressions,
    encode_item_labels,
    encode_item_table,
    encode_orders,
    encode_reviews,
    read_feature_tables,
)
from training.device import seeded_torch
from training.evaluation import LABEL_JOINS, category_metric_rows, objective_metric_rows, scenario_metric_rows
from training.item_cache import load_item_table
from training.multitask import (
    OBJECTIVE_PARAMETERS,
    MultiTaskModelConfig,
    MultiTaskNet,
    autocast_for,
    esmm_probabilities,
    with_image_features,
)
from training.summary import TrainingSummary

MODEL_FILE = WEIGHTS_FILES[MULTITASK]
PREDICTION_SCHEMAS = {
    "impressions_eval": {"event_id": pl.Int64, "p_click": pl.Float64, "p_purchase": pl.Float64},
    "candidates": {
        "user_id": pl.Int64, "item_id": pl.Int64, "scenario": pl.String, "p_click": pl.Float64, "p_purchase": pl.Float64,
    },
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


# --- saving and loading ------------------------------------------------------------------------------


@dataclass
class MultiTaskBundle:
    """A trained network with what it needs to score new frames. Each objective is served by the
    network of its best epoch (``networks``: objective -> network; objectives of one epoch share
    one); every network has the same vocabularies and config."""

    networks: dict[str, MultiTaskNet]
    spec: FeatureSpec
    model_version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # the rest of config.json (training config, ds, objectives)

    @property
    def model(self) -> MultiTaskNet:
        """A network of the bundle, for what all share (vocabularies, config, encoding)."""
        return next(iter(self.networks.values()))

    def network_for(self, objective: str) -> MultiTaskNet:
        """The network that serves ``objective`` (any network for an objective it was not trained on)."""
        return self.networks.get(objective, self.model)


def snapshot_key(network: MultiTaskNet, networks: dict[str, MultiTaskNet]) -> str:
    """The name of a network's weights in ``model.pt``: the first objective it serves."""
    return next(objective for objective, other in networks.items() if other is network)


def save_multitask(bundle: MultiTaskBundle, output_dir: Path) -> None:
    """Write ``model.pt`` (state_dicts only, one per distinct network, by the first objective each
    serves) and ``config.json`` (enough to rebuild the module, and which weights serve which objective)."""
    served = {objective: snapshot_key(network, bundle.networks) for objective, network in bundle.networks.items()}
    states = {
        key: {name: value.detach().cpu() for name, value in bundle.networks[key].state_dict().items()}
        for key in dict.fromkeys(served.values())
    }
    # Atomic: another day's gate may be loading this champion while the day is re-run.
    write_atomically(Path(output_dir) / MODEL_FILE, lambda path: torch.save(states, path))
    payload = {
        **bundle.extra,
        "model_version": bundle.model_version,
        "model": asdict(bundle.model.config),
        "features": asdict(bundle.spec),
        "served_by": served,
    }
    write_json_atomically(Path(output_dir) / CONFIG_FILE, payload)


def read_saved_model(output_dir: Path) -> tuple[dict[str, Any], dict[str, dict[str, torch.Tensor]], dict[str, str]]:
    """(config.json payload, state_dicts by name, objective -> the name of the state serving it) of a
    saved model; the weights load with ``weights_only=True``. A model saved before objectives had
    their own epochs holds one state_dict: it serves every objective (name ``""``)."""
    output_dir = Path(output_dir)
    payload = json.loads((output_dir / CONFIG_FILE).read_text())
    saved = torch.load(output_dir / MODEL_FILE, map_location="cpu", weights_only=True)
    served = payload.get("served_by")
    if served is None:  # the single-state layout
        trained = payload.get("objectives", payload.get("tasks", OBJECTIVES))
        return payload, {"": saved}, {objective: "" for objective in trained}
    return payload, saved, served


def merge_states(states: dict[str, dict[str, torch.Tensor]], served: dict[str, str]) -> dict[str, torch.Tensor]:
    """One state_dict standing for all of a saved model's (a warm start): each objective's own tower
    from the state serving it (``OBJECTIVE_PARAMETERS``), everything shared from the state serving
    the impression objectives (most of the data), or the first state without them."""
    base_key = served.get("click", served.get("purchase", next(iter(states))))
    merged = dict(states[base_key])
    for objective, prefixes in OBJECTIVE_PARAMETERS.items():
        if objective in served:
            own = states[served[objective]]
            merged |= {name: value for name, value in own.items() if name.startswith(prefixes)}
    return merged


def load_multitask(output_dir: Path, device: str | torch.device = "cpu") -> MultiTaskBundle:
    """Rebuild the networks from ``config.json`` and load ``model.pt`` with ``weights_only=True``."""
    payload, states, served = read_saved_model(output_dir)
    config = MultiTaskModelConfig.from_dict(payload.pop("model"))
    payload.pop("served_by", None)
    loaded: dict[str, MultiTaskNet] = {}
    for key, state in states.items():
        network = MultiTaskNet(config)
        network.load_state_dict(state, strict=True)
        loaded[key] = network.to(device).eval()
    spec = FeatureSpec(**payload.pop("features"))
    networks = {objective: loaded[key] for objective, key in served.items()}
    return MultiTaskBundle(networks=networks, spec=spec, model_version=payload.pop("model_version", ""), extra=payload)


# --- scoring encoded rows --------------------------------------------------------------------------


@torch.inference_mode()
def predict_impression_tensors(
    model: MultiTaskNet, tensors: Tensors, items: ItemTable, batch_size: int = 65536
) -> tuple[np.ndarray, np.ndarray]:
    """(p_click, p_purchase) as float32 numpy arrays for encoded impression rows (items with features)."""
    model.eval()
    device = model.item_content.weight.device
    p_click, p_purchase = [], []
    for batch in batched(tensors, batch_size, device):
        with autocast_for(device):
            click_logit, cvr_logit = model.forward_impressions(batch, items)
        p_ctr, p_ctcvr = esmm_probabilities(click_logit, cvr_logit)  # [batch] each
        p_click.append(p_ctr.cpu())
        p_purchase.append(p_ctcvr.cpu())
    if not p_click:
        return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.float32)
    return torch.cat(p_click).numpy(), torch.cat(p_purchase).numpy()


@torch.inference_mode()
def predict_review_tensors(model: MultiTaskNet, tensors: Tensors, items: ItemTable, batch_size: int = 65536) -> np.ndarray:
    """p_negative as a float32 numpy array for encoded review rows."""
    model.eval()
    device = model.item_content.weight.device
    parts = []
    for batch in batched(tensors, batch_size, device):
        with autocast_for(device):
            logit = model.forward_reviews(batch, items)  # [batch]
        parts.append(torch.sigmoid(logit.float()).cpu())
    return torch.cat(parts).numpy() if parts else np.zeros(0, dtype=np.float32)


@torch.inference_mode()
def predict_item_tensors(model: MultiTaskNet, tensors: Tensors, items: ItemTable, batch_size: int = 4096) -> np.ndarray:
    """Class probabilities [rows, n_item_classes] (float32 numpy) from the images of item table rows."""
    model.eval()
    device = model.item_content.weight.device
    rows = tensors["table_rows"]
    parts = []
    for start in range(0, rows.numel(), batch_size):
        images = items.images[rows[start : start + batch_size].to(items.images.device)].to(device)  # [b, 3, s, s]
        with autocast_for(device):
            logits = model.forward_item_images(images)  # [b, n_classes]
        parts.append(torch.softmax(logits.float(), dim=1).cpu())
    if not parts:
        return np.zeros((0, model.category_head.out_features), dtype=np.float32)
    return torch.cat(parts).numpy()


@torch.inference_mode()
def predict_order_tensors(model: MultiTaskNet, tensors: Tensors, batch_size: int = 65536) -> np.ndarray:
    """p_fraud as a float32 numpy array for encoded order rows."""
    model.eval()
    device = model.item_content.weight.device
    p_fraud = []
    for batch in batched(tensors, batch_size, device):
        with autocast_for(device):
            logit = model.forward_orders(batch)
        p_fraud.append(torch.sigmoid(logit.float()).cpu())  # [batch]
    if not p_fraud:
        return np.zeros(0, dtype=np.float32)
    return torch.cat(p_fraud).numpy()


def prepare_items(model: MultiTaskNet, items: pl.DataFrame | ItemTable | None) -> ItemTable:
    """An item table with ``model``'s image features, from a frame, a table, or nothing."""
    network = model.config.network
    if items is None:
        table = empty_item_table(network.text, network.image_size)
    elif isinstance(items, pl.DataFrame):
        table = encode_item_table(items, network.text, network.image_size)
    else:
        table = items
    return with_image_features(model, table)


def predict_impressions(
    bundle: MultiTaskBundle,
    frame: pl.DataFrame,
    batch_size: int = 65536,
    items: pl.DataFrame | ItemTable | None = None,
) -> pl.DataFrame:
    """``frame`` with p_click and p_purchase (= p_ctcvr) appended, for impression or candidate rows.

    ``items`` (the features directory's items frame) gives item vectors their image and title;
    without it every item scores as one without content.
    """
    model = bundle.network_for("click")
    table = prepare_items(model, items)
    tensors = encode_impressions(model, bundle.spec, frame, table)
    p_click, p_purchase = predict_impression_tensors(model, tensors, table, batch_size)
    return frame.with_columns(
        pl.Series("p_click", p_click, dtype=pl.Float64), pl.Series("p_purchase", p_purchase, dtype=pl.Float64)
    )


def predict_reviews(
    bundle: MultiTaskBundle, frame: pl.DataFrame, items: pl.DataFrame | ItemTable | None = None
) -> pl.DataFrame:
    """``frame`` with p_negative appended, for review rows."""
    model = bundle.network_for("review")
    table = prepare_items(model, items)
    tensors = encode_reviews(model, bundle.spec, frame, table)
    return frame.with_columns(pl.Series("p_negative", predict_review_tensors(model, tensors, table), dtype=pl.Float64))


def predict_categories(bundle: MultiTaskBundle, items: pl.DataFrame) -> pl.DataFrame:
    """Items that have a decodable image, with listed_category, predicted_category and confidence."""
    model = bundle.network_for("category")
    table = prepare_items(model, items)
    with_image = items.filter(pl.col("image").is_not_null())
    rows = table.rows_of(with_image.get_column("item_id"))  # [n]
    keep = table.has_image.cpu()[rows]  # [n] decodable images only
    with_image = with_image.filter(pl.Series(keep.numpy()))
    probabilities = predict_item_tensors(model, {"table_rows": rows[keep]}, table)  # [n, n_classes]
    return with_image.select("item_id", "split", pl.col("category").alias("listed_category")).with_columns(
        category_predictions(probabilities, bundle.spec.item_categories)
    )


def category_predictions(probabilities: np.ndarray, classes: list[str]) -> list[pl.Series]:
    """predicted_category (the most likely class) and its probability, as Series."""
    if probabilities.shape[0] == 0 or not classes:
        n = probabilities.shape[0]
        return [pl.Series("predicted_category", [None] * n, dtype=pl.String), pl.Series("confidence", [None] * n, dtype=pl.Float64)]
    best = probabilities.argmax(axis=1)  # [n]
    return [
        pl.Series("predicted_category", np.asarray(classes, dtype=object)[best], dtype=pl.String),
        pl.Series("confidence", probabilities[np.arange(best.size), best], dtype=pl.Float64),
    ]


def predict_orders(bundle: MultiTaskBundle, frame: pl.DataFrame, batch_size: int = 65536) -> pl.DataFrame:
    """``frame`` with p_fraud appended."""
    model = bundle.network_for("fraud")
    tensors = encode_orders(model, bundle.spec, frame)
    return frame.with_columns(pl.Series("p_fraud", predict_order_tensors(model, tensors, batch_size), dtype=pl.Float64))


# --- scoring a features directory (shared by training and the gate) -------------------------------


def predict_features(
    networks: dict[str, MultiTaskNet],
    spec: FeatureSpec,
    tables: FeatureTables,
    items: ItemTable,
    objectives: tuple[str, ...],
    batch_size: int,
    include_candidates: bool = True,
) -> dict[str, pl.DataFrame]:
    """Prediction frames (PREDICTION_SCHEMAS) of ``objectives`` on the day-D rows; the others' frames are empty.

    Each objective is scored by its network of ``networks`` (click and purchase by one: p_purchase =
    p_click * p_cvr), with that network's image features on ``items``. The items frame also keeps
    ``p_listed`` (the probability of the listed category) for the log loss; it is not written out.
    """
    empty = {name: pl.DataFrame(schema=schema) for name, schema in PREDICTION_SCHEMAS.items()}
    predictions = dict(empty)
    featured: dict[int, ItemTable] = {}  # the item table with each network's image features, computed once

    def network_and_items(objective: str) -> tuple[MultiTaskNet, ItemTable]:
        network = networks[objective]
        if id(network) not in featured:
            featured[id(network)] = with_image_features(network, items)
        return network, featured[id(network)]

    if {"click", "purchase"} & set(objectives):
        if {"click", "purchase"} <= set(objectives) and networks["click"] is not networks["purchase"]:
            raise ValueError("click and purchase must be served by one network (p_purchase = p_click * p_cvr)")
        model, items = network_and_items("click" if "click" in objectives else "purchase")

        def score(frame: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
            p_click, p_purchase = predict_impression_tensors(
                model, encode_impressions(model, spec, frame, items), items, batch_size
            )
            return frame.select(keys).with_columns(
                pl.Series("p_click", p_click, dtype=pl.Float64) if "click" in objectives else pl.lit(None, pl.Float64).alias("p_click"),
                pl.Series("p_purchase", p_purchase, dtype=pl.Float64)
                if "purchase" in objectives
                else pl.lit(None, pl.Float64).alias("p_purchase"),
            )

        predictions["impressions_eval"] = score(tables.impressions.filter(pl.col("split") == "eval"), ["event_id"])
        if include_candidates:  # a batch at a time: only the scores are kept
            scored = [score(batch, ["user_id", "item_id", "scenario"]) for batch in tables.candidate_batches()]
            predictions["candidates"] = pl.concat(scored) if scored else empty["candidates"]
    if "review" in objectives:
        model, items = network_and_items("review")
        reviews = tables.reviews.filter(pl.col("split") == "eval")
        p_negative = predict_review_tensors(model, encode_reviews(model, spec, reviews, items), items, batch_size)
        predictions["reviews"] = reviews.select("review_id", "split").with_columns(
            pl.Series("p_negative", p_negative, dtype=pl.Float64)
        )
    if "category" in objectives:
        model, items = network_and_items("category")
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
    if "fraud" in objectives:
        model, items = network_and_items("fraud")
        orders = tables.orders.filter(pl.col("split").is_in(["eval", "score"]))
        p_fraud = predict_order_tensors(model, encode_orders(model, spec, orders), batch_size)
        predictions["orders"] = orders.select("order_id", "split").with_columns(
            pl.Series("p_fraud", p_fraud, dtype=pl.Float64)
        )
    return predictions


def eval_scenario_metric_rows(
    tables: FeatureTables, predictions: dict[str, pl.DataFrame], objectives: tuple[str, ...]
) -> list[dict[str, Any]]:
    """``eval_metric_rows`` of click and purchase over each scenario's day-D impressions alone."""
    return [
        row
        for objective in ("click", "purchase")
        if objective in objectives
        for row in scenario_metric_rows(objective, predictions["impressions_eval"], tables.impressions)
    ]


def eval_metric_rows(tables: FeatureTables, predictions: dict[str, pl.DataFrame], objectives: tuple[str, ...]) -> list[dict[str, Any]]:
    """Metric rows {task, metric, value, n_rows} of ``objectives`` on the day-D rows with labels."""
    features = {"click": tables.impressions, "purchase": tables.impressions, "review": tables.reviews, "fraud": tables.orders}
    rows: list[dict[str, Any]] = []
    for objective in OBJECTIVES:
        if objective not in objectives:
            continue
        if objective == "category":
            rows += category_metric_rows(predictions["items"])
        else:
            prediction = predictions[LABEL_JOINS[objective].prediction]
            rows += objective_metric_rows(objective, prediction, features[objective])
    return rows


def write_predictions(predictions: dict[str, pl.DataFrame], model_dir: Path) -> None:
    """One Parquet file per prediction frame under ``model_dir/predictions``, in the columns of PREDICTION_SCHEMAS."""
    for name, schema in PREDICTION_SCHEMAS.items():
        frame = predictions[name].select(pl.col(column).cast(dtype) for column, dtype in schema.items())
        write_parquet_atomically(frame, prediction_path(model_dir, name))


def _predict_with_saved_model(
    model_dir: Path, features_dir: Path, include_candidates: bool
) -> tuple[MultiTaskBundle, Any, list[dict[str, Any]], list[dict[str, Any]]]:
    """(bundle, predictions, metric rows, per-scenario metric rows) of a saved model on ``features_dir``:
    training's own code path."""
    bundle = load_multitask(Path(model_dir))
    tables = read_feature_tables(Path(features_dir), impression_splits=("eval",))  # day D's rows are scored
    # "tasks": the key in config.json of models saved before objectives had their own name.
    trained = bundle.extra.get("objectives", bundle.extra.get("tasks", OBJECTIVES))
    objectives = tuple(objective for objective in trained if objective in tables.objectives_available)
    training = bundle.extra.get("training", {})
    with seeded_torch(training.get("seed", 0), torch.device("cpu"), training.get("num_threads", 1)):
        network = bundle.model.config.network
        items = load_item_table(tables, network.text, network.image_size)
        predictions = predict_features(
            bundle.networks,
            bundle.spec,
            tables,
            items,
            objectives,
            training.get("predict_batch_size", 65536),
            include_candidates=include_candidates,
        )
        return bundle, predictions, eval_metric_rows(tables, predictions, objectives), eval_scenario_metric_rows(
            tables, predictions, objectives
        )


def evaluate_multitask(model_dir: Path, features_dir: Path) -> list[dict[str, Any]]:
    """Metric rows of the saved model in ``model_dir`` on ``features_dir``'s day-D rows.

    The same rows and code as the metrics training writes, so a champion and a challenger
    are compared on equal terms; ids, items and categories the saved model never saw score through
    its default rows (an unknown listed category counts as a wrong prediction).
    """
    return _predict_with_saved_model(model_dir, features_dir, include_candidates=False)[2]


def predict_multitask_eval(model_dir: Path, features_dir: Path, output_dir: Path) -> None:
    """The prediction files of a saved model on ``features_dir``'s evaluation rows only (no candidates):
    what the gate compares."""
    _, predictions, _, _ = _predict_with_saved_model(model_dir, features_dir, include_candidates=False)
    write_predictions(predictions, Path(output_dir))


def score_multitask(model_dir: Path, features_dir: Path, output_dir: Path) -> TrainingSummary:
    """Score ``features_dir`` with a saved model into ``output_dir/predictions``, as training would."""
    bundle, predictions, metrics, scenario_metrics = _predict_with_saved_model(model_dir, features_dir, include_candidates=True)
    write_predictions(predictions, Path(output_dir))
    return TrainingSummary(MULTITASK, bundle.model_version, Path(output_dir), metrics, scenario_metrics)
