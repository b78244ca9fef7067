"""How close the models get to the best possible: the demo generator's ``truth_`` probabilities
scored with the same metric on the same evaluation rows. Demo warehouses only; the pipeline never
calls this.

The evaluation rows are the features' ``split == "eval"`` rows of each task: impressions of day D
(click, purchase), the mature holdout of labelled orders (fraud), and the eval reviews and items
(review sentiment: ``negative`` = rating <= 2; category: the listed category, which the demo
generator gets wrong for a few items on purpose).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import sqlalchemy as sa

from etl.warehouse import TABLE_SCHEMAS, create_warehouse_engine, read_frame
from training.metrics import binary_metrics

# Feature and prediction files of the review and category tasks (features_dir/<file> and
# <model_dir>/predictions/<file>, as etl.features and etl.publish name them).
REVIEW_FILE = "reviews.parquet"
ITEM_FILE = "items.parquet"
TRUTH_TABLES = ("truth_impressions", "truth_orders", "truth_reviews", "truth_items")
CHUNK = 5000  # ids per IN (...) list: keeps parameter lists small on both databases


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


# --- the evaluation rows of each task, with the truth joined when the warehouse has it ----------------


def _join_truth(frame: pl.DataFrame, warehouse_url: str, table: str, key: str, truth: set[str]) -> pl.DataFrame:
    """``frame`` with ``table``'s columns joined on ``key`` (inner: oracle and models score the same rows)."""
    if table not in truth:
        return frame
    return frame.join(read_truth(warehouse_url, table, key, frame[key].to_list()), on=key, suffix="_truth")


def eval_impressions(features_dir: Path, warehouse_url: str, truth: set[str]) -> pl.DataFrame | None:
    """Day-D impressions (event_id, clicked, converted, + p_click_truth, p_convert); None without impressions."""
    path = Path(features_dir) / "impressions.parquet"
    if not path.exists():
        return None
    impressions = pl.read_parquet(path, columns=["event_id", "split", "clicked", "converted"])
    impressions = impressions.filter(pl.col("split") == "eval").drop("split")
    return _join_truth(impressions, warehouse_url, "truth_impressions", "event_id", truth).rename(
        {"p_click": "p_click_truth"}, strict=False
    )


def eval_orders(features_dir: Path, warehouse_url: str, truth: set[str]) -> pl.DataFrame | None:
    """Labelled holdout orders (order_id, is_fraud, + p_fraud_truth); None without orders."""
    path = Path(features_dir) / "orders.parquet"
    if not path.exists():
        return None
    orders = pl.read_parquet(path, columns=["order_id", "split", "is_fraud"])
    orders = orders.filter((pl.col("split") == "eval") & pl.col("is_fraud").is_not_null()).drop("split")
    return _join_truth(orders, warehouse_url, "truth_orders", "order_id", truth).rename(
        {"p_fraud": "p_fraud_truth"}, strict=False
    )


def eval_reviews(features_dir: Path, warehouse_url: str, truth: set[str]) -> pl.DataFrame | None:
    """Eval reviews (review_id, negative = rating <= 2, + p_negative_truth); None without review features."""
    path = Path(features_dir) / REVIEW_FILE
    if not path.exists():
        return None
    reviews = pl.read_parquet(path, columns=["review_id", "split", "negative"])
    reviews = reviews.filter(pl.col("split") == "eval").drop("split")
    return _join_truth(reviews, warehouse_url, "truth_reviews", "review_id", truth).rename(
        {"p_negative": "p_negative_truth"}, strict=False
    )


def eval_items(features_dir: Path, warehouse_url: str, truth: set[str]) -> pl.DataFrame | None:
    """Eval items (item_id, listed_category, + true_category); None without item features."""
    path = Path(features_dir) / ITEM_FILE
    if not path.exists():
        return None
    items = pl.read_parquet(path, columns=["item_id", "split", "category"])
    items = items.filter(pl.col("split") == "eval").select("item_id", pl.col("category").alias("listed_category"))
    return _join_truth(items, warehouse_url, "truth_items", "item_id", truth)


def accuracy(actual: pl.Series, predicted: pl.Series) -> float | None:
    """Share of equal values; None on no rows."""
    return float((actual == predicted).mean()) if len(actual) else None


# --- the oracle alone (for the ablation table) ------------------------------------------------------


def compute_oracle_metrics(warehouse_url: str, features_dir: Path) -> list[dict[str, object]]:
    """Rows {task, metric, value, n_rows}: the truth scored on each task's eval rows; [] without truth tables.

    AUC for click, purchase, review and fraud; for category, the accuracy of the listed category
    against the true one (what a perfect image classifier scores against the noisy labels).
    """
    truth = find_truth_tables(warehouse_url)
    rows: list[dict[str, object]] = []

    def add(task: str, metric: str, value: float | None, n_rows: int) -> None:
        rows.append({"task": task, "metric": metric, "value": value, "n_rows": n_rows})

    impressions = eval_impressions(features_dir, warehouse_url, truth)
    if impressions is not None and "truth_impressions" in truth:
        add(
            "click",
            "auc",
            binary_metrics(impressions["clicked"], impressions["p_click_truth"])["auc"],
            impressions.height,
        )
        purchase = impressions["p_click_truth"] * impressions["p_convert"]
        add("purchase", "auc", binary_metrics(impressions["converted"], purchase)["auc"], impressions.height)
    reviews = eval_reviews(features_dir, warehouse_url, truth)
    if reviews is not None and "truth_reviews" in truth:
        add("review", "auc", binary_metrics(reviews["negative"], reviews["p_negative_truth"])["auc"], reviews.height)
    items = eval_items(features_dir, warehouse_url, truth)
    if items is not None and "truth_items" in truth:
        add("category", "accuracy", accuracy(items["listed_category"], items["true_category"]), items.height)
    orders = eval_orders(features_dir, warehouse_url, truth)
    if orders is not None and "truth_orders" in truth:
        add("fraud", "auc", binary_metrics(orders["is_fraud"], orders["p_fraud_truth"])["auc"], orders.height)
    return rows


def compute_category_accuracy_vs_truth(
    warehouse_url: str, features_dir: Path, model_dir: Path
) -> dict[str, object] | None:
    """{value, n_rows}: accuracy of a model's predicted category against the TRUE category on eval items.

    The interesting number for mislabel detection; None without item predictions or ``truth_items``.
    """
    predictions_path = Path(model_dir) / "predictions" / ITEM_FILE
    truth = find_truth_tables(warehouse_url)
    items = eval_items(features_dir, warehouse_url, truth)
    if items is None or "truth_items" not in truth or not predictions_path.exists():
        return None
    scored = items.join(pl.read_parquet(predictions_path).select("item_id", "predicted_category"), on="item_id")
    return {"value": accuracy(scored["true_category"], scored["predicted_category"]), "n_rows": scored.height}


# --- models and oracle side by side (for the nightly run's directory) -------------------------------


def compare_with_oracle(warehouse_url: str, run_dir: Path) -> pl.DataFrame:
    """Rows (task, model, auc, pr_auc, log_loss, n_rows) for each model and the truth oracle on the day's evaluation rows.

    Click, purchase and fraud as always; review rows when the network wrote review predictions,
    category rows (with ``accuracy`` and ``accuracy_vs_true`` instead of the binary metrics) when it
    wrote item predictions. Oracle rows need the ``truth_`` tables.
    """
    features_dir = run_dir / "features"
    models_dir = run_dir / "models"
    predictions = models_dir / "multitask" / "predictions"
    truth = find_truth_tables(warehouse_url)
    rows: list[dict[str, object]] = []

    impressions = eval_impressions(features_dir, warehouse_url, truth)
    if impressions is not None and (predictions / "impressions_eval.parquet").exists():
        impressions = impressions.join(pl.read_parquet(predictions / "impressions_eval.parquet"), on="event_id")
        for task, label, model_column in (("click", "clicked", "p_click"), ("purchase", "converted", "p_purchase")):
            rows.append(
                {
                    "task": task,
                    "model": "multitask",
                    **binary_metrics(impressions[label], impressions[model_column]),
                    "n_rows": impressions.height,
                }
            )
            if "truth_impressions" in truth:
                oracle = impressions["p_click_truth"] * (impressions["p_convert"] if task == "purchase" else 1.0)
                rows.append(
                    {
                        "task": task,
                        "model": "oracle",
                        **binary_metrics(impressions[label], oracle),
                        "n_rows": impressions.height,
                    }
                )

    orders = eval_orders(features_dir, warehouse_url, truth)
    # Model names as in model_runs; directories as the DAG's RunPlan.model_dir names them.
    fraud_models = {"multitask": "multitask", "fraud_lgbm": "fraud_baseline"}
    if orders is not None and all(
        (models_dir / d / "predictions" / "orders.parquet").exists() for d in fraud_models.values()
    ):
        for model, directory in fraud_models.items():
            scores = pl.read_parquet(models_dir / directory / "predictions" / "orders.parquet")
            orders = orders.join(scores.select("order_id", pl.col("p_fraud").alias(model)), on="order_id", how="left")
        columns = [(name, name) for name in fraud_models] + (
            [("oracle", "p_fraud_truth")] if "truth_orders" in truth else []
        )
        for model, column in columns:
            rows.append(
                {
                    "task": "fraud",
                    "model": model,
                    **binary_metrics(orders["is_fraud"], orders[column]),
                    "n_rows": orders.height,
                }
            )

    reviews = eval_reviews(features_dir, warehouse_url, truth)
    if reviews is not None and (predictions / REVIEW_FILE).exists():
        reviews = reviews.join(
            pl.read_parquet(predictions / REVIEW_FILE).select("review_id", "p_negative"), on="review_id"
        )
        rows.append(
            {
                "task": "review",
                "model": "multitask",
                **binary_metrics(reviews["negative"], reviews["p_negative"]),
                "n_rows": reviews.height,
            }
        )
        if "truth_reviews" in truth:
            rows.append(
                {
                    "task": "review",
                    "model": "oracle",
                    **binary_metrics(reviews["negative"], reviews["p_negative_truth"]),
                    "n_rows": reviews.height,
                }
            )

    items = eval_items(features_dir, warehouse_url, truth)
    if items is not None and (predictions / ITEM_FILE).exists():
        items = items.join(
            pl.read_parquet(predictions / ITEM_FILE).select("item_id", "predicted_category"), on="item_id"
        )
        has_truth = "truth_items" in truth
        rows.append(
            {
                "task": "category",
                "model": "multitask",
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
                    "model": "oracle",
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
    "compute_oracle_metrics",
    "find_truth_tables",
    "read_truth",
]
