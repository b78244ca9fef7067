"""Ablation: does one network trained on every task do each task as well as one network per task?

    python -m training.ablation --warehouse-url URL --ds D [--window-days 28] [--work-dir DIR] [--seed 7]

For day D: extract the window and build features (as the nightly run does, into ``work_dir``), train
the multi-task network on all tasks the sources allow, then the same network on each task alone
with the same budget (the same config: max epochs, early-stopping patience, batch size, seed; only
``objectives`` differs), and the LightGBM fraud baseline. One table, one row per task: the single-task
and multi-task day-D metric (AUC; accuracy for category) and the oracle, the demo generator's
``truth_`` probabilities scored on the same rows (blank outside the demo warehouse). The category
task has a second row, ``accuracy_vs_true``: the models' accuracy against the TRUE category rather
than the noisy listed one, the number that matters for finding mislabelled items.

The same epochs are not the same number of optimizer steps: the multi-task sampler spreads every
kind's rows over the steps the largest kind (impressions) needs, so in the joint run a small task
(reviews, item images, orders) takes many more, smaller steps per epoch than alone. The column
``single_task_same_steps`` retrains each task alone with its batch size shrunk to the joint run's
steps per epoch, which separates "more updates" from "shared representations".

Reference: Caruana, "Multitask Learning", Machine Learning 28, 1997 (the single-task vs multi-task
comparison at equal capacity and budget).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import time
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from etl.contract import FRAUD_LGBM, MAIN_METRIC, MULTITASK, SOURCE_TABLES, available_objectives
from etl.extract import ExtractWindow, extract_sources
from etl.config import FeatureConfig
from etl.build_features import build_features
from etl.layout import RunLayout
from training.config import FraudLgbmConfig, MultiTaskConfig

log = logging.getLogger(__name__)

VS_TRUE = "accuracy_vs_true"
TABLE_SCHEMA = {
    "task": pl.String,
    "metric": pl.String,
    "n_rows": pl.Int64,
    "single_task": pl.Float64,
    "single_task_same_steps": pl.Float64,
    "multi_task": pl.Float64,
    "multi_minus_single": pl.Float64,
    "lightgbm": pl.Float64,
    "oracle": pl.Float64,
}


def find_metric(rows: Sequence[Mapping[str, Any]], task: str, metric: str) -> Mapping[str, Any] | None:
    """The metric row for (task, metric), or None."""
    return next((row for row in rows if row["task"] == task and row["metric"] == metric), None)


def _value(row: Mapping[str, Any] | None) -> float | None:
    value = None if row is None else row.get("value")
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def build_ablation_table(
    objectives: Sequence[str],
    multi_metrics: Sequence[Mapping[str, Any]],
    single_metrics: Mapping[str, Sequence[Mapping[str, Any]]],
    lightgbm_metrics: Sequence[Mapping[str, Any]] = (),
    oracle_metrics: Sequence[Mapping[str, Any]] = (),
    category_vs_true: Mapping[str, Mapping[str, Any] | None] | None = None,
    same_steps_metrics: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
) -> pl.DataFrame:
    """One row per objective (plus category's ``accuracy_vs_true``) from metric rows {task, metric, value, n_rows}.

    ``single_metrics`` maps each objective to the metrics of the network trained on it alone, and
    ``same_steps_metrics`` to those of the step-matched single-task run; ``category_vs_true`` maps
    "single"/"same_steps"/"multi" to {value, n_rows} of the accuracy against the true category.
    """
    same_steps_metrics = same_steps_metrics or {}
    rows = []
    for task in (objective for objective in MAIN_METRIC if objective in objectives):
        metric = MAIN_METRIC[task]
        multi = find_metric(multi_metrics, task, metric)
        single = find_metric(single_metrics.get(task, ()), task, metric)
        same_steps = find_metric(same_steps_metrics.get(task, ()), task, metric)
        oracle = find_metric(oracle_metrics, task, metric)
        n_rows = {
            row["n_rows"]
            for row in (multi, single, same_steps, oracle)
            if row is not None and row.get("n_rows") is not None
        }
        if len(n_rows) > 1:  # a comparison on different rows would be no comparison
            log.warning("%s %s: the models and the oracle were scored on different row counts %s", task, metric, n_rows)
        rows.append(
            _table_row(
                task,
                metric,
                n_rows,
                _value(single),
                _value(same_steps),
                _value(multi),
                _value(oracle),
                _value(find_metric(lightgbm_metrics, task, metric)),
            )
        )
        if task == "category" and category_vs_true:
            single_true, same_true, multi_true = (category_vs_true.get(k) for k in ("single", "same_steps", "multi"))
            n_true = {row["n_rows"] for row in (single_true, same_true, multi_true) if row is not None}
            values = (_value(single_true), _value(same_true), _value(multi_true))
            rows.append(_table_row(task, VS_TRUE, n_true, *values, None, None))
    return pl.DataFrame(rows, schema=TABLE_SCHEMA)


def _table_row(
    task: str,
    metric: str,
    n_rows: set[int],
    single: float | None,
    same_steps: float | None,
    multi: float | None,
    oracle: float | None,
    lightgbm: float | None,
) -> dict[str, Any]:
    return {
        "task": task,
        "metric": metric,
        "n_rows": max(n_rows) if n_rows else None,
        "single_task": single,
        "single_task_same_steps": same_steps,
        "multi_task": multi,
        "multi_minus_single": None if single is None or multi is None else multi - single,
        "lightgbm": lightgbm,
        "oracle": oracle,
    }


def prepare_features(
    warehouse_url: str,
    ds: date,
    work_dir: Path,
    window_days: int = 28,
    sources: Sequence[str] = SOURCE_TABLES,
    feature_config: FeatureConfig = FeatureConfig(),
) -> Path:
    """Extract day ``ds``'s window and build its features under ``work_dir``, as the nightly run does."""
    layout = RunLayout(work_dir)
    extract_dir, features_dir = layout.extract_dir, layout.features_dir
    extract_sources(warehouse_url, ExtractWindow(ds=ds, window_days=window_days), extract_dir, tuple(sources))
    build_features(extract_dir, features_dir, ds, feature_config, tuple(sources))
    return features_dir


def steps_per_epoch(config: MultiTaskConfig, n_train: Mapping[str, int]) -> int:
    """Optimizer steps of one epoch of the joint run: the batch kind needing most batches sets them."""
    batches = [
        math.ceil(round(getattr(config, ratio) * n_train[objective]) / getattr(config, batch))
        for objective, (ratio, batch) in objective_batch_fields().items()
        if n_train.get(objective)
    ]
    return max([*batches, 1])


def objective_batch_fields() -> dict[str, tuple[str, str]]:
    """The (ratio, batch size) config fields of each objective's batch kind, as the sampler reads them."""
    from training.data import OBJECTIVE_KIND
    from training.loop import KIND_FIELDS

    return {objective: KIND_FIELDS[kind] for objective, kind in OBJECTIVE_KIND.items()}


def same_steps_config(config: MultiTaskConfig, objective: str, n_train: int, steps: int) -> MultiTaskConfig:
    """``config`` for ``objective`` alone with its batch size shrunk so one epoch takes ``steps`` steps."""
    ratio, batch = objective_batch_fields()[objective]
    rows = round(getattr(config, ratio) * n_train)
    if math.ceil(rows / getattr(config, batch)) >= steps:  # the kind that sets the steps keeps its batch size
        return dataclasses.replace(config, objectives=(objective,))
    return dataclasses.replace(config, objectives=(objective,), **{batch: max(1, math.ceil(rows / steps))})


def run_ablation(
    warehouse_url: str,
    ds: date,
    work_dir: Path,
    window_days: int = 28,
    seed: int = 7,
    config: MultiTaskConfig | None = None,
    sources: Sequence[str] = SOURCE_TABLES,
    feature_config: FeatureConfig = FeatureConfig(),
) -> pl.DataFrame:
    """Train all objectives together and each alone with the same budget; the table with LightGBM and oracle.

    ``seed`` overrides ``config.seed``; the objectives are ``config.objectives`` limited to those
    ``sources`` allow; ``feature_config`` sets the fraud maturity and holdout as the DAG's Params do.
    The oracle column reads the demo generator's truth tables (``demo/oracle.py``); it stays empty
    on a warehouse without them.
    """
    from demo.oracle import compute_category_accuracy_vs_truth, compute_oracle_metrics
    from training.fraud_lgbm import train_fraud_lgbm  # heavy imports: only when training
    from training.train import train_multitask

    work_dir = Path(work_dir)
    features_dir = prepare_features(warehouse_url, ds, work_dir, window_days, sources, feature_config)
    config = config or MultiTaskConfig()
    objectives = tuple(name for name in config.objectives if name in available_objectives(list(sources)))
    if not objectives:
        raise ValueError(f"none of the objectives {config.objectives} can be trained from the sources {list(sources)}")
    config = dataclasses.replace(config, seed=seed, objectives=objectives)
    layout = RunLayout(work_dir)

    def train(name: str, variant: MultiTaskConfig) -> dict[str, Any]:
        started = time.perf_counter()
        summary = train_multitask(features_dir, layout.model_dir(name), variant).to_dict()
        log.info(
            "ablation: %s (objectives %s) trained in %.1fs", name, ",".join(variant.objectives), time.perf_counter() - started
        )
        return summary

    multi = train(MULTITASK, config)
    singles = {name: train(f"single_{name}", dataclasses.replace(config, objectives=(name,))) for name in objectives}
    steps = steps_per_epoch(config, multi["n_train"])
    same_steps = {}
    for name in objectives:
        variant = same_steps_config(config, name, multi["n_train"].get(name, 0), steps)
        # The largest kind already takes the joint run's steps alone: same config, same (deterministic) model.
        same = variant == dataclasses.replace(config, objectives=(name,))
        same_steps[name] = singles[name] if same else train(f"same_steps_{name}", variant)
    lightgbm: list[dict[str, Any]] = []
    if "fraud" in objectives:
        lightgbm = train_fraud_lgbm(features_dir, layout.model_dir(FRAUD_LGBM), FraudLgbmConfig(seed=seed)).metrics

    vs_true = None
    if "category" in objectives:
        vs_true = {
            "multi": compute_category_accuracy_vs_truth(warehouse_url, features_dir, layout.model_dir(MULTITASK)),
            "single": compute_category_accuracy_vs_truth(warehouse_url, features_dir, layout.model_dir("single_category")),
            "same_steps": compute_category_accuracy_vs_truth(
                warehouse_url, features_dir, Path(same_steps["category"]["output_dir"])
            ),
        }
    return build_ablation_table(
        objectives,
        multi["metrics"],
        {name: summary["metrics"] for name, summary in singles.items()},
        lightgbm,
        compute_oracle_metrics(warehouse_url, features_dir),
        vs_true,
        {name: summary["metrics"] for name, summary in same_steps.items()},
    )


def format_table(table: pl.DataFrame, digits: int = 3) -> str:
    """The table as Markdown (blank cells for missing values), as pasted into the README."""
    headers = {
        "task": "task",
        "metric": "metric",
        "n_rows": "rows",
        "single_task": "single-task",
        "single_task_same_steps": "single-task, same steps",
        "multi_task": "multi-task",
        "multi_minus_single": "multi - single",
        "lightgbm": "LightGBM",
        "oracle": "oracle",
    }

    def cell(column: str, value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, float):
            return f"{value:+.{digits}f}" if column == "multi_minus_single" else f"{value:.{digits}f}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value)

    lines = [
        "| " + " | ".join(headers[column] for column in table.columns) + " |",
        "|" + "|".join("---" for _ in table.columns) + "|",
    ]
    lines += [
        "| " + " | ".join(cell(c, v) for c, v in zip(table.columns, row, strict=True)) + " |"
        for row in table.iter_rows()
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """CLI: run the ablation for one day and print the table."""
    from etl.config import load_settings, parse_sources

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse-url", required=True)
    parser.add_argument("--ds", type=date.fromisoformat, required=True, help="day D (YYYY-MM-DD)")
    parser.add_argument("--window-days", type=int, default=28)
    parser.add_argument("--work-dir", type=Path, help="default: $SHOPMTL_HOME/ablation/<D>")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--sources", help="comma-separated sources the warehouse has (default: SHOPMTL_SOURCES or all)")
    parser.add_argument("--maturity-days", type=int, default=FeatureConfig.maturity_days)
    parser.add_argument("--fraud-eval-days", type=int, default=FeatureConfig.fraud_eval_days)
    parser.add_argument(
        "--review-eval-days", type=int, default=FeatureConfig.review_eval_days,
        help="newest days of reviews to evaluate sentiment on (sparse sources such as Olist need more than day D)",
    )
    parser.add_argument("--max-epochs", type=int, default=MultiTaskConfig.max_epochs)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_settings()
    sources = parse_sources(args.sources) if args.sources else settings.sources
    work_dir = args.work_dir or settings.home / "ablation" / args.ds.isoformat()
    started = time.perf_counter()
    table = run_ablation(
        args.warehouse_url,
        args.ds,
        work_dir,
        args.window_days,
        args.seed,
        MultiTaskConfig(max_epochs=args.max_epochs),
        sources,
        FeatureConfig(
            maturity_days=args.maturity_days, fraud_eval_days=args.fraud_eval_days, review_eval_days=args.review_eval_days
        ),
    )
    print(
        f"\nAblation for {args.ds} (window {args.window_days} days, seed {args.seed}; {time.perf_counter() - started:.0f} s)\n"
    )
    print(format_table(table))


if __name__ == "__main__":
    main()
