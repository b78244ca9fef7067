"""The ablation's long results as the README's two tables: metrics (mean ± sd over seeds) and paired
differences (the network minus each model, with how many seeds' 95 % intervals exclude zero)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import polars as pl

from etl.contract import ALL_SCENARIOS, MAIN_METRIC, MULTITASK
from training.ablation.run import MODEL_OBJECTIVES, ORACLE
from training.ablation.scores import VS_TRUE

MODEL_HEADERS = {
    MULTITASK: "network",
    "single_task": "single-task",
    "single_task_same_steps": "single-task, same steps",
    "scenario_alone": "scenario alone",
    "lightgbm": "LightGBM",
    "mmoe_rechub": "MMoE (rechub)",
    "ple_rechub": "PLE (rechub)",
    "tfidf_logistic": "TF-IDF + LR",
    "cnn_2layer": "2-layer CNN",
    ORACLE: "oracle",
}
ROW_KEYS = ("task", "scenario", "metric")


def row_order(frame: pl.DataFrame) -> pl.DataFrame:
    """Tasks in objective order, the all-scenario row first, then scenarios by name; the main metric
    before ``accuracy_vs_true``."""
    tasks = list(MAIN_METRIC)
    return frame.with_columns(
        pl.col("task").replace_strict(tasks, list(range(len(tasks))), default=len(tasks)).alias("_task"),
        (pl.col("scenario") != ALL_SCENARIOS).alias("_scenario"),
        (pl.col("metric") == VS_TRUE).alias("_metric"),
    ).sort("_task", "_metric", "_scenario", "scenario", maintain_order=True).drop("_task", "_scenario", "_metric")


def summarize_metrics(metrics: pl.DataFrame) -> pl.DataFrame:
    """{task, scenario, metric, model, mean, sd, n_seeds, n_rows}: one row per model and measured metric."""
    return metrics.filter(pl.col("value").is_not_null()).group_by(*ROW_KEYS, "model").agg(
        pl.col("value").mean().alias("mean"),
        pl.col("value").std(ddof=1).alias("sd"),
        pl.col("seed").n_unique().alias("n_seeds"),
        pl.col("n_rows").max(),
    )


def summarize_comparisons(comparisons: pl.DataFrame) -> pl.DataFrame:
    """{task, scenario, metric, model, difference, better, worse, n_seeds, n_rows}: the mean difference
    (network minus model) and the seeds whose interval lies wholly above (better) or below (worse) zero."""
    return comparisons.filter(pl.col("difference").is_not_null()).group_by(*ROW_KEYS, "model").agg(
        pl.col("difference").mean(),
        (pl.col("low") > 0).sum().alias("better"),
        (pl.col("high") < 0).sum().alias("worse"),
        pl.col("seed").n_unique().alias("n_seeds"),
        pl.col("n_rows").max(),
        pl.col("low").first(),
        pl.col("high").first(),
    )


def mean_sd(mean: float | None, sd: float | None, digits: int = 3) -> str:
    """``0.781 ± 0.004``; the mean alone with one seed or none measured."""
    if mean is None:
        return ""
    return f"{mean:.{digits}f}" if sd is None or sd != sd else f"{mean:.{digits}f} ± {sd:.{digits}f}"


def markdown(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    return "\n".join([*lines, *("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows)])


def format_metrics(metrics: pl.DataFrame, digits: int = 3) -> str:
    """One row per (task, scenario, metric), one column per model that measured something, and the
    network's share of the oracle."""
    summary = summarize_metrics(metrics)
    models = [model for model in MODEL_OBJECTIVES if model in set(summary.get_column("model").to_list())]
    cells = {
        (row["task"], row["scenario"], row["metric"], row["model"]): (row["mean"], row["sd"], row["n_rows"])
        for row in summary.iter_rows(named=True)
    }
    keys = row_order(summary.select(ROW_KEYS).unique()).rows()
    rows = []
    for key in keys:
        network, oracle = cells.get((*key, MULTITASK)), cells.get((*key, ORACLE))
        n_rows = max(cell[2] for (*row_key, _), cell in cells.items() if tuple(row_key) == key)
        share = f"{network[0] / oracle[0]:.2f}x" if network and oracle and oracle[0] else ""
        rows.append([*key, f"{n_rows:,}", *(mean_sd(*cells.get((*key, model), (None, None))[:2], digits) for model in models), share])
    return markdown(["task", "scenario", "metric", "rows", *(MODEL_HEADERS[model] for model in models), "network / oracle"], rows)


def format_comparisons(comparisons: pl.DataFrame, digits: int = 3) -> str:
    """One row per (task, scenario, model): the network minus the model (mean over seeds), the first
    seed's 95 % interval, and in how many seeds that interval lies above or below zero."""
    summary = summarize_comparisons(comparisons)
    order = {model: position for position, model in enumerate(MODEL_OBJECTIVES)}
    summary = summary.with_columns(pl.col("model").replace_strict(order, default=len(order)).alias("_model"))
    summary = row_order(summary.sort("_model")).drop("_model")
    rows = [
        [row["task"], row["scenario"], MODEL_HEADERS.get(row["model"], row["model"]), f"{row['n_rows']:,}",
         f"{row['difference']:+.{digits}f}", f"[{row['low']:+.{digits}f}, {row['high']:+.{digits}f}]" if row["low"] is not None else "",
         f"{row['better']}/{row['n_seeds']}", f"{row['worse']}/{row['n_seeds']}"]
        for row in summary.iter_rows(named=True)
    ]  # fmt: skip
    headers = ["task", "scenario", "network minus", "rows", "difference", "95 % interval (first seed)", "seeds above 0", "seeds below 0"]
    return markdown(headers, rows)
