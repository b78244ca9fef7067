"""LightGBM fraud baseline: gradient-boosted trees on the order features, the yardstick for the fraud head.

    python -m training.fraud_lgbm --features-dir DIR --output-dir DIR

Trains on labelled orders ``split == "train"`` with LightGBM's early stopping on the labelled
``split == "eval"`` orders, saves a text model (``model.txt``) plus ``config.json`` holding the
categorical encodings, reloads the text model and scores the eval and score orders from it, so the
published scores are exactly what a later reload produces.

Reference: Ke et al., "LightGBM: A Highly Efficient Gradient Boosting Decision Tree", NeurIPS 2017.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl

from etl.contract import FRAUD_LGBM
from etl.io import point_link, write_atomically, write_json_atomically, write_parquet_atomically
from etl.layout import CONFIG_FILE, METRICS_FILE, WEIGHTS_FILES, feature_path, manifest_path, prediction_path
from training.config import FraudLgbmConfig
from training.evaluation import objective_metric_rows
from training.holdout import newest_rows
from training.summary import TrainingSummary, compute_model_version, version_dir

log = logging.getLogger(__name__)

MODEL_FILE = WEIGHTS_FILES[FRAUD_LGBM]


@dataclass
class FraudLgbm:
    """A LightGBM booster with the column order and categorical encodings it was trained with."""

    booster: lgb.Booster
    dense: list[str]
    categorical: list[str]  # column order matters: it is the model's feature order (JSON dicts get re-sorted)
    categorical_values: dict[str, list[str]]  # column -> sorted training values; code = position, else missing
    model_version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def feature_names(self) -> list[str]:
        return [*self.dense, *self.categorical]

    def encode(self, frame: pl.DataFrame) -> np.ndarray:
        """The feature matrix this booster expects for ``frame``."""
        return encode_order_matrix(frame, self.dense, [(c, self.categorical_values[c]) for c in self.categorical])


def encode_order_matrix(frame: pl.DataFrame, dense: list[str], categorical: list[tuple[str, list[str]]]) -> np.ndarray:
    """Float64 [rows, n_dense + n_categorical]: dense columns, then categorical codes (unseen/null -> NaN)."""
    # LightGBM reads a categorical as a non-negative integer code and NaN as missing, so unseen values
    # all go the way the trees send missing ones instead of colliding with a real category's code.
    expressions = [pl.col(column).cast(pl.Float64) for column in dense] + [
        pl.col(column)
        .cast(pl.String)
        .replace_strict(values, list(range(len(values))), default=None, return_dtype=pl.Float64)
        for column, values in categorical
    ]
    if not expressions:
        return np.zeros((frame.height, 0))
    return np.ascontiguousarray(frame.select(expressions).to_numpy(), dtype=np.float64)  # [rows, n_features]


def build_params(config: FraudLgbmConfig) -> dict[str, Any]:
    """LightGBM parameters; deterministic given the seed and thread count."""
    return {
        "objective": "binary",
        "metric": ["binary_logloss"],
        "learning_rate": config.learning_rate,
        "num_leaves": config.num_leaves,
        "min_data_in_leaf": config.min_data_in_leaf,
        "feature_fraction": config.feature_fraction,
        "bagging_fraction": config.bagging_fraction,
        "bagging_freq": config.bagging_freq,
        "lambda_l2": config.lambda_l2,
        "min_data_per_group": config.min_data_per_group,
        "cat_smooth": config.cat_smooth,
        "max_cat_to_onehot": config.max_cat_to_onehot,
        "scale_pos_weight": config.scale_pos_weight,
        "seed": config.seed,
        "deterministic": True,
        "force_row_wise": True,  # with deterministic=True, fixes the histogram layout across runs
        "num_threads": config.num_threads,
        "verbosity": -1,
    }


def save_fraud_lgbm(model: FraudLgbm, output_dir: Path) -> None:
    """Write ``model.txt`` (LightGBM text, best iteration) and ``config.json`` (columns and encodings)."""
    # num_iteration=None saves up to the best iteration; atomic, so a concurrent gate loading this
    # champion never reads half a file.
    write_atomically(Path(output_dir) / MODEL_FILE, model.booster.save_model)
    payload = {
        **model.extra,
        "model_version": model.model_version,
        "dense": model.dense,
        "categorical": model.categorical,
        "categorical_values": model.categorical_values,
    }
    write_json_atomically(Path(output_dir) / CONFIG_FILE, payload)


def load_fraud_lgbm(output_dir: Path) -> FraudLgbm:
    """Reload the text model and its encodings from ``output_dir``."""
    output_dir = Path(output_dir)
    payload = json.loads((output_dir / CONFIG_FILE).read_text())
    booster = lgb.Booster(model_file=output_dir / MODEL_FILE)
    return FraudLgbm(
        booster=booster,
        dense=payload.pop("dense"),
        categorical=payload.pop("categorical"),
        categorical_values=payload.pop("categorical_values"),
        model_version=payload.pop("model_version", ""),
        extra=payload,
    )


def predict_fraud(model: FraudLgbm, orders: pl.DataFrame) -> np.ndarray:
    """p_fraud (float64) for order rows."""
    if orders.is_empty():
        return np.zeros(0)
    matrix = model.encode(orders)  # [rows, n_features]
    return np.asarray(model.booster.predict(matrix), dtype=np.float64)


def predict_orders(model: FraudLgbm, orders: pl.DataFrame) -> pl.DataFrame:
    """[order_id, split, p_fraud] of the orders scored every night: the evaluation holdout and day D's."""
    scored = orders.filter(pl.col("split").is_in(["eval", "score"]))
    return scored.select("order_id", "split").with_columns(
        pl.Series("p_fraud", predict_fraud(model, scored), dtype=pl.Float64)
    )


def evaluate_fraud_lgbm(model_dir: Path, features_dir: Path) -> list[dict[str, Any]]:
    """Metric rows of the saved model in ``model_dir`` on ``features_dir``'s labelled eval orders."""
    orders = pl.read_parquet(feature_path(features_dir, "orders"))
    return objective_metric_rows("fraud", predict_orders(load_fraud_lgbm(Path(model_dir)), orders), orders)


def score_fraud_lgbm(model_dir: Path, features_dir: Path, output_dir: Path) -> TrainingSummary:
    """Score ``features_dir``'s orders with the saved model into ``output_dir/predictions``, as training would."""
    model = load_fraud_lgbm(Path(model_dir))
    metrics = write_order_scores(model, pl.read_parquet(feature_path(features_dir, "orders")), Path(output_dir))
    return TrainingSummary(FRAUD_LGBM, model.model_version, Path(output_dir), metrics)


def write_order_scores(model: FraudLgbm, orders: pl.DataFrame, output_dir: Path) -> list[dict[str, Any]]:
    """Write ``output_dir/predictions/orders.parquet`` (``predict_orders``); return the fraud metric rows
    on its evaluation orders, the same function a later evaluation of the saved model uses."""
    predictions = predict_orders(model, orders)
    write_parquet_atomically(predictions, prediction_path(output_dir, "orders"))
    return objective_metric_rows("fraud", predictions, orders)


def train_fraud_lgbm(
    features_dir: Path, output_dir: Path, config: FraudLgbmConfig = FraudLgbmConfig(), versioned: bool = False
) -> TrainingSummary:
    """Train LightGBM on the train orders, stop early on the newest of them, save text model and predictions.
    ``versioned``: as ``training.train.train_multitask``'s (the version's own directory, linked)."""
    started = time.perf_counter()
    features_dir, output_dir = Path(features_dir), Path(output_dir)
    link_dir = output_dir
    manifest = json.loads(manifest_path(features_dir).read_text())
    ds = date.fromisoformat(manifest["ds"])
    orders_path = feature_path(features_dir, "orders")
    inputs = [orders_path, manifest_path(features_dir), Path(__file__)]  # source too: code changes get new versions
    model_version = compute_model_version(FRAUD_LGBM, ds, config.to_json(), inputs)
    if versioned:
        output_dir = version_dir(link_dir, model_version)
    orders = pl.read_parquet(orders_path)
    labelled = pl.col("is_fraud").is_not_null()
    # Early stopping reads the newest training orders (the network's fraud validation rows), never
    # the evaluation holdout, which only reports.
    labelled_train = orders.filter((pl.col("split") == "train") & labelled)
    held_out = newest_rows(labelled_train, "order_id", config.validation_share)
    orders_train, orders_validation = labelled_train.filter(~held_out), labelled_train.filter(held_out)
    if orders_train.is_empty():
        raise ValueError(f"{orders_path} has no labelled split == 'train' orders to learn from")

    dense = list(manifest["order_dense"])
    categorical = list(manifest["order_categorical"])
    categorical_values = {
        column: sorted(orders_train.get_column(column).cast(pl.String).drop_nulls().unique().to_list())
        for column in categorical
    }
    encoding = [(column, categorical_values[column]) for column in categorical]
    feature_names = [*dense, *categorical]
    train_set = lgb.Dataset(
        encode_order_matrix(orders_train, dense, encoding),
        label=orders_train.get_column("is_fraud").cast(pl.Float64).to_numpy(),
        feature_name=feature_names,
        categorical_feature=categorical,
        free_raw_data=True,
    )
    params = build_params(config)
    if orders_validation.get_column("is_fraud").n_unique() < 2:
        log.warning(
            "the validation orders hold one class: training %d rounds without early stopping", config.no_eval_num_boost_round
        )
        booster = lgb.train(params, train_set, num_boost_round=config.no_eval_num_boost_round)
    else:
        validation_set = lgb.Dataset(
            encode_order_matrix(orders_validation, dense, encoding),
            label=orders_validation.get_column("is_fraud").cast(pl.Float64).to_numpy(),
            reference=train_set,
        )
        booster = lgb.train(
            params,
            train_set,
            num_boost_round=config.num_boost_round,
            valid_sets=[validation_set],
            valid_names=["validation"],
            callbacks=[
                lgb.early_stopping(config.early_stopping_rounds, first_metric_only=True, verbose=False),
                lgb.log_evaluation(period=50),
            ],
        )
    best_iteration = booster.best_iteration if booster.best_iteration > 0 else booster.current_iteration()
    log.info("LightGBM fraud baseline: %d trees (best iteration %d)", booster.current_iteration(), best_iteration)

    model = FraudLgbm(
        booster=booster,
        dense=dense,
        categorical=categorical,
        categorical_values=categorical_values,
        model_version=model_version,
        extra={"ds": ds.isoformat(), "training": asdict(config), "best_iteration": best_iteration},
    )
    save_fraud_lgbm(model, output_dir)
    reloaded = load_fraud_lgbm(output_dir)  # score from the saved text, as any later consumer will

    summary = TrainingSummary(
        model_name=FRAUD_LGBM,
        model_version=model_version,
        output_dir=output_dir,
        metrics=write_order_scores(reloaded, orders, output_dir),
        device="cpu",
        n_train={"fraud": orders_train.height},
    )
    importance = dict(
        zip(feature_names, booster.feature_importance(importance_type="gain").round(3).tolist(), strict=True)
    )
    summary.wall_s = time.perf_counter() - started
    write_json_atomically(
        output_dir / METRICS_FILE,
        {**summary.to_dict(), "best_iteration": best_iteration, "feature_importance_gain": importance},
    )
    if versioned:
        point_link(link_dir, output_dir)
    log.info("trained %s in %.1fs: %s", model_version, summary.wall_s, summary.metrics)
    return summary


def main() -> None:
    """CLI: train the LightGBM fraud baseline on a features directory."""
    parser = argparse.ArgumentParser(description="Train the shopmtl LightGBM fraud baseline.")
    parser.add_argument("--features-dir", type=Path, required=True)
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=FraudLgbmConfig.seed)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    summary = train_fraud_lgbm(args.features_dir, args.output_dir, FraudLgbmConfig(seed=args.seed))
    print(json.dumps(summary.to_dict(), indent=2))


if __name__ == "__main__":
    main()
