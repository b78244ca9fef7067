"""The nightly run report: ``runs/<D>/report.html`` with PNG plots in ``runs/<D>/report/``.

What one night's report shows, all read from the warehouse and the run directory:

- header: day D, the Airflow run id, the model versions that scored the day (the published score
  tables' ``model_version``) and the champion/challenger gate decisions of the night;
- per objective, its main metric (AUC for binary objectives, accuracy for the category) over the
  last ``history_days`` nights from ``model_runs``: the night's model, the champion on the gate's
  same rows (``model_registry.compared_metrics_json``), which model scored each night, and the
  LightGBM fraud baseline next to the network on fraud;
- the distributions of day D's published scores (``score_*`` tables);
- a calibration curve per binary objective (click, purchase, review, fraud) from the day-D
  evaluation predictions of the models that scored the day, joined to their labels in
  ``runs/<D>/features``;
- the Great Expectations summary of the run (``data_quality_results`` for ds and run id) with a
  link to the data docs in ``runs/<D>/data_docs/``.

Objectives a deployment does not have are left out with a note.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from etl.contract import OBJECTIVES
from etl.io import write_text_atomically
from etl.layout import RunLayout
from etl.warehouse import mask_url
from reporting.calibration import calibration_curves
from reporting.data import read_report_data, resolve_scoring, serving_dirs
from reporting.html import calibration_html, header_html, metrics_html, page_html, quality_html, scores_html
from reporting.plots import (
    CALIBRATION_PLOT,
    HISTORY_PLOT,
    SCORES_PLOT,
    plot_calibration,
    plot_metric_history,
    plot_score_distributions,
    score_distributions,
)

log = logging.getLogger(__name__)


def write_run_report(
    warehouse_url: str,
    ds: date,
    run_id: str,
    run_dir: Path,
    objectives: Sequence[str],
    scoring: Mapping[str, Any] | None = None,
    decisions: Sequence[Mapping[str, Any]] | None = None,
    history_days: int = 14,
) -> Path:
    """Write ``run_dir/report.html`` (and its PNGs in ``run_dir/report/``) for day ``ds``; return its path.

    ``objectives``: the deployment's objectives (``RunPlan``'s); the others are left out with a note.
    ``scoring``: model name -> the gate's ``scoring`` summary (``model_version``, ``output_dir``) or an
    output directory, for the calibration curves; by default the versions the score tables name,
    found under ``run_dir/models``. ``decisions``: the gates' ``decision`` dicts; by default the
    registry rows of the models trained on ``ds``. Re-running replaces the report and its plots.
    """
    ds = date(ds.year, ds.month, ds.day)
    run_dir = Path(run_dir)
    layout = RunLayout(run_dir)
    objectives = [objective for objective in OBJECTIVES if objective in set(objectives)]
    plots_dir = layout.plots_dir
    plots_dir.mkdir(parents=True, exist_ok=True)
    for old in plots_dir.glob("*.png"):
        old.unlink()

    data = read_report_data(warehouse_url, ds, run_id, objectives, decisions, history_days)
    versions, dirs = resolve_scoring(layout, scoring, data.scores)

    history_png, history_notes, history_tables = plot_metric_history(data, objectives, plots_dir / HISTORY_PLOT)
    distributions, distribution_notes = score_distributions(data)
    scores_png = plot_score_distributions(distributions, ds, plots_dir / SCORES_PLOT)
    curves, calibration_notes = calibration_curves(objectives, layout.features_dir, dirs, serving_dirs(scoring))
    calibration_png = plot_calibration(curves, ds, plots_dir / CALIBRATION_PLOT)

    page = page_html(data, [
        header_html(data, versions, mask_url(warehouse_url)),
        metrics_html(data, history_png, run_dir, history_notes, history_tables),
        scores_html(data, scores_png, run_dir, distribution_notes),
        calibration_html(data, calibration_png, run_dir, calibration_notes),
        quality_html(data, run_dir),
    ])
    report = write_text_atomically(layout.report_path, page)  # UTF-8, as the page declares
    log.info("Run report for %s: %s", ds, report)
    return report
