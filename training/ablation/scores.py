"""Every model of the ablation scored alike: its prediction files joined to the labels of day D's
evaluation rows (``training.evaluation``), per objective, over all rows and per scenario, and the
network paired with each other model on the rows both scored.

A model is a directory of prediction files (``training.predict.PREDICTION_SCHEMAS``): the network,
its single-objective versions, the peers (``training/peers``) and the oracle (``demo.oracle``) all
write them, so no model is scored by code of its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from etl.contract import ALL_SCENARIOS, MAIN_METRIC
from etl.layout import feature_path, parquet_files, prediction_path
from training.comparison import Evidence, compare_accuracy, compare_auc
from training.evaluation import LABEL_JOINS, binary_metrics, labelled_category_predictions, read_labelled_predictions

VS_TRUE = "accuracy_vs_true"  # the category accuracy against the TRUE category (demo: the oracle's prediction)
KEY, LABEL, SCORE = "key", "label", "score"  # columns of a scored frame: the row key, its label, the model's score
PREDICTED = "predicted"  # the category scored frame's predicted category


def eval_scenarios(features_dir: Path) -> pl.DataFrame:
    """[event_id, scenario] of day D's evaluation impressions (empty without impressions)."""
    files = parquet_files(feature_path(features_dir, "impressions"))
    if not files:
        return pl.DataFrame(schema={"event_id": pl.Int64, "scenario": pl.String})
    return pl.scan_parquet(files).filter(pl.col("split") == "eval").select("event_id", "scenario").collect()


def scored_rows(objective: str, model_dir: Path, features_dir: Path, scenarios: pl.DataFrame) -> pl.DataFrame | None:
    """[key, label, score, scenario]: the model's evaluation rows of ``objective`` with their labels (for the
    category, label = the listed category, score = 1.0 when the prediction is it, and ``predicted``);
    None when the model has no predictions for it."""
    if objective == "category":
        path = prediction_path(model_dir, "items")
        if not path.exists():
            return None
        items = labelled_category_predictions(pl.read_parquet(path))
        return items.select(
            pl.col("item_id").alias(KEY), pl.col("listed_category").alias(LABEL), pl.col("correct").cast(pl.Float64).alias(SCORE),
            pl.lit(None, dtype=pl.String).alias("scenario"), pl.col("predicted_category").alias(PREDICTED),
        )  # fmt: skip
    join = LABEL_JOINS[objective]
    scored = read_labelled_predictions(objective, model_dir, features_dir)
    if scored is None:
        return None
    scored = scored.select(pl.col(join.key).alias(KEY), pl.col(join.label).cast(pl.Float64).alias(LABEL), pl.col(join.probability).alias(SCORE))
    if join.features == "impressions":
        return scored.join(scenarios.rename({"event_id": KEY}), on=KEY, how="left", maintain_order="left")
    return scored.with_columns(pl.lit(None, dtype=pl.String).alias("scenario"))


def scenario_parts(scored: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """The rows over all scenarios (``ALL_SCENARIOS``), then each named scenario's, by name."""
    names = sorted(scored.get_column("scenario").drop_nulls().unique().to_list())
    return {ALL_SCENARIOS: scored, **{name: scored.filter(pl.col("scenario") == name) for name in names}}


def main_metric(objective: str, scored: pl.DataFrame) -> float | None:
    """AUC of a binary objective, accuracy of the category."""
    if scored.is_empty():
        return None
    if objective == "category":
        return float(scored.get_column(SCORE).mean())
    return binary_metrics(scored.get_column(LABEL).to_numpy(), scored.get_column(SCORE).to_numpy())["auc"]


def metric_rows(model: str, objective: str, scored: pl.DataFrame, only: str | None = None) -> list[dict[str, Any]]:
    """{model, task, scenario, metric, value, n_rows} over all rows and per scenario (``only``: that
    scenario's rows alone, for a model trained on it alone)."""
    parts = scenario_parts(scored)
    if only is not None:
        parts = {only: parts[only]} if only in parts else {}
    return [
        {"model": model, "task": objective, "scenario": scenario, "metric": MAIN_METRIC[objective],
         "value": main_metric(objective, part), "n_rows": part.height}
        for scenario, part in parts.items()
    ]  # fmt: skip


def accuracy_vs_true(model: str, scored: pl.DataFrame, oracle: pl.DataFrame) -> dict[str, Any]:
    """The share of evaluation items whose predicted category is the TRUE one (the oracle predicts it)."""
    paired = scored.join(oracle.select(KEY, pl.col(PREDICTED).alias("true_category")), on=KEY)
    value = float((paired.get_column(PREDICTED) == paired.get_column("true_category")).mean()) if paired.height else None
    return {"model": model, "task": "category", "scenario": ALL_SCENARIOS, "metric": VS_TRUE, "value": value, "n_rows": paired.height}


def paired_rows(
    objective: str, network: pl.DataFrame, other: pl.DataFrame, only: str | None = None
) -> list[tuple[str, Evidence]]:
    """The network minus another model on the rows both scored, with a 95 % interval (DeLong for AUC,
    paired Wald for accuracy), over all rows and per scenario, or on ``only``'s rows."""
    paired = network.join(other.select(KEY, pl.col(SCORE).alias("other")), on=KEY)
    parts = scenario_parts(paired)
    if only is not None:
        parts = {only: parts[only]} if only in parts else {}
    evidence: list[tuple[str, Evidence]] = []
    for scenario, part in parts.items():
        if objective == "category":
            result = compare_accuracy(objective, part.get_column(SCORE).to_numpy(), part.get_column("other").to_numpy())
        else:
            result = compare_auc(objective, part.get_column(LABEL).to_numpy(), part.get_column(SCORE).to_numpy(), part.get_column("other").to_numpy())
        evidence.append((scenario, result))
    return evidence
