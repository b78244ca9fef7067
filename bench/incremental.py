"""An incremental night next to full-window retraining, on the same features, seed and day-D rows.

The measured night's ``train_multitask`` (the DAG's, full-window, from scratch) is one side. The
other is ``training.train.train_multitask`` on the same features directory, warm-started from the
network the previous night trained, on the newest ``recent_days`` days plus a ``replay_fraction``
sample of older rows (``training/incremental.py``). Both report seconds, training rows and each
objective's day-D metrics, so a user sees what the cheaper night costs in quality.
"""
from __future__ import annotations

import json
from pathlib import Path

from bench.run import count_training_rows
from etl.contract import MAIN_METRIC, MULTITASK
from etl.layout import METRICS_FILE, RunLayout
from training.config import MultiTaskConfig

RECENT_DAYS = 1  # the newest day of each kind, as a nightly job that follows the day would train
REPLAY_FRACTION = 0.1


def read_main_metrics(metrics: dict) -> dict[str, dict[str, float | None]]:
    """Per objective: its main day-D metric (``etl.contract.MAIN_METRIC``), its value and rows."""
    main = {}
    for row in metrics.get("metrics", []):
        if MAIN_METRIC.get(row["task"]) == row["metric"]:
            main[row["task"]] = {"metric": row["metric"], "value": row["value"], "n_rows": row.get("n_rows")}
    return main


def format_epochs(best_epochs: dict[str, int] | None) -> str:
    """Each objective's kept epoch, as ``click@2 purchase@2 review@1 ...``."""
    return " ".join(f"{objective}@{epoch}" for objective, epoch in (best_epochs or {}).items())


def compare_incremental(layout: RunLayout, previous: RunLayout, out_dir: Path) -> dict[str, object]:
    """Train the incremental night into ``out_dir``; return both sides' seconds, rows and day-D metrics."""
    from training.train import train_multitask

    full = json.loads((layout.model_dir(MULTITASK) / METRICS_FILE).read_text())
    config = MultiTaskConfig(recent_days=RECENT_DAYS, replay_fraction=REPLAY_FRACTION)
    train_multitask(layout.features_dir, out_dir, config, warm_start_dir=previous.model_dir(MULTITASK))
    night = json.loads((out_dir / METRICS_FILE).read_text())
    if night.get("incremental") is None:  # the warm start failed: the comparison would be of two full runs
        raise RuntimeError(f"the incremental night did not warm-start: {night.get('warm_start')}")
    full_metrics, night_metrics = read_main_metrics(full), read_main_metrics(night)
    return {
        "name": "incremental night",
        "shopmtl": f"warm start from the previous night + newest {RECENT_DAYS} day(s) + {REPLAY_FRACTION:.0%} replay",
        "peer": "full-window retraining from scratch (the DAG's train_multitask)",
        "shopmtl_s": night["wall_s"],  # train_multitask's own wall time, on both sides
        "peer_s": full["wall_s"],
        "ratio": night["wall_s"] / full["wall_s"],
        "shopmtl_rows": count_training_rows(night),
        "peer_rows": count_training_rows(full),
        "kept": night["incremental"],
        "epochs": {"shopmtl": format_epochs(night.get("best_epochs")), "peer": format_epochs(full.get("best_epochs"))},
        "quality": {
            objective: {
                "metric": row["metric"],
                "n_rows": row["n_rows"],
                "shopmtl": night_metrics.get(objective, {}).get("value"),
                "peer": row["value"],
            }
            for objective, row in full_metrics.items()
        },
    }
