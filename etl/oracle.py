"""How close the models get to the best possible: the demo generator's ``truth_`` probabilities
scored with the same metric on the same evaluation rows. Demo warehouses only; the pipeline never
calls this."""
from __future__ import annotations

from pathlib import Path

import polars as pl

from etl.warehouse import create_warehouse_engine, read_frame
from training.metrics import binary_metrics


def read_truth(warehouse_url: str, table: str, id_column: str, ids: list[int]) -> pl.DataFrame:
    """Rows of a ``truth_`` table for ``ids`` (read in chunks to keep parameter lists small)."""
    engine = create_warehouse_engine(warehouse_url)
    frames = []
    try:
        with engine.connect() as conn:
            for start in range(0, len(ids), 5000):
                chunk = ids[start : start + 5000]
                names = ", ".join(f":id{i}" for i in range(len(chunk)))
                params = {f"id{i}": value for i, value in enumerate(chunk)}
                frames.append(read_frame(conn, f"SELECT * FROM {table} WHERE {id_column} IN ({names})", params, table=table))
    finally:
        engine.dispose()
    return pl.concat(frames) if frames else pl.DataFrame()


def compare_with_oracle(warehouse_url: str, run_dir: Path) -> pl.DataFrame:
    """Rows (task, model, auc, pr_auc, log_loss, n_rows) for each model and the truth oracle on the day's evaluation rows."""
    features_dir = run_dir / "features"
    models_dir = run_dir / "models"
    rows: list[dict[str, object]] = []

    impressions = pl.read_parquet(features_dir / "impressions.parquet", columns=["event_id", "split", "clicked", "converted"])
    impressions = impressions.filter(pl.col("split") == "eval").join(
        pl.read_parquet(models_dir / "multitask" / "predictions" / "impressions_eval.parquet"), on="event_id"
    )
    truth = read_truth(warehouse_url, "truth_impressions", "event_id", impressions["event_id"].to_list())
    impressions = impressions.join(truth, on="event_id", suffix="_truth")
    for task, label, model_column, oracle in (
        ("click", "clicked", "p_click", pl.col("p_click_truth")),
        ("purchase", "converted", "p_purchase", pl.col("p_click_truth") * pl.col("p_convert")),
    ):
        scored = impressions.with_columns(oracle.alias("_oracle"))
        rows.append({"task": task, "model": "multitask", **binary_metrics(scored[label], scored[model_column]), "n_rows": scored.height})
        rows.append({"task": task, "model": "oracle", **binary_metrics(scored[label], scored["_oracle"]), "n_rows": scored.height})

    orders = pl.read_parquet(features_dir / "orders.parquet", columns=["order_id", "split", "is_fraud"]).filter(pl.col("split") == "eval")
    # Model names as in model_runs; directories as the DAG's RunPlan.model_dir names them.
    fraud_models = {"multitask": "multitask", "fraud_lgbm": "fraud_baseline"}
    for model, directory in fraud_models.items():
        predictions = pl.read_parquet(models_dir / directory / "predictions" / "orders.parquet").select("order_id", pl.col("p_fraud").alias(model))
        orders = orders.join(predictions, on="order_id", how="left")
    orders = orders.join(read_truth(warehouse_url, "truth_orders", "order_id", orders["order_id"].to_list()), on="order_id")
    for model, column in (*((name, name) for name in fraud_models), ("oracle", "p_fraud")):
        rows.append({"task": "fraud", "model": model, **binary_metrics(orders["is_fraud"], orders[column]), "n_rows": orders.height})
    return pl.DataFrame(rows)
