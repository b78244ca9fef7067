"""The nightly run report: ``runs/<D>/report.html`` with PNG plots in ``runs/<D>/report/``.

What one night's report shows, all read from the warehouse and the run directory:

- header: day D, the Airflow run id, the model versions that scored the day (the published score
  tables' ``model_version``) and the champion/challenger gate decisions of the night;
- per task, its main metric (AUC for binary tasks, accuracy for the category task) over the last
  ``history_days`` nights from ``model_runs``: the night's model, the champion on the gate's same
  rows (``model_registry.compared_metrics_json``), which model scored each night, and the LightGBM
  fraud baseline next to the network on fraud;
- the distributions of day D's published scores (``score_*`` tables);
- a calibration curve per binary task (click, purchase, review, fraud) from the day-D evaluation
  predictions of the models that scored the day, joined to their labels in ``runs/<D>/features``;
- the Great Expectations summary of the run (``data_quality_results`` for ds and run id) with a
  link to the data docs in ``runs/<D>/data_docs/``.

The HTML is plain HTML with inline CSS and relative links only (no network resources), so the run
directory can be copied or served as is. Tasks a deployment does not have are left out with a note.

    python -m etl.report --warehouse-url sqlite:////srv/shopmtl/warehouse.db --ds 2026-02-04 \\
        --run-dir /srv/shopmtl/runs/2026-02-04
"""
from __future__ import annotations

import argparse
import html
import json
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import sqlalchemy as sa

from etl.contract import TASK_SOURCES, TASKS
from etl.warehouse import bind_date, create_warehouse_engine, mask_url, read_frame

log = logging.getLogger(__name__)

REPORT_FILE = "report.html"
PLOTS_DIR = "report"  # next to report.html; image links are relative to the run directory
MULTITASK = "multitask"
LGBM = "fraud_lgbm"
MAIN_METRIC = {"click": "auc", "purchase": "auc", "review": "auc", "category": "accuracy", "fraud": "auc"}
BINARY_TASKS = ("click", "purchase", "review", "fraud")
MAX_CALIBRATION_BINS = 10
MIN_ROWS_PER_BIN = 10
MAX_LISTED_FAILURES = 200


def esc(value: Any) -> str:
    """Text for HTML (element content and quoted attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


# --- reading ------------------------------------------------------------------------------------------


@dataclass
class ReportData:
    """Everything the report shows, read once."""

    ds: date
    run_id: str
    tasks: list[str]
    history_start: date
    model_runs: pl.DataFrame  # model_runs rows of the history window
    registry: pl.DataFrame  # model_registry rows of both model names
    scored_by: dict[tuple[str, date], str]  # (model name, night) -> version that scored that night
    scores: dict[str, pl.DataFrame]  # day D's rows of each score table that exists
    quality: pl.DataFrame  # data_quality_results of (ds, run_id)
    quality_run_id: str | None  # the run id the quality rows belong to (may differ: see read_quality)
    decisions: list[dict[str, Any]]


def _has_table(conn: sa.Connection, table: str) -> bool:
    return sa.inspect(conn).has_table(table)


def _date_range_params(conn: sa.Connection, start: date, end: date) -> dict[str, object]:
    return {"start": bind_date(conn, start), "end": bind_date(conn, end)}


def read_model_runs(conn: sa.Connection, start: date, end: date) -> pl.DataFrame:
    if not _has_table(conn, "model_runs"):
        return pl.DataFrame(schema={"ds": pl.Date, "model_name": pl.String, "model_version": pl.String,
                                    "task": pl.String, "metric": pl.String, "value": pl.Float64, "n_rows": pl.Int64})
    return read_frame(
        conn,
        "SELECT ds, model_name, model_version, task, metric, value, n_rows FROM model_runs "
        "WHERE ds >= :start AND ds <= :end ORDER BY ds, model_name, task, metric",
        _date_range_params(conn, start, end),
        table="model_runs",
    )


def read_registry(conn: sa.Connection) -> pl.DataFrame:
    schema = {"model_name": pl.String, "model_version": pl.String, "trained_ds": pl.Date, "status": pl.String,
              "created_at": pl.Datetime("us"), "reasons_json": pl.String, "compared_with": pl.String,
              "compared_metrics_json": pl.String, "metrics_json": pl.String}
    if not _has_table(conn, "model_registry"):
        return pl.DataFrame(schema=schema)
    frame = read_frame(
        conn,
        "SELECT model_name, model_version, trained_ds, status, created_at, reasons_json, compared_with, "
        "compared_metrics_json, metrics_json FROM model_registry WHERE model_name IN (:mtl, :lgbm) "
        "ORDER BY model_name, trained_ds, created_at",
        {"mtl": MULTITASK, "lgbm": LGBM},
        table="model_registry",
    )
    return frame if frame.height else pl.DataFrame(schema=schema)


SCORE_TABLES = ("score_user_item", "score_order_fraud", "score_review_sentiment", "score_item_category")
SCORE_COLUMNS = {
    "score_user_item": "p_click, p_purchase, model_version",
    "score_order_fraud": "p_fraud_mtl, p_fraud_lgbm, model_version",
    "score_review_sentiment": "p_negative, model_version",
    "score_item_category": "listed_category, predicted_category, confidence, model_version",
}


def read_scores(conn: sa.Connection, ds: date) -> dict[str, pl.DataFrame]:
    """Day ``ds``'s rows of every score table the warehouse has (tables never published are absent)."""
    return {
        table: read_frame(conn, f"SELECT {SCORE_COLUMNS[table]} FROM {table} WHERE ds = :ds", {"ds": bind_date(conn, ds)}, table=table)
        for table in SCORE_TABLES
        if _has_table(conn, table)
    }


def read_scored_by(conn: sa.Connection, start: date, end: date) -> dict[tuple[str, date], str]:
    """Which model version each night's published scores came from, per model name."""
    scored: dict[tuple[str, date], str] = {}
    for table in SCORE_TABLES:
        if not _has_table(conn, table):
            continue
        rows = read_frame(
            conn,
            f"SELECT ds, model_version FROM {table} WHERE ds >= :start AND ds <= :end GROUP BY ds, model_version",
            _date_range_params(conn, start, end),
            table=table,
        )
        for night, version in rows.iter_rows():
            if version is None:
                continue
            parts = str(version).split(";")  # score_order_fraud: "<multitask version>;<lightgbm version>"
            scored.setdefault((MULTITASK, night), parts[0])
            if len(parts) > 1:
                scored.setdefault((LGBM, night), parts[1])
    return scored


def read_quality(conn: sa.Connection, ds: date, run_id: str) -> tuple[pl.DataFrame, str | None]:
    """data_quality_results of (ds, run_id); when that run recorded none, the latest run of ds (noted)."""
    columns = ("run_id, table_name, column_name, expectation, critical, success, element_count, "
               "unexpected_count, sample_values, created_at")
    if not _has_table(conn, "data_quality_results"):
        return pl.DataFrame(), None
    params = {"ds": bind_date(conn, ds), "run_id": run_id}
    frame = read_frame(
        conn, f"SELECT {columns} FROM data_quality_results WHERE ds = :ds AND run_id = :run_id "
        "ORDER BY table_name, expectation, column_name", params, table="data_quality_results",
    )
    if frame.height:
        return frame, run_id
    latest = read_frame(
        conn, "SELECT run_id FROM data_quality_results WHERE ds = :ds ORDER BY created_at DESC LIMIT 1", params
    )
    if not latest.height:
        return frame, None
    other = str(latest["run_id"][0])
    return read_frame(
        conn, f"SELECT {columns} FROM data_quality_results WHERE ds = :ds AND run_id = :run_id "
        "ORDER BY table_name, expectation, column_name", {**params, "run_id": other}, table="data_quality_results",
    ), other


def latest_run_id(warehouse_url: str, ds: date) -> str | None:
    """The newest run id recorded for ``ds`` (validation results, else model_runs); for the CLI."""
    engine = create_warehouse_engine(warehouse_url)
    try:
        with engine.connect() as conn:
            for table in ("data_quality_results", "model_runs"):
                if _has_table(conn, table):
                    rows = read_frame(
                        conn, f"SELECT run_id FROM {table} WHERE ds = :ds ORDER BY created_at DESC LIMIT 1",
                        {"ds": bind_date(conn, ds)},
                    )
                    if rows.height:
                        return str(rows["run_id"][0])
    finally:
        engine.dispose()
    return None


def decisions_from_registry(registry: pl.DataFrame, ds: date) -> list[dict[str, Any]]:
    """The gate decision of the newest model of each name trained on ``ds``."""
    decisions = []
    for name in (MULTITASK, LGBM):
        rows = registry.filter((pl.col("model_name") == name) & (pl.col("trained_ds") == ds)).sort("created_at")
        if rows.height:
            row = rows.row(-1, named=True)
            decisions.append({
                "model_name": name,
                "model_version": row["model_version"],
                "status": row["status"],
                "champion_version": row["compared_with"],
                "reasons": _json_list(row["reasons_json"]),
            })
    return decisions


def _json_list(text: str | None) -> list[Any]:
    try:
        value = json.loads(text) if text else []
    except (TypeError, ValueError):
        return [str(text)]
    return value if isinstance(value, list) else [value]


def read_report_data(
    warehouse_url: str,
    ds: date,
    run_id: str,
    tasks: Sequence[str],
    decisions: Sequence[Mapping[str, Any]] | None,
    history_days: int,
) -> ReportData:
    start = ds - timedelta(days=max(1, history_days) - 1)
    engine = create_warehouse_engine(warehouse_url)
    try:
        with engine.connect() as conn:
            model_runs = read_model_runs(conn, start, ds)
            registry = read_registry(conn)
            scored_by = read_scored_by(conn, start, ds)
            scores = read_scores(conn, ds)
            quality, quality_run_id = read_quality(conn, ds, run_id)
    finally:
        engine.dispose()
    chosen = [dict(d) for d in decisions] if decisions is not None else decisions_from_registry(registry, ds)
    return ReportData(
        ds=ds, run_id=run_id, tasks=list(tasks), history_start=start, model_runs=model_runs, registry=registry,
        scored_by=scored_by, scores=scores, quality=quality, quality_run_id=quality_run_id, decisions=chosen,
    )


# --- which prediction files scored the day -------------------------------------------------------------


def find_scoring_dirs(run_dir: Path, versions: Mapping[str, str]) -> dict[str, Path]:
    """The model directories under ``run_dir/models`` whose metrics.json names the version that scored."""
    found: dict[str, Path] = {}
    for metrics_file in sorted((Path(run_dir) / "models").glob("*/metrics.json")):
        try:
            payload = json.loads(metrics_file.read_text())
        except (OSError, ValueError):
            continue
        name, version = payload.get("model_name"), payload.get("model_version")
        if name in versions and versions[name] == version and name not in found:
            found[name] = metrics_file.parent
    return found


def published_versions(scores: Mapping[str, pl.DataFrame]) -> dict[str, str]:
    """Model name -> the version whose scores day D published (from the score tables)."""
    versions: dict[str, str] = {}
    for frame in scores.values():
        for version in frame["model_version"].drop_nulls().unique().sort().to_list() if frame.height else []:
            parts = str(version).split(";")
            versions.setdefault(MULTITASK, parts[0])
            if len(parts) > 1:
                versions.setdefault(LGBM, parts[1])
    return versions


def resolve_scoring(
    run_dir: Path, scoring: Mapping[str, Any] | None, scores: Mapping[str, pl.DataFrame]
) -> tuple[dict[str, str], dict[str, Path]]:
    """(model name -> version that scored, model name -> its output dir with predictions/).

    ``scoring`` maps a model name to the gate's ``scoring`` summary ({model_version, output_dir}) or
    directly to an output directory; without it the score tables name the versions and the run
    directory's ``models/*/metrics.json`` locate them.
    """
    versions = published_versions(scores)
    dirs: dict[str, Path] = {}
    for name, value in (scoring or {}).items():
        if not value:
            continue
        if isinstance(value, Mapping):
            if value.get("model_version"):
                versions[name] = str(value["model_version"])
            if value.get("output_dir"):
                dirs[name] = Path(str(value["output_dir"]))
        else:
            dirs[name] = Path(str(value))
    missing = {name: version for name, version in versions.items() if name not in dirs}
    dirs.update(find_scoring_dirs(run_dir, missing))
    return versions, dirs


# --- plots ----------------------------------------------------------------------------------------------


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
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


def _champion_same_rows(registry: pl.DataFrame, name: str, version: str, task: str, metric: str) -> tuple[float | None, str | None]:
    """The champion's metric on the gate's same rows when ``version`` was gated, and the champion's version."""
    rows = registry.filter((pl.col("model_name") == name) & (pl.col("model_version") == version))
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
        if metric_row.get("task") == task and metric_row.get("metric") == metric and _finite(metric_row.get("value")):
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


def metric_history(data: ReportData, task: str) -> tuple[list[HistorySeries], list[dict[str, Any]]]:
    """Series for one task's panel and the per-night rows of its table."""
    metric = MAIN_METRIC[task]
    rows = data.model_runs.filter((pl.col("task") == task) & (pl.col("metric") == metric)).sort("ds")
    series: list[HistorySeries] = []
    table: list[dict[str, Any]] = []
    names = [MULTITASK, LGBM] if task == "fraud" else [MULTITASK]
    colours = {MULTITASK: "tab:blue", LGBM: "tab:orange"}
    labels = {MULTITASK: "network", LGBM: "LightGBM"}
    for name in names:
        own = rows.filter(pl.col("model_name") == name)
        nights, values, scored = [], [], []
        champ_nights, champ_values = [], []
        for night, version, value, n_rows in own.select("ds", "model_version", "value", "n_rows").iter_rows():
            champion_value, champion_version = _champion_same_rows(data.registry, name, version, task, metric)
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
            series.append(HistorySeries(f"{labels[name]}: night's model", nights, values, scored,
                                        {"color": colour, "marker": "o", "linestyle": "-"}))
        if champ_nights:
            series.append(HistorySeries(f"{labels[name]}: champion, same rows", champ_nights, champ_values,
                                        [True] * len(champ_nights),
                                        {"color": colour, "marker": "s", "linestyle": "--", "alpha": 0.6}))
    return series, table


def plot_metric_history(data: ReportData, tasks: Sequence[str], path: Path) -> tuple[Path | None, dict[str, str], dict[str, list[dict[str, Any]]]]:
    """One panel per task with history; returns (png or None, notes per task left out, tables per task)."""
    import matplotlib.dates as mdates

    panels, notes, tables = [], {}, {}
    for task in tasks:
        series, table = metric_history(data, task)
        tables[task] = table
        if series:
            panels.append((task, series))
        else:
            notes[task] = f"no {MAIN_METRIC[task]} values in model_runs for {data.history_start} to {data.ds}"
    if not panels:
        return None, notes, tables
    figure, axes = _figure(len(panels), panel_size=(4.8, 4.3))
    first, last = data.history_start, data.ds
    lo = min(n for _, series in panels for item in series for n in item.nights)  # the same nights on every panel
    for ax, (task, series) in zip(axes, panels):
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
        ax.set_title(f"{task}: {MAIN_METRIC[task]} on day-D eval rows", fontsize=10)
        ax.set_xlabel("night (ds)")
        ax.set_ylabel(MAIN_METRIC[task])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    figure.suptitle(f"Model quality, {first} to {last}", fontsize=11)
    return _save(figure, path), notes, tables


@dataclass
class Distribution:
    task: str
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
    for task, table, title, columns in wanted:
        if task not in data.tasks:
            continue
        frame = data.scores.get(table)
        if frame is None or not frame.height:
            notes[task] = f"{table} has no rows for {data.ds}"
            continue
        series = []
        for column, label in columns:
            values = frame[column].drop_nulls().drop_nans().to_numpy().astype(np.float64)
            if values.size:
                series.append((label, values))
        if not series:
            notes[task] = f"{table} has no non-null {', '.join(c for c, _ in columns)} for {data.ds}"
            continue
        if task == "category":
            agree = (frame["listed_category"] == frame["predicted_category"]).fill_null(False).mean()
            title = f"{title} (predicted = listed: {float(agree or 0):.0%})"
        found.append(Distribution(task, title, series))
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


@dataclass
class CalibrationCurve:
    label: str
    mean_predicted: np.ndarray
    fraction_positive: np.ndarray
    n_rows: int
    n_positive: int


def equal_count_calibration(labels: np.ndarray, probabilities: np.ndarray, max_bins: int = MAX_CALIBRATION_BINS) -> tuple[np.ndarray, np.ndarray]:
    """(mean predicted, observed positive rate) per bin of (about) equal row counts, sorted by score."""
    # Not sklearn's calibration_curve(strategy="quantile"): its quantile edges merge bins when many
    # scores tie (most fraud scores sit near 0), while splitting the sorted rows keeps counts equal.
    order = np.argsort(probabilities, kind="stable")
    n_bins = max(1, min(max_bins, labels.size // MIN_ROWS_PER_BIN))
    chunks = [chunk for chunk in np.array_split(order, n_bins) if chunk.size]
    return (np.array([probabilities[c].mean() for c in chunks]), np.array([labels[c].mean() for c in chunks]))


def _read(path: Path, columns: list[str]) -> pl.DataFrame | None:
    if not path.is_file():
        return None
    names = pl.read_parquet_schema(path)
    if not set(columns) <= set(names):
        return None
    return pl.read_parquet(path, columns=columns)


def calibration_inputs(
    task: str, features_dir: Path, dirs: Mapping[str, Path]
) -> tuple[list[tuple[str, np.ndarray, np.ndarray]], str | None]:
    """[(model label, labels, probabilities)] of one binary task's day-D eval rows, or a reason for none."""
    mtl = dirs.get(MULTITASK)
    out: list[tuple[str, np.ndarray, np.ndarray]] = []

    def pairs(frame: pl.DataFrame | None, label: str, column: str, name: str) -> None:
        if frame is None:
            return
        frame = frame.filter(pl.col(label).is_not_null() & pl.col(column).is_not_null() & ~pl.col(column).is_nan())
        if frame.height:
            out.append((name, frame[label].cast(pl.Float64).to_numpy(), frame[column].cast(pl.Float64).to_numpy()))

    if task in ("click", "purchase"):
        label, column = ("clicked", "p_click") if task == "click" else ("converted", "p_purchase")
        labels = _read(features_dir / "impressions.parquet", ["event_id", label])
        predictions = _read(mtl / "predictions" / "impressions_eval.parquet", ["event_id", column]) if mtl else None
        if labels is not None and predictions is not None:
            pairs(predictions.join(labels, on="event_id", how="inner"), label, column, "network")
    elif task == "review":
        labels = _read(features_dir / "reviews.parquet", ["review_id", "negative"])
        predictions = _read(mtl / "predictions" / "reviews.parquet", ["review_id", "p_negative"]) if mtl else None
        if labels is not None and predictions is not None:
            pairs(predictions.join(labels, on="review_id", how="inner"), "negative", "p_negative", "network")
    elif task == "fraud":
        labels = _read(features_dir / "orders.parquet", ["order_id", "is_fraud"])
        for name, label_text in ((MULTITASK, "network"), (LGBM, "LightGBM")):
            model_dir = dirs.get(name)
            predictions = _read(model_dir / "predictions" / "orders.parquet", ["order_id", "split", "p_fraud"]) if model_dir else None
            if labels is not None and predictions is not None:
                pairs(predictions.filter(pl.col("split") == "eval").join(labels, on="order_id", how="inner"),
                      "is_fraud", "p_fraud", label_text)
    if out:
        return out, None
    if mtl is None and task != "fraud":
        return out, "the predictions of the model that scored the day were not found under the run directory"
    return out, "no labelled day-D evaluation rows with predictions"


def plot_calibration(curves: Mapping[str, list[CalibrationCurve]], ds: date, path: Path) -> Path | None:
    if not curves:
        return None
    figure, axes = _figure(len(curves), panel_size=(4.8, 4.2), max_cols=2)
    markers = {"network": "o", "LightGBM": "^"}
    for ax, (task, task_curves) in zip(axes, curves.items()):
        top = max(float(max(c.mean_predicted.max(), c.fraction_positive.max())) for c in task_curves)
        limit = 1.0 if top > 0.5 else max(0.01, min(1.0, top * 1.15))
        ax.plot([0, limit], [0, limit], linestyle=":", color="gray", label="perfectly calibrated")
        for curve in task_curves:
            ax.plot(curve.mean_predicted, curve.fraction_positive, marker=markers.get(curve.label, "o"),
                    label=f"{curve.label} (n={curve.n_rows}, {curve.n_positive} positive)")
        ax.set_xlim(0, limit)
        ax.set_ylim(0, limit)
        n_rows = max(c.n_rows for c in task_curves)
        zoom = "" if limit == 1.0 else f", axes to {limit:.2g}"
        ax.set_title(f"{task}: {n_rows} eval rows{zoom}", fontsize=10)
        ax.set_xlabel("mean predicted probability (equal-count bins)")
        ax.set_ylabel("observed positive rate")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    figure.suptitle(f"Calibration on the evaluation rows of {ds}", fontsize=11)
    return _save(figure, path)


# --- HTML -----------------------------------------------------------------------------------------------

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 1.5em auto; max-width: 1400px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: .5em 0; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.note { color: #7a5200; background: #fff6e0; border-left: 4px solid #f0b400; padding: .3em .6em; margin: .4em 0; }
.fail { color: #a00000; font-weight: 600; } .ok { color: #137a13; } .warn { color: #a86500; }
img { max-width: 100%; border: 1px solid #ddd; }
code { font-size: .92em; }
"""


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[int] = ()) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(
            f"<td class=\"num\">{esc(_fmt(c))}</td>" if i in numeric else f"<td>{esc(_fmt(c))}</td>" for i, c in enumerate(row)
        ) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def _img(run_dir: Path, path: Path | None, alt: str) -> str:
    if path is None:
        return ""
    src = Path(os.path.relpath(path, run_dir)).as_posix()
    return f'<p><img src="{esc(src)}" alt="{esc(alt)}"></p>'


def _missing_task_notes(tasks: Sequence[str], notes: Mapping[str, str], universe: Sequence[str] = TASKS) -> str:
    """A note per task of ``universe`` whose panel is left out: not in the deployment, or ``notes`` says why."""
    parts = []
    for task in universe:
        if task not in tasks:
            needed = ", ".join(sorted(TASK_SOURCES[task]))
            parts.append(_note(f"{task}: not in this deployment (needs sources {needed}); panel left out"))
        elif task in notes:
            parts.append(_note(f"{task}: {notes[task]}; panel left out"))
    return "".join(parts)


def header_html(data: ReportData, versions: Mapping[str, str], warehouse: str) -> str:
    skipped = [t for t in TASKS if t not in data.tasks]
    rows = [
        ("day (ds)", data.ds.isoformat()),
        ("run id", data.run_id),
        ("tasks", ", ".join(data.tasks) or "none"),
        ("tasks not in this deployment", ", ".join(skipped) or "none"),
        ("warehouse", warehouse),
        ("report written", datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")),
    ]
    parts = [f"<h1>Nightly run report: {esc(data.ds.isoformat())}</h1>", _table(["", ""], rows)]
    parts.append("<h2>Models that scored the day</h2>")
    published = []
    for table in SCORE_TABLES:
        frame = data.scores.get(table)
        if frame is not None and frame.height:
            published.append((table, frame.height, ", ".join(frame["model_version"].drop_nulls().unique().sort().to_list())))
    if published:
        parts.append(_table(["score table", "rows of D", "model_version"], published, numeric=[1]))
    else:
        parts.append(_note(f"no score table has rows for {data.ds}"))
    if versions:
        parts.append(_table(["model", "version that scored"], sorted(versions.items())))
    parts.append("<h2>Gate decisions (champion / challenger)</h2>")
    if data.decisions:
        rows = []
        for decision in data.decisions:
            reasons = decision.get("reasons") or []
            rows.append((decision.get("model_name"), decision.get("model_version"), decision.get("status"),
                         decision.get("champion_version"), "; ".join(map(str, reasons))))
        parts.append(_table(["model", "night's version", "decision", "champion after the gate", "reasons"], rows))
    else:
        parts.append(_note(f"no gate decision recorded for models trained on {data.ds}"))
    return "".join(parts)


def metrics_html(data: ReportData, png: Path | None, run_dir: Path, notes: Mapping[str, str],
                 tables: Mapping[str, list[dict[str, Any]]]) -> str:
    parts = [
        f"<h2>Model quality, last {esc((data.ds - data.history_start).days + 1)} nights</h2>",
        "<p>Main metric per task on each night's day-D evaluation rows (<code>model_runs</code>): the night's "
        "model (solid), the champion on the gate's same rows (dashed, <code>model_registry</code>), a red "
        "&times; where the night's model was rejected, and a black ring around the model that scored the night "
        "(the champion)." + (" The fraud panel shows the LightGBM baseline next to the network." if "fraud" in data.tasks else "")
        + "</p>",
        _img(run_dir, png, "per-task metric history"),
        _missing_task_notes(data.tasks, notes),
    ]
    rows = []
    for task in data.tasks:
        for row in tables.get(task, []):
            scored = row["scored_by"]
            verdict = "scored" if scored == row["version"] else (f"champion {scored} scored" if scored else "–")
            rows.append((row["night"].isoformat(), task, row["model"], row["version"], MAIN_METRIC[task], row["value"],
                         row["n_rows"], row["champion_same_rows"], row["champion_version"], verdict))
    if rows:
        parts.append("<details><summary>values per night</summary>")
        parts.append(_table(["night", "task", "model", "night's version", "metric", "value", "rows",
                             "champion (same rows)", "champion version", "who scored the night"],
                            sorted(rows, key=lambda r: (r[1], r[2], r[0])), numeric=[5, 6, 7]))
        parts.append("</details>")
    day_rows = data.model_runs.filter(pl.col("ds") == data.ds).sort("model_name", "task", "metric")
    if day_rows.height:
        parts.append(f"<h3>All metrics of {esc(data.ds.isoformat())}</h3>")
        parts.append(_table(["model", "version", "task", "metric", "value", "rows"],
                            day_rows.select("model_name", "model_version", "task", "metric", "value", "n_rows").rows(),
                            numeric=[4, 5]))
    return "".join(parts)


def quality_html(data: ReportData, run_dir: Path) -> str:
    parts = ["<h2>Data quality (Great Expectations)</h2>"]
    docs_index = Path(run_dir) / "data_docs" / "index.html"
    if docs_index.is_file():
        href = Path(os.path.relpath(docs_index, run_dir)).as_posix()
        parts.append(f'<p>GX data docs of the run: <a href="{esc(href)}">{esc(href)}</a></p>')
    else:
        parts.append(_note(f"no GX data docs under {Path(run_dir) / 'data_docs'}"))
    quality = data.quality
    if not quality.height:
        parts.append(_note(f"no data_quality_results for ds={data.ds} (run {data.run_id})"))
        return "".join(parts)
    if data.quality_run_id != data.run_id:
        parts.append(_note(f"run {data.run_id} recorded no validation results; showing the latest run of "
                           f"{data.ds}: {data.quality_run_id}"))
    per_table = (
        quality.group_by("table_name")
        .agg(
            pl.len().alias("evaluated"),
            (~pl.col("success")).sum().alias("failed"),
            ((~pl.col("success")) & pl.col("critical")).sum().alias("critical_failed"),
            pl.col("element_count").max().alias("rows"),
        )
        .sort("table_name")
    )
    total_failed = int(per_table["failed"].sum())
    total_critical = int(per_table["critical_failed"].sum())
    verdict_class = "fail" if total_critical else "warn" if total_failed else "ok"
    parts.append(
        f'<p class="{verdict_class}">{esc(quality.height)} expectations evaluated, {esc(total_failed)} failed, '
        f"{esc(total_critical)} critical (run {esc(data.quality_run_id)}).</p>"
    )
    parts.append(_table(["table", "rows", "expectations evaluated", "failed", "critical failed"],
                        per_table.select("table_name", "rows", "evaluated", "failed", "critical_failed").rows(),
                        numeric=[1, 2, 3, 4]))
    failures = quality.filter(~pl.col("success")).sort(["critical", "table_name", "column_name"], descending=[True, False, False], nulls_last=True)
    for critical, title in ((True, "Critical failures (stop the run)"), (False, "Warnings (non-critical failures)")):
        rows = failures.filter(pl.col("critical") == critical)
        if not rows.height:
            continue
        parts.append(f"<h3>{esc(title)}</h3>")
        listed = rows.head(MAX_LISTED_FAILURES)
        parts.append(_table(
            ["table", "column", "rule", "unexpected", "of rows", "sample values"],
            listed.select("table_name", "column_name", "expectation", "unexpected_count", "element_count", "sample_values").rows(),
            numeric=[3, 4],
        ))
        if rows.height > listed.height:
            parts.append(_note(f"{rows.height - listed.height} more not listed; see data_quality_results"))
    return "".join(parts)


# --- the report -----------------------------------------------------------------------------------------


def write_run_report(
    warehouse_url: str,
    ds: date,
    run_id: str,
    run_dir: Path,
    tasks: Sequence[str],
    scoring: Mapping[str, Any] | None = None,
    decisions: Sequence[Mapping[str, Any]] | None = None,
    history_days: int = 14,
) -> Path:
    """Write ``run_dir/report.html`` (and its PNGs in ``run_dir/report/``) for day ``ds``; return its path.

    ``tasks``: the deployment's tasks (``RunPlan.tasks``); the others are left out with a note.
    ``scoring``: model name -> the gate's ``scoring`` summary (``model_version``, ``output_dir``) or an
    output directory, for the calibration curves; by default the versions the score tables name,
    found under ``run_dir/models``. ``decisions``: the gates' ``decision`` dicts; by default the
    registry rows of the models trained on ``ds``. Re-running replaces the report and its plots.
    """
    ds = date(ds.year, ds.month, ds.day)
    run_dir = Path(run_dir)
    tasks = [task for task in TASKS if task in set(tasks)]
    plots_dir = run_dir / PLOTS_DIR
    plots_dir.mkdir(parents=True, exist_ok=True)
    for old in plots_dir.glob("*.png"):
        old.unlink()

    data = read_report_data(warehouse_url, ds, run_id, tasks, decisions, history_days)
    versions, dirs = resolve_scoring(run_dir, scoring, data.scores)

    history_png, history_notes, history_tables = plot_metric_history(data, tasks, plots_dir / "metrics_history.png")

    distributions, distribution_notes = score_distributions(data)
    scores_png = plot_score_distributions(distributions, ds, plots_dir / "score_distributions.png")

    curves: dict[str, list[CalibrationCurve]] = {}
    calibration_notes: dict[str, str] = {}
    for task in BINARY_TASKS:
        if task not in tasks:
            continue
        inputs, reason = calibration_inputs(task, run_dir / "features", dirs)
        if not inputs:
            calibration_notes[task] = reason or "no rows"
            continue
        curves[task] = []
        for label, y, p in inputs:
            mean_predicted, fraction_positive = equal_count_calibration(y, p)
            curves[task].append(CalibrationCurve(label, mean_predicted, fraction_positive, int(y.size), int(y.sum())))
    calibration_png = plot_calibration(curves, ds, plots_dir / "calibration.png")

    body = [
        header_html(data, versions, mask_url(warehouse_url)),
        metrics_html(data, history_png, run_dir, history_notes, history_tables),
        f"<h2>Score distributions of {esc(ds.isoformat())}</h2>",
        _img(run_dir, scores_png, "score distributions"),
        _missing_task_notes(tasks, distribution_notes),
        f"<h2>Calibration on the evaluation rows of {esc(ds.isoformat())}</h2>",
        "<p>Equal-count bins of the scoring models' day-D evaluation predictions against their labels "
        "(impressions of D for click and purchase, reviews of D, the mature fraud holdout); "
        "the dotted diagonal is perfect calibration.</p>",
        _img(run_dir, calibration_png, "calibration curves"),
        _missing_task_notes(tasks, calibration_notes, BINARY_TASKS),
        quality_html(data, run_dir),
    ]
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>shopmtl nightly report {esc(ds.isoformat())}</title><style>{CSS}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )
    report = run_dir / REPORT_FILE
    partial = report.with_suffix(".html.tmp")
    partial.write_text(page, encoding="utf-8")
    partial.replace(report)
    log.info("Run report for %s: %s", ds, report)
    return report


def main(argv: Sequence[str] | None = None) -> Path:
    from etl.config import load_settings

    parser = argparse.ArgumentParser(description="Write the nightly run report (report.html) for one day")
    parser.add_argument("--warehouse-url", default=None, help="SQLAlchemy URL (default: the embedded warehouse)")
    parser.add_argument("--ds", required=True, type=date.fromisoformat, help="day D, YYYY-MM-DD")
    parser.add_argument("--run-dir", type=Path, default=None, help="default: $SHOPMTL_HOME/runs/<D>")
    parser.add_argument("--run-id", default=None, help="default: the newest run recorded for D")
    parser.add_argument("--tasks", default=None, help="comma separated (default: what SHOPMTL_SOURCES allows)")
    parser.add_argument("--history-days", type=int, default=14)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    settings = load_settings()
    from etl.contract import available_tasks

    warehouse_url = args.warehouse_url or settings.embedded_warehouse_url
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else available_tasks(settings.sources)
    run_id = args.run_id or latest_run_id(warehouse_url, args.ds) or "unknown"
    report = write_run_report(warehouse_url, args.ds, run_id, args.run_dir or settings.run_dir(args.ds), tasks,
                              history_days=args.history_days)
    print(report)
    return report


if __name__ == "__main__":
    main()
