"""How close the models get to the best possible: the demo generator's ``truth_`` probabilities
scored with the same metric on the same evaluation rows. Demo warehouses only; the pipeline never
calls this.

The evaluation rows are evaluation's (``training.evaluation``): the features' ``split == "eval"``
rows of each objective with a known label, and for a model, those of them it predicted. They are the
impressions of day D (click, purchase), the mature holdout of labelled orders (fraud), and the eval
reviews and items (review sentiment: ``negative`` = rating <= 2; category: the listed category, which
the demo generator gets wrong for a few items on purpose). The truth is joined onto them (inner), so
the oracle and the models score the same rows.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import sqlalchemy as sa

from etl.contract import FRAUD_LGBM, MULTITASK
from etl.io import write_parquet_atomically
from etl.layout import RunLayout, feature_path, prediction_path
from etl.warehouse import TABLE_SCHEMAS, create_warehouse_engine, read_frame
from training.evaluation import LABEL_JOINS, binary_metrics, read_eval_labels, read_labelled_predictions

TRUTH_TABLES = ("truth_impressions", "truth_orders", "truth_reviews", "truth_items")
CHUNK = 5000  # ids per IN (...) list: keeps parameter lists small on both databases
ORACLE = "oracle"  # the oracle's model name in comparison rows, and its probability column

# The oracle of each binary objective: its truth table and its probability from that table's columns.
ORACLE_TRUTH: dict[str, tuple[str, pl.Expr]] = {
    "click": ("truth_impressions", pl.col("p_click")),
    "purchase": ("truth_impressions", pl.col("p_click") * pl.col("p_convert")),
    "review": ("truth_reviews", pl.col("p_negative")),
    "fraud": ("truth_orders", pl.col("p_fraud")),
}
# The models compared with the oracle on each binary objective, in row order; the oracle is scored on
# the rows of the first (the network's predictions, joined to their labels and the truth).
COMPARED_MODELS: dict[str, tuple[str, ...]] = {
    "click": (MULTITASK,),
    "purchase": (MULTITASK,),
    "fraud": (MULTITASK, FRAUD_LGBM),
    "review": (MULTITASK,),
}


def read_truth(warehouse_url: str, table: str, id_column: str, ids: list[int]) -> pl.DataFrame:
    """Rows of a ``truth_`` table for ``ids`` (read in chunks; typed and empty when ``ids`` is)."""
    if not ids:
        return pl.DataFrame(schema=TABLE_SCHEMAS[table])
    engine = create_warehouse_engine(warehouse_url)
    frames = []
    try:
        with engine.connect() as conn:
            for start in range(0, len(ids), CHUNK):
                chunk = ids[start : start + CHUNK]
                names = ", ".join(f":id{i}" for i in range(len(chunk)))
                params = {f"id{i}": value for i, value in enumerate(chunk)}
                frames.append(
                    read_frame(conn, f"SELECT * FROM {table} WHERE {id_column} IN ({names})", params, table=table)
                )
    finally:
        engine.dispose()
    return pl.concat(frames)


def find_truth_tables(warehouse_url: str) -> set[str]:
    """Which ``truth_`` tables the warehouse has (none outside the demo)."""
    engine = create_warehouse_engine(warehouse_url)
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            return {table for table in TRUTH_TABLES if inspector.has_table(table)}
    finally:
        engine.dispose()


# --- the truth joined onto evaluation rows ------------------------------------------------------------


def with_oracle(objective: str, frame: pl.DataFrame, warehouse_url: str) -> pl.DataFrame:
    """``frame`` (keyed like the objective's labels) with the oracle's probability, column ``oracle``.

    Inner join in ``frame``'s order: rows without truth are dropped, so oracle and models score the same rows.
    """
    table, probability = ORACLE_TRUTH[objective]
    key = LABEL_JOINS[objective].key
    truth = read_truth(warehouse_url, table, key, frame[key].to_list()).select(key, probability.alias(ORACLE))
    return frame.join(truth, on=key, how="inner", maintain_order="left")


def eval_items(features_dir: Path, warehouse_url: str, truth: set[str]) -> pl.DataFrame | None:
    """Eval items (item_id, listed_category, + true_category with ``truth_items``); None without item features."""
    path = feature_path(features_dir, "items")
    if not path.exists():
        return None
    items = pl.read_parquet(path, columns=["item_id", "split", "category"])
    items = items.filter(pl.col("split") == "eval").select("item_id", pl.col("category").alias("listed_category"))
    if "truth_items" not in truth:
        return items
    true_category = read_truth(warehouse_url, "truth_items", "item_id", items["item_id"].to_list())
    return items.join(true_category, on="item_id", how="inner", maintain_order="left")


def accuracy(actual: pl.Series, predicted: pl.Series) -> float | None:
    """Share of equal values; None on no rows."""
    return float((actual == predicted).mean()) if len(actual) else None


def binary_row(objective: str, model: str, scored: pl.DataFrame, probability: str) -> dict[str, object]:
    """A comparison row: ``binary_metrics`` of ``scored``'s ``probability`` against the objective's label."""
    label = scored[LABEL_JOINS[objective].label]
    return {"task": objective, "model": model, **binary_metrics(label, scored[probability]), "n_rows": scored.height}


# --- the oracle as a model (for the ablation) ---------------------------------------------------------


def write_oracle_predictions(warehouse_url: str, features_dir: Path, model_dir: Path) -> list[str]:
    """The truth written as a model's prediction files of the evaluation rows (``predict.PREDICTION_SCHEMAS``
    shapes), so the oracle is scored like any model, by the same code on the same rows; returns the
    objectives it covers (none without truth tables).

    Binary objectives: the truth's probability of each labelled evaluation row. Category: the TRUE
    category as the prediction, so its accuracy against the noisy listed one is the best any image
    classifier can score.
    """
    truth = find_truth_tables(warehouse_url)
    covered: list[str] = []
    impressions = None
    for objective in ("click", "purchase", "review", "fraud"):
        join = LABEL_JOINS[objective]
        labels = read_eval_labels(objective, features_dir)
        if labels is None or ORACLE_TRUTH[objective][0] not in truth:
            continue
        scored = with_oracle(objective, labels, warehouse_url).select(join.key, pl.col(ORACLE).alias(join.probability))
        covered.append(objective)
        if join.prediction == "impressions_eval":  # click and purchase share one file
            impressions = scored if impressions is None else impressions.join(scored, on=join.key, how="full", coalesce=True)
            continue
        write_parquet_atomically(scored.with_columns(pl.lit("eval").alias("split")), prediction_path(model_dir, join.prediction))
    if impressions is not None:
        write_parquet_atomically(impressions, prediction_path(model_dir, "impressions_eval"))
    items = eval_items(features_dir, warehouse_url, truth)
    if items is not None and "truth_items" in truth:
        predictions = items.select(
            "item_id",
            pl.lit("eval").alias("split"),
            "listed_category",
            pl.col("true_category").alias("predicted_category"),
            pl.lit(1.0).alias("confidence"),
        )
        write_parquet_atomically(predictions, prediction_path(model_dir, "items"))
        covered.append("category")
    return covered


def compute_category_accuracy_vs_truth(
    warehouse_url: str, features_dir: Path, model_dir: Path
) -> dict[str, object] | None:
    """{value, n_rows}: accuracy of a model's predicted category against the TRUE category on eval items.

    The interesting number for mislabel detection; None without item predictions or ``truth_items``.
    """
    predictions_path = prediction_path(model_dir, "items")
    truth = find_truth_tables(warehouse_url)
    items = eval_items(features_dir, warehouse_url, truth)
    if items is None or "truth_items" not in truth or not predictions_path.exists():
        return None
    scored = items.join(pl.read_parquet(predictions_path).select("item_id", "predicted_category"), on="item_id")
    return {"value": accuracy(scored["true_category"], scored["predicted_category"]), "n_rows": scored.height}


# --- models and oracle side by side (for the nightly run's directory) -------------------------------


def compare_with_oracle(warehouse_url: str, run_dir: Path) -> pl.DataFrame:
    """Rows (task, model, auc, pr_auc, log_loss, n_rows) for each model and the truth oracle on the day's evaluation rows.

    Click, purchase and fraud as always (fraud only when both models wrote predictions); review rows
    when the network wrote review predictions, category rows (with ``accuracy`` and
    ``accuracy_vs_true`` instead of the binary metrics) when it wrote item predictions. Oracle rows
    need the ``truth_`` tables.
    """
    layout = RunLayout(Path(run_dir))
    features_dir = layout.features_dir
    truth = find_truth_tables(warehouse_url)
    rows: list[dict[str, object]] = []

    for objective, models in COMPARED_MODELS.items():
        has_truth = ORACLE_TRUTH[objective][0] in truth
        scored = {
            model: read_labelled_predictions(objective, layout.model_dir(model), features_dir) for model in models
        }
        if any(frame is None for frame in scored.values()):
            continue
        if has_truth:
            scored = {model: with_oracle(objective, frame, warehouse_url) for model, frame in scored.items()}
        probability = LABEL_JOINS[objective].probability
        rows.extend(binary_row(objective, model, frame, probability) for model, frame in scored.items())
        if has_truth:
            rows.append(binary_row(objective, ORACLE, scored[models[0]], ORACLE))

    items = eval_items(features_dir, warehouse_url, truth)
    item_predictions = prediction_path(layout.model_dir(MULTITASK), "items")
    if items is not None and item_predictions.exists():
        items = items.join(pl.read_parquet(item_predictions).select("item_id", "predicted_category"), on="item_id")
        has_truth = "truth_items" in truth
        rows.append(
            {
                "task": "category",
                "model": MULTITASK,
                "n_rows": items.height,
                "accuracy": accuracy(items["listed_category"], items["predicted_category"]),
                "accuracy_vs_true": accuracy(items["true_category"], items["predicted_category"])
                if has_truth
                else None,
            }
        )
        if has_truth:
            rows.append(
                {
                    "task": "category",
                    "model": ORACLE,
                    "n_rows": items.height,
                    "accuracy": accuracy(items["listed_category"], items["true_category"]),
                    "accuracy_vs_true": 1.0,
                }
            )

    schema = {
        "task": pl.String,
        "model": pl.String,
        "auc": pl.Float64,
        "pr_auc": pl.Float64,
        "log_loss": pl.Float64,
        "n_rows": pl.Int64,
    }
    if any("accuracy" in row for row in rows):
        schema |= {"accuracy": pl.Float64, "accuracy_vs_true": pl.Float64}
    return pl.DataFrame([{name: row.get(name) for name in schema} for row in rows], schema=schema)


__all__ = [
    "compare_with_oracle",
    "compute_category_accuracy_vs_truth",
    "find_truth_tables",
    "read_truth",
    "write_oracle_predictions",
]
