"""What the report shows, read once from the warehouse and the run directory.

From the warehouse: the ``model_runs`` rows of the history window, the ``model_registry`` rows of
both models, day D's rows of each published score table, which model version scored each night,
and the Great Expectations results of the run (``data_quality_results``). From the run directory:
the model directories holding the predictions of the models that scored day D (for calibration).
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import sqlalchemy as sa

from etl.contract import ALL_SCENARIOS, FRAUD_LGBM, MULTITASK, SCORE_TABLES
from etl.layout import METRICS_FILE, RunLayout
from etl.warehouse import bind_date, create_warehouse_engine, read_frame

# The columns the report reads of each score table (etl.contract.SCORE_TABLES); all have model_version.
SCORE_COLUMNS = {
    "score_user_item": "p_click, p_purchase, model_version",
    "score_order_fraud": "p_fraud_mtl, p_fraud_lgbm, model_version",
    "score_review_sentiment": "p_negative, model_version",
    "score_item_category": "listed_category, predicted_category, confidence, model_version",
}

MODEL_RUNS_SCHEMA = {"ds": pl.Date, "model_name": pl.String, "model_version": pl.String, "task": pl.String,
                     "metric": pl.String, "value": pl.Float64, "n_rows": pl.Int64}
REGISTRY_SCHEMA = {"model_name": pl.String, "model_version": pl.String, "objective": pl.String, "trained_ds": pl.Date,
                   "status": pl.String,
                   "created_at": pl.Datetime("us"), "reasons_json": pl.String, "compared_with": pl.String,
                   "compared_metrics_json": pl.String, "metrics_json": pl.String}
QUALITY_COLUMNS = ("run_id, table_name, column_name, expectation, critical, success, element_count, "
                   "unexpected_count, sample_values, created_at")


@dataclass
class ReportData:
    """Everything the report shows, read once."""

    ds: date
    run_id: str
    objectives: list[str]
    history_start: date
    model_runs: pl.DataFrame  # model_runs rows of the history window
    registry: pl.DataFrame  # model_registry rows of both model names
    scored_by: dict[tuple[str, date], str]  # (model name, night) -> version that scored that night
    scores: dict[str, pl.DataFrame]  # day D's rows of each score table that exists
    quality: pl.DataFrame  # data_quality_results of (ds, run_id)
    quality_run_id: str | None  # the run id the quality rows belong to (may differ: see read_quality)
    decisions: list[dict[str, Any]]


def read_report_data(
    warehouse_url: str,
    ds: date,
    run_id: str,
    objectives: Sequence[str],
    decisions: Sequence[Mapping[str, Any]] | None,
    history_days: int,
) -> ReportData:
    """Read the warehouse once; ``decisions`` default to the registry rows of the models trained on ``ds``."""
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
        ds=ds, run_id=run_id, objectives=list(objectives), history_start=start, model_runs=model_runs,
        registry=registry, scored_by=scored_by, scores=scores, quality=quality, quality_run_id=quality_run_id,
        decisions=chosen,
    )


# --- the warehouse ------------------------------------------------------------------------------


def _has_table(conn: sa.Connection, table: str) -> bool:
    return sa.inspect(conn).has_table(table)


def _date_range_params(conn: sa.Connection, start: date, end: date) -> dict[str, object]:
    return {"start": bind_date(conn, start), "end": bind_date(conn, end)}


def read_model_runs(conn: sa.Connection, start: date, end: date) -> pl.DataFrame:
    if not _has_table(conn, "model_runs"):
        return pl.DataFrame(schema=MODEL_RUNS_SCHEMA)
    return read_frame(
        conn,
        "SELECT ds, model_name, model_version, task, metric, value, n_rows FROM model_runs "
        "WHERE ds >= :start AND ds <= :end AND scenario = :all ORDER BY ds, model_name, task, metric",
        {**_date_range_params(conn, start, end), "all": ALL_SCENARIOS},
        table="model_runs",
    )


def read_registry(conn: sa.Connection) -> pl.DataFrame:
    if not _has_table(conn, "model_registry"):
        return pl.DataFrame(schema=REGISTRY_SCHEMA)
    frame = read_frame(
        conn,
        "SELECT model_name, model_version, objective, trained_ds, status, created_at, reasons_json, compared_with, "
        "compared_metrics_json, metrics_json FROM model_registry WHERE model_name IN (:mtl, :lgbm) "
        "ORDER BY model_name, trained_ds, created_at, objective",
        {"mtl": MULTITASK, "lgbm": FRAUD_LGBM},
        table="model_registry",
    )
    return frame if frame.height else pl.DataFrame(schema=REGISTRY_SCHEMA)


def read_scores(conn: sa.Connection, ds: date) -> dict[str, pl.DataFrame]:
    """Day ``ds``'s rows of every score table the warehouse has (tables never published are absent)."""
    return {
        table: read_frame(conn, f"SELECT {SCORE_COLUMNS[table]} FROM {table} WHERE ds = :ds", {"ds": bind_date(conn, ds)}, table=table)
        for table in SCORE_TABLES
        if _has_table(conn, table)
    }


def published_model_versions(version: str) -> dict[str, str]:
    """Model name -> version of one published ``model_version``.

    ``score_order_fraud`` publishes ``"<multitask version>;<lightgbm version>"``; the other tables the
    network's version alone.
    """
    parts = str(version).split(";")
    versions = {MULTITASK: parts[0]}
    if len(parts) > 1:
        versions[FRAUD_LGBM] = parts[1]
    return versions


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
            for name, model_version in published_model_versions(version).items():
                scored.setdefault((name, night), model_version)
    return scored


def read_quality(conn: sa.Connection, ds: date, run_id: str) -> tuple[pl.DataFrame, str | None]:
    """data_quality_results of (ds, run_id); when that run recorded none, the latest run of ds (noted)."""
    if not _has_table(conn, "data_quality_results"):
        return pl.DataFrame(), None
    params = {"ds": bind_date(conn, ds), "run_id": run_id}
    query = (f"SELECT {QUALITY_COLUMNS} FROM data_quality_results WHERE ds = :ds AND run_id = :run_id "
             "ORDER BY table_name, expectation, column_name")
    frame = read_frame(conn, query, params, table="data_quality_results")
    if frame.height:
        return frame, run_id
    latest = read_frame(
        conn, "SELECT run_id FROM data_quality_results WHERE ds = :ds ORDER BY created_at DESC LIMIT 1", params
    )
    if not latest.height:
        return frame, None
    other = str(latest["run_id"][0])
    return read_frame(conn, query, {**params, "run_id": other}, table="data_quality_results"), other


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
    """The gate decisions, one per objective, of the newest model of each name trained on ``ds``."""
    decisions = []
    for name in (MULTITASK, FRAUD_LGBM):
        rows = registry.filter((pl.col("model_name") == name) & (pl.col("trained_ds") == ds)).sort("created_at")
        if rows.height:
            newest = rows.row(-1, named=True)["model_version"]
            for row in rows.filter(pl.col("model_version") == newest).iter_rows(named=True):
                decisions.append({
                    "model_name": name,
                    "model_version": row["model_version"],
                    "objective": row["objective"],
                    "status": row["status"],
                    "champion_version": row["model_version"] if row["status"] == "champion" else row["compared_with"],
                    "reasons": _json_list(row["reasons_json"]),
                })
    return decisions


def _json_list(text: str | None) -> list[Any]:
    try:
        value = json.loads(text) if text else []
    except (TypeError, ValueError):
        return [str(text)]
    return value if isinstance(value, list) else [value]


# --- which model directories scored the day -----------------------------------------------------


def published_versions(scores: Mapping[str, pl.DataFrame]) -> dict[str, str]:
    """Model name -> the version whose scores day D published (from the score tables)."""
    versions: dict[str, str] = {}
    for frame in scores.values():
        for version in frame["model_version"].drop_nulls().unique().sort().to_list() if frame.height else []:
            for name, model_version in published_model_versions(version).items():
                versions.setdefault(name, model_version)
    return versions


def find_scoring_dirs(layout: RunLayout, versions: Mapping[str, str]) -> dict[str, Path]:
    """Model name -> its directory in the run whose metrics.json names the version that scored.

    A model that scored is the night's own (``models/<version>``; ``models/<name>`` links to the
    latest, on the worker that trained it) or, where the gate kept a champion, that champion scoring
    the day (``models/<name>_champion/<version>``).
    """
    found: dict[str, Path] = {}
    for name, version in versions.items():
        for model_dir in (layout.models_dir / version, layout.model_dir(name), layout.champion_dir(name) / version):
            try:
                payload = json.loads((model_dir / METRICS_FILE).read_text())
            except (OSError, ValueError):
                continue
            if payload.get("model_name") == name and payload.get("model_version") == version:
                found[name] = model_dir
                break
    return found


def is_per_objective(value: Any) -> bool:
    """Whether a model's ``scoring`` entry is the gate's per-objective form (objective -> summary)."""
    return isinstance(value, Mapping) and bool(value) and all(isinstance(summary, Mapping) for summary in value.values())


def serving_dirs(scoring: Mapping[str, Any] | None) -> dict[str, dict[str, Path]]:
    """Objective -> model name -> the output directory of the model serving that objective, from the
    gates' per-objective ``scoring`` (objective -> summary); empty for the other forms of ``scoring``."""
    served: dict[str, dict[str, Path]] = {}
    for name, value in (scoring or {}).items():
        if is_per_objective(value):
            for objective, summary in value.items():
                if summary.get("output_dir"):
                    served.setdefault(objective, {})[name] = Path(str(summary["output_dir"]))
    return served


def resolve_scoring(
    layout: RunLayout, scoring: Mapping[str, Any] | None, scores: Mapping[str, pl.DataFrame]
) -> tuple[dict[str, str], dict[str, Path]]:
    """(model name -> version that scored, model name -> its output dir with predictions/).

    ``scoring`` maps a model name to the gate's ``scoring`` summary ({model_version, output_dir}), to
    its per-objective summaries (objective -> summary: the one serving the most objectives, ties in
    objective order, stands for the model) or directly to an output directory; without it the score
    tables name the versions and the run directory's model directories (``find_scoring_dirs``)
    locate them.
    """
    versions = published_versions(scores)
    dirs: dict[str, Path] = {}
    for name, value in (scoring or {}).items():
        if not value:
            continue
        if is_per_objective(value):
            served = [str(summary.get("model_version")) for summary in value.values()]
            most = max(served, key=served.count)
            value = next(summary for summary in value.values() if str(summary.get("model_version")) == most)
        if isinstance(value, Mapping):
            if value.get("model_version"):
                versions[name] = str(value["model_version"])
            if value.get("output_dir"):
                dirs[name] = Path(str(value["output_dir"]))
        else:
            dirs[name] = Path(str(value))
    missing = {name: version for name, version in versions.items() if name not in dirs}
    dirs.update(find_scoring_dirs(layout, missing))
    return versions, dirs
