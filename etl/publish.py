"""Publish day D's scores and metrics to the warehouse, replacing that day's rows.

Every score table and ``model_runs`` are replaced in ONE transaction (delete day D, insert day D,
table after table), so readers see the whole previous day or the whole new one, never a mix of the
two, whatever kills the publisher; a retried or re-run day leaves no duplicates.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
from sqlalchemy.engine import Connection

from etl.contract import ALL_SCENARIOS, FRAUD_LGBM, MULTITASK, SCORE_TABLE_OBJECTIVES
from etl.layout import feature_path, prediction_path
from etl.warehouse import bind_date, create_tables, create_warehouse_engine, mask_url, replace_rows

log = logging.getLogger(__name__)

TOP_K = 20


@dataclass(frozen=True)
class PublishSummary:
    ds: str
    rows: dict[str, int]  # rows written per table
    skipped: dict[str, str]  # table -> why it was not published

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def rank_recommendations(candidate_scores: pl.DataFrame, ds: date, model_version: str, top_k: int = TOP_K) -> pl.DataFrame:
    """Top ``top_k`` items per user and scenario by purchase probability (ties: click probability, then item id)."""
    return (
        candidate_scores.sort(
            ["user_id", "scenario", "p_purchase", "p_click", "item_id"], descending=[False, False, True, True, False]
        )
        .with_columns(pl.int_range(1, pl.len() + 1).over("user_id", "scenario").cast(pl.Int32).alias("rank"))
        .filter(pl.col("rank") <= top_k)
        .select(
            pl.lit(ds).alias("ds"),
            "user_id",
            "scenario",
            "item_id",
            pl.col("p_click").cast(pl.Float64),
            pl.col("p_purchase").cast(pl.Float64),
            "rank",
            pl.lit(model_version).alias("model_version"),
        )
    )


def join_fraud_scores(
    multitask_orders: pl.DataFrame, baseline_orders: pl.DataFrame, ds: date, model_version: str
) -> pl.DataFrame:
    """Both models' fraud probabilities for every order of day D (split ``score``)."""
    mtl = multitask_orders.filter(pl.col("split") == "score").select("order_id", pl.col("p_fraud").alias("p_fraud_mtl"))
    lgbm = baseline_orders.filter(pl.col("split") == "score").select("order_id", pl.col("p_fraud").alias("p_fraud_lgbm"))
    joined = mtl.join(lgbm, on="order_id", how="full", coalesce=True)
    missing = joined.filter(pl.col("p_fraud_mtl").is_null() | pl.col("p_fraud_lgbm").is_null())
    if missing.height:
        raise ValueError(
            f"score_order_fraud: {missing.height} orders of {ds} lack a score from one model "
            f"(e.g. order_id {missing['order_id'].head(5).to_list()}); nothing was published"
        )
    return joined.select(
        pl.lit(ds).alias("ds"),
        "order_id",
        pl.col("p_fraud_mtl").cast(pl.Float64),
        pl.col("p_fraud_lgbm").cast(pl.Float64),
        pl.lit(model_version).alias("model_version"),
    ).sort("order_id")


def collect_model_runs(run_id: str, ds: date, summaries: list[Mapping[str, object]]) -> pl.DataFrame:
    """One row per (model, task, metric, scenario) from the training summaries."""
    created_at = datetime.now(UTC).replace(tzinfo=None)
    rows = [
        {
            "run_id": run_id,
            "ds": ds,
            "model_name": summary["model_name"],
            "model_version": summary["model_version"],
            "task": metric["task"],
            "metric": metric["metric"],
            "value": None if metric["value"] is None else float(metric["value"]),
            "created_at": created_at,
            "n_rows": metric.get("n_rows"),
            "scenario": metric.get("scenario", ALL_SCENARIOS),
        }
        for summary in summaries
        for metric in [*summary["metrics"], *summary.get("scenario_metrics", [])]  # type: ignore[misc]
    ]
    return pl.DataFrame(rows, schema={"run_id": pl.String, "ds": pl.Date, "model_name": pl.String,
                                      "model_version": pl.String, "task": pl.String, "metric": pl.String,
                                      "value": pl.Float64, "created_at": pl.Datetime("us"), "n_rows": pl.Int64,
                                      "scenario": pl.String})


def check_probabilities(frame: pl.DataFrame, table: str, columns: list[str]) -> None:
    """Refuse to publish NaN or out-of-range probabilities, naming the table and column."""
    for column in columns:
        bad = frame.filter(~pl.col(column).is_between(0.0, 1.0) | pl.col(column).is_nan() | pl.col(column).is_null())
        if bad.height:
            raise ValueError(
                f"{table}.{column}: {bad.height} values outside [0, 1] (e.g. {bad[column].head(5).to_list()}); "
                "nothing was published"
            )


def build_review_scores(review_predictions: pl.DataFrame, review_examples: pl.DataFrame, ds: date, model_version: str) -> pl.DataFrame:
    """p_negative for the reviews written on day D (the evaluation window may hold earlier days too)."""
    written_on_day = review_examples.filter(pl.col("created_at").dt.date() == ds).select("review_id")
    return review_predictions.join(written_on_day, on="review_id").select(
        pl.lit(ds).alias("ds"), "review_id", pl.col("p_negative").cast(pl.Float64), pl.lit(model_version).alias("model_version")
    ).sort("review_id")


def build_item_category_scores(item_predictions: pl.DataFrame, ds: date, model_version: str) -> pl.DataFrame:
    """Listed vs image-predicted category with the prediction's confidence, for every item with an image."""
    return item_predictions.select(
        pl.lit(ds).alias("ds"),
        "item_id",
        "listed_category",
        "predicted_category",
        pl.col("confidence").cast(pl.Float64),
        pl.lit(model_version).alias("model_version"),
    ).sort("item_id")


PROBABILITY_COLUMNS = {
    "score_user_item": ["p_click", "p_purchase"],
    "score_order_fraud": ["p_fraud_mtl", "p_fraud_lgbm"],
    "score_review_sentiment": ["p_negative"],
    "score_item_category": ["confidence"],
}


def build_score_tables(
    ds: date, objectives: list[str], features_dir: Path, scoring: Mapping[str, Mapping[str, Mapping[str, object]]]
) -> tuple[dict[str, pl.DataFrame], dict[str, str]]:
    """The rows of every score table ``objectives`` allow, from the scoring models' prediction files.

    ``scoring``: model name -> objective -> the summary of the model serving that objective
    (``model_version``, ``output_dir``; the gate's choice, so one night may publish click from its
    own network and category from an older champion).
    """
    network = scoring.get(MULTITASK, {})

    def serving(objective: str) -> tuple[Path, str]:
        summary = network[objective]
        return Path(str(summary["output_dir"])), str(summary["model_version"])

    tables: dict[str, pl.DataFrame] = {}
    skipped = {
        table: f"needs objectives {needed}"
        for table, needed in SCORE_TABLE_OBJECTIVES.items()
        if not set(needed) <= set(objectives)
    }
    if "score_user_item" not in skipped:
        click_dir, version = serving("click")
        if serving("purchase") != (click_dir, version):
            raise ValueError("score_user_item: click and purchase must come from one model (p_purchase = p_click * p_cvr)")
        tables["score_user_item"] = rank_recommendations(pl.read_parquet(prediction_path(click_dir, "candidates")), ds, version)
    if "score_order_fraud" not in skipped:
        lgbm = scoring.get(FRAUD_LGBM, {}).get("fraud")
        if lgbm is None:
            raise ValueError("score_order_fraud: the fraud objective is configured but the LightGBM baseline produced no scores")
        fraud_dir, version = serving("fraud")
        tables["score_order_fraud"] = join_fraud_scores(
            pl.read_parquet(prediction_path(fraud_dir, "orders")),
            pl.read_parquet(prediction_path(Path(str(lgbm["output_dir"])), "orders")),
            ds,
            f"{version};{lgbm['model_version']}",
        )
    if "score_review_sentiment" not in skipped:
        review_dir, version = serving("review")
        tables["score_review_sentiment"] = build_review_scores(
            pl.read_parquet(prediction_path(review_dir, "reviews")),
            pl.read_parquet(feature_path(features_dir, "reviews"), columns=["review_id", "created_at"]),
            ds,
            version,
        )
    if "score_item_category" not in skipped:
        category_dir, version = serving("category")
        tables["score_item_category"] = build_item_category_scores(pl.read_parquet(prediction_path(category_dir, "items")), ds, version)
    return tables, skipped


def publish_scores(
    warehouse_url: str,
    ds: date,
    run_id: str,
    objectives: list[str],
    features_dir: Path,
    scoring: Mapping[str, Mapping[str, Mapping[str, object]]],
    evaluations: list[Mapping[str, object]],
    before_commit: Callable[[Connection], None] | None = None,
) -> PublishSummary:
    """Replace day ``ds`` in every score table ``objectives`` allow and in model_runs, in one transaction.

    ``scoring`` maps each model name and objective to the model whose predictions are published (the
    gate's choice: its ``model_version`` and ``output_dir``); ``evaluations`` are the training
    summaries of the night (``TrainingSummary.to_dict()``) whose day-D metrics go to model_runs.
    ``before_commit`` writes what must become effective with the day (the gate's registry decisions)
    in the same transaction; an error there publishes nothing.
    """
    tables, skipped = build_score_tables(ds, objectives, features_dir, scoring)
    tables["model_runs"] = collect_model_runs(run_id, ds, list(evaluations))
    # Check everything before the first write, so a bad score never replaces a good day.
    for table, columns in PROBABILITY_COLUMNS.items():
        if table in tables:
            check_probabilities(tables[table], table, columns)

    engine = create_warehouse_engine(warehouse_url)
    try:
        create_tables(engine, areas=["scores", "views"])  # the analysts' views read the score tables
        written = {}
        with engine.begin() as conn:  # one transaction for the whole day (on SQLite, one write lock)
            for table, frame in tables.items():
                written[table] = replace_rows(conn, table, frame, "ds = :ds", {"ds": bind_date(conn, ds)})
            if before_commit is not None:
                before_commit(conn)
    finally:
        engine.dispose()
    summary = PublishSummary(ds=ds.isoformat(), rows=written, skipped=skipped)
    for table, reason in skipped.items():
        log.info("Not publishing %s for %s: this deployment's sources lack what it %s", table, ds, reason)
    log.info("Published %s to %s: %s", ds, mask_url(warehouse_url), written)
    return summary
