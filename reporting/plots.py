"""The report's figures: the metric history, the score distributions and the calibration curves.

Each ``plot_*`` draws one PNG with one panel per objective (Agg canvas, no pyplot state) and returns
its path, or None when there is nothing to draw; the objectives left out get a note in the page.
matplotlib is imported only when a figure is drawn.
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from etl.contract import FRAUD_LGBM, MAIN_METRIC, MULTITASK
from etl.io import write_atomically
from reporting.calibration import MODEL_LABELS, CalibrationCurve
from reporting.data import ReportData

# The PNGs in the run's plots directory (etl.layout.RunLayout.plots_dir).
HISTORY_PLOT = "metrics_history.png"
SCORES_PLOT = "score_distributions.png"
CALIBRATION_PLOT = "calibration.png"


def _figure(n_panels: int, panel_size: tuple[float, float] = (4.6, 3.4), max_cols: int = 3):
    """A constrained-layout Agg figure with exactly ``n_panels`` axes, at most ``max_cols`` per row."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    ncols = max(1, min(max_cols, n_panels))
    nrows = math.ceil(n_panels / ncols)
    figure = Figure(figsize=(panel_size[0] * ncols, panel_size[1] * nrows), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)  # Agg: no display, no pyplot state
    axes = [figure.add_subplot(nrows, ncols, i + 1) for i in range(n_panels)]
    return figure, axes


def _save(figure, path: Path) -> Path:
    return write_atomically(path, lambda tmp: figure.savefig(tmp, format="png"))


# --- metric history ------------------------------------------------------------------------------


def _champion_same_rows(registry: pl.DataFrame, name: str, version: str, objective: str, metric: str) -> tuple[float | None, str | None]:
    """The champion's metric on the gate's same rows when ``version`` was gated, and the champion's version."""
    rows = registry.filter((pl.col("model_name") == name) & (pl.col("model_version") == version) & (pl.col("objective") == objective))
    if not rows.height:
        return None, None
    row = rows.row(0, named=True)
    try:
        compared = json.loads(row["compared_metrics_json"]) if row["compared_metrics_json"] else None
    except ValueError:
        compared = None
    if not compared:
        return None, row["compared_with"]
    for metric_row in compared.get("champion", []):
        if metric_row.get("task") == objective and metric_row.get("metric") == metric and _finite(metric_row.get("value")):
            return float(metric_row["value"]), row["compared_with"]
    return None, row["compared_with"]


def _finite(value: Any) -> bool:
    return value is not None and isinstance(value, (int, float)) and math.isfinite(float(value))


@dataclass
class HistorySeries:
    label: str
    nights: list[date]
    values: list[float]
    scored: list[bool]  # the night's model scored that night (it was, or became, the champion)
    style: dict[str, Any]


def metric_history(data: ReportData, objective: str) -> tuple[list[HistorySeries], list[dict[str, Any]]]:
    """Series for one objective's panel and the per-night rows of its table."""
    metric = MAIN_METRIC[objective]
    rows = data.model_runs.filter((pl.col("task") == objective) & (pl.col("metric") == metric)).sort("ds")
    series: list[HistorySeries] = []
    table: list[dict[str, Any]] = []
    names = [MULTITASK, FRAUD_LGBM] if objective == "fraud" else [MULTITASK]
    colours = {MULTITASK: "tab:blue", FRAUD_LGBM: "tab:orange"}
    for name in names:
        own = rows.filter(pl.col("model_name") == name)
        nights, values, scored = [], [], []
        champ_nights, champ_values = [], []
        for night, version, value, n_rows in own.select("ds", "model_version", "value", "n_rows").iter_rows():
            champion_value, champion_version = _champion_same_rows(data.registry, name, version, objective, metric)
            scored_version = data.scored_by.get((name, night))
            did_score = scored_version == version if scored_version else None
            table.append({
                "night": night, "model": name, "version": version, "value": value, "n_rows": n_rows,
                "scored_by": scored_version, "champion_same_rows": champion_value,
                "champion_version": champion_version,
            })
            if _finite(value):
                nights.append(night)
                values.append(float(value))
                scored.append(bool(did_score) if did_score is not None else True)
            if champion_value is not None:
                champ_nights.append(night)
                champ_values.append(champion_value)
        colour = colours[name]
        if nights:
            series.append(HistorySeries(f"{MODEL_LABELS[name]}: night's model", nights, values, scored,
                                        {"color": colour, "marker": "o", "linestyle": "-"}))
        if champ_nights:
            series.append(HistorySeries(f"{MODEL_LABELS[name]}: champion, same rows", champ_nights, champ_values,
                                        [True] * len(champ_nights),
                                        {"color": colour, "marker": "s", "linestyle": "--", "alpha": 0.6}))
    return series, table


def plot_metric_history(data: ReportData, objectives: Sequence[str], path: Path) -> tuple[Path | None, dict[str, str], dict[str, list[dict[str, Any]]]]:
    """One panel per objective with history; returns (png or None, notes per objective left out, tables per objective)."""
    import matplotlib.dates as mdates

    panels, notes, tables = [], {}, {}
    for objective in objectives:
        series, table = metric_history(data, objective)
        tables[objective] = table
        if series:
            panels.append((objective, series))
        else:
            notes[objective] = f"no {MAIN_METRIC[objective]} values in model_runs for {data.history_start} to {data.ds}"
    if not panels:
        return None, notes, tables
    figure, axes = _figure(len(panels), panel_size=(4.8, 4.3))
    first, last = data.history_start, data.ds
    lo = min(n for _, series in panels for item in series for n in item.nights)  # the same nights on every panel
    for ax, (objective, series) in zip(axes, panels):
        scored_x, scored_y = [], []
        for item in series:
            xs = [datetime(n.year, n.month, n.day) for n in item.nights]
            ax.plot(xs, item.values, label=item.label, markersize=5, **item.style)
            if item.style["linestyle"] != "-":
                continue
            rejected = [(x, v) for x, v, s in zip(xs, item.values, item.scored) if not s]
            if rejected:
                ax.plot([x for x, _ in rejected], [v for _, v in rejected], linestyle="none", marker="x",
                        markersize=9, color="tab:red", label=f"{item.label.split(':')[0]}: rejected")
            # Ring the point of the model that scored the night: the night's own model when promoted,
            # else the champion on the same rows (the champion kept scoring).
            champion = {n: v for other in series if other.label.split(":")[0] == item.label.split(":")[0]
                        and other is not item for n, v in zip(other.nights, other.values)}
            for night, x, value, scored in zip(item.nights, xs, item.values, item.scored):
                if scored:
                    scored_x.append(x), scored_y.append(value)
                elif night in champion:
                    scored_x.append(x), scored_y.append(champion[night])
        if scored_x:
            ax.plot(scored_x, scored_y, linestyle="none", marker="o", markersize=12, markerfacecolor="none",
                    markeredgecolor="black", markeredgewidth=1.2, label="scored the night (champion)")
        ax.set_xlim(datetime(lo.year, lo.month, lo.day) - timedelta(hours=18),
                    datetime(last.year, last.month, last.day) + timedelta(hours=18))
        values = [v for item in series for v in item.values]
        low, high = min(values), max(values)
        pad = max(0.02, (high - low) * 0.15)
        ax.set_ylim(max(0.0, low - pad), min(1.0 + pad / 3, high + pad))  # metrics are in [0, 1]; keep markers at 1 visible
        ax.xaxis.set_major_locator(mdates.DayLocator(interval=max(1, math.ceil(((last - lo).days + 1) / 7))))
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d"))
        ax.set_title(f"{objective}: {MAIN_METRIC[objective]} on day-D eval rows", fontsize=10)
        ax.set_xlabel("night (ds)")
        ax.set_ylabel(MAIN_METRIC[objective])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    figure.suptitle(f"Model quality, {first} to {last}", fontsize=11)
    return _save(figure, path), notes, tables


# --- score distributions -------------------------------------------------------------------------


@dataclass
class Distribution:
    objective: str
    title: str
    series: list[tuple[str, np.ndarray]]


def score_distributions(data: ReportData) -> tuple[list[Distribution], dict[str, str]]:
    """Histograms to draw from day D's score tables, and notes for the ones left out."""
    wanted = [
        ("click", "score_user_item", "p_click (top-20 recommendations)", [("p_click", "p_click")]),
        ("purchase", "score_user_item", "p_purchase (top-20 recommendations)", [("p_purchase", "p_purchase")]),
        ("fraud", "score_order_fraud", "order fraud: network vs LightGBM",
         [("p_fraud_mtl", "network p_fraud_mtl"), ("p_fraud_lgbm", "LightGBM p_fraud_lgbm")]),
        ("review", "score_review_sentiment", "p_negative (reviews of D)", [("p_negative", "p_negative")]),
        ("category", "score_item_category", "category confidence", [("confidence", "confidence")]),
    ]
    found, notes = [], {}
    for objective, table, title, columns in wanted:
        if objective not in data.objectives:
            continue
        frame = data.scores.get(table)
        if frame is None or not frame.height:
            notes[objective] = f"{table} has no rows for {data.ds}"
            continue
        series = []
        for column, label in columns:
            values = frame[column].drop_nulls().drop_nans().to_numpy().astype(np.float64)
            if values.size:
                series.append((label, values))
        if not series:
            notes[objective] = f"{table} has no non-null {', '.join(c for c, _ in columns)} for {data.ds}"
            continue
        if objective == "category":
            agree = (frame["listed_category"] == frame["predicted_category"]).fill_null(False).mean()
            title = f"{title} (predicted = listed: {float(agree or 0):.0%})"
        found.append(Distribution(objective, title, series))
    return found, notes


def plot_score_distributions(distributions: Sequence[Distribution], ds: date, path: Path) -> Path | None:
    if not distributions:
        return None
    figure, axes = _figure(len(distributions))
    for ax, item in zip(axes, distributions):
        combined = np.concatenate([values for _, values in item.series])
        low, high = float(combined.min()), float(combined.max())
        if high - low < 1e-9:
            low, high = max(0.0, low - 0.01), min(1.0, high + 0.01) if high < 1.0 else high + 0.01
        bins = np.linspace(low, high, 31)
        for label, values in item.series:
            ax.hist(values, bins=bins, alpha=0.6 if len(item.series) > 1 else 0.85,
                    label=f"{label} (n={values.size}, mean {values.mean():.3g})")
        ax.set_title(item.title, fontsize=10)
        ax.set_xlabel("score")
        ax.set_ylabel("rows")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    figure.suptitle(f"Published scores of {ds}", fontsize=11)
    return _save(figure, path)


# --- calibration ---------------------------------------------------------------------------------


def plot_calibration(curves: Mapping[str, list[CalibrationCurve]], ds: date, path: Path) -> Path | None:
    if not curves:
        return None
    figure, axes = _figure(len(curves), panel_size=(4.8, 4.2), max_cols=2)
    markers = {MODEL_LABELS[MULTITASK]: "o", MODEL_LABELS[FRAUD_LGBM]: "^"}
    for ax, (objective, objective_curves) in zip(axes, curves.items()):
        top = max(float(max(c.mean_predicted.max(), c.fraction_positive.max())) for c in objective_curves)
        limit = 1.0 if top > 0.5 else max(0.01, min(1.0, top * 1.15))
        ax.plot([0, limit], [0, limit], linestyle=":", color="gray", label="perfectly calibrated")
        for curve in objective_curves:
            ax.plot(curve.mean_predicted, curve.fraction_positive, marker=markers.get(curve.label, "o"),
                    label=f"{curve.label} (n={curve.n_rows}, {curve.n_positive} positive)")
        ax.set_xlim(0, limit)
        ax.set_ylim(0, limit)
        n_rows = max(c.n_rows for c in objective_curves)
        zoom = "" if limit == 1.0 else f", axes to {limit:.2g}"
        ax.set_title(f"{objective}: {n_rows} eval rows{zoom}", fontsize=10)
        ax.set_xlabel("mean predicted probability (equal-count bins)")
        ax.set_ylabel("observed positive rate")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    figure.suptitle(f"Calibration on the evaluation rows of {ds}", fontsize=11)
    return _save(figure, path)
