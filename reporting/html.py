"""The report page: plain HTML with inline CSS and relative links only (no network resources), so a
run directory can be copied or served as is.

One function per section, top to bottom: header (day, run, the versions that scored, the gate's
decisions), model quality over the history window, score distributions, calibration, data quality.
Every value is escaped; an objective the deployment does not have, or with nothing to show, gets a note.
"""
from __future__ import annotations

import html
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from etl.contract import BINARY_OBJECTIVES, MAIN_METRIC, OBJECTIVE_SOURCES, OBJECTIVES, SCORE_TABLES
from etl.layout import DATA_DOCS_INDEX, RunLayout
from reporting.data import ReportData

MAX_LISTED_FAILURES = 200

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


def page_html(data: ReportData, sections: Sequence[str]) -> str:
    """The whole document around the sections."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>shopmtl nightly report {esc(data.ds.isoformat())}</title><style>{CSS}</style></head>"
        f"<body>{''.join(sections)}</body></html>\n"
    )


# --- building blocks ----------------------------------------------------------------------------


def esc(value: Any) -> str:
    """Text for HTML (element content and quoted attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


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


def _missing_objective_notes(objectives: Sequence[str], notes: Mapping[str, str], universe: Sequence[str] = OBJECTIVES) -> str:
    """A note per objective of ``universe`` whose panel is left out: not in the deployment, or ``notes`` says why."""
    parts = []
    for objective in universe:
        if objective not in objectives:
            needed = ", ".join(sorted(OBJECTIVE_SOURCES[objective]))
            parts.append(_note(f"{objective}: not in this deployment (needs sources {needed}); panel left out"))
        elif objective in notes:
            parts.append(_note(f"{objective}: {notes[objective]}; panel left out"))
    return "".join(parts)


# --- sections -----------------------------------------------------------------------------------


def header_html(data: ReportData, versions: Mapping[str, str], warehouse: str) -> str:
    skipped = [objective for objective in OBJECTIVES if objective not in data.objectives]
    rows = [
        ("day (ds)", data.ds.isoformat()),
        ("run id", data.run_id),
        ("tasks", ", ".join(data.objectives) or "none"),
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
            rows.append((decision.get("model_name"), decision.get("model_version"), decision.get("objective"),
                         decision.get("status"), decision.get("champion_version"), "; ".join(map(str, reasons))))
        parts.append(_table(["model", "night's version", "objective", "decision", "serves the objective after the gate",
                             "reasons (with the paired interval)"], rows))
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
        "(the champion)." + (" The fraud panel shows the LightGBM baseline next to the network." if "fraud" in data.objectives else "")
        + "</p>",
        _img(run_dir, png, "per-task metric history"),
        _missing_objective_notes(data.objectives, notes),
    ]
    rows = []
    for objective in data.objectives:
        for row in tables.get(objective, []):
            scored = row["scored_by"]
            verdict = "scored" if scored == row["version"] else (f"champion {scored} scored" if scored else "–")
            rows.append((row["night"].isoformat(), objective, row["model"], row["version"], MAIN_METRIC[objective],
                         row["value"], row["n_rows"], row["champion_same_rows"], row["champion_version"], verdict))
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


def scores_html(data: ReportData, png: Path | None, run_dir: Path, notes: Mapping[str, str]) -> str:
    return "".join([
        f"<h2>Score distributions of {esc(data.ds.isoformat())}</h2>",
        _img(run_dir, png, "score distributions"),
        _missing_objective_notes(data.objectives, notes),
    ])


def calibration_html(data: ReportData, png: Path | None, run_dir: Path, notes: Mapping[str, str]) -> str:
    return "".join([
        f"<h2>Calibration on the evaluation rows of {esc(data.ds.isoformat())}</h2>",
        "<p>Equal-count bins of the scoring models' day-D evaluation predictions against their labels "
        "(impressions of D for click and purchase, reviews of D, the mature fraud holdout); "
        "the dotted diagonal is perfect calibration.</p>",
        _img(run_dir, png, "calibration curves"),
        _missing_objective_notes(data.objectives, notes, BINARY_OBJECTIVES),
    ])


def quality_html(data: ReportData, run_dir: Path) -> str:
    parts = ["<h2>Data quality (Great Expectations)</h2>"]
    docs_dir = RunLayout(Path(run_dir)).data_docs_dir
    docs_index = docs_dir / DATA_DOCS_INDEX
    if docs_index.is_file():
        href = Path(os.path.relpath(docs_index, run_dir)).as_posix()
        parts.append(f'<p>GX data docs of the run: <a href="{esc(href)}">{esc(href)}</a> (they load their styles '
                     "from the internet; every expectation is also listed below)</p>")
    else:
        parts.append(_note(f"no GX data docs under {docs_dir}"))
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
    parts.append(every_expectation_html(quality))
    return "".join(parts)


def every_expectation_html(quality: pl.DataFrame) -> str:
    """Every rule checked, one folded table per source table: the report alone answers what was
    checked, offline too (GX's data docs load their styles and scripts from CDNs)."""
    parts = ["<h3>Every expectation checked</h3>"]
    ordered = quality.sort(["table_name", "column_name", "expectation"], nulls_last=True)
    for (table,), rows in ordered.group_by("table_name", maintain_order=True):
        failed = int((~rows["success"]).sum())
        summary = f"{table}: {rows.height} expectations, {failed} failed"
        body = _table(
            ["column", "rule", "critical", "result", "unexpected", "of rows"],
            [
                (column or "(table)", rule, "yes" if critical else "no", "ok" if success else "FAILED", unexpected, of_rows)
                for column, rule, critical, success, unexpected, of_rows in rows.select(
                    "column_name", "expectation", "critical", "success", "unexpected_count", "element_count"
                ).rows()
            ],
            numeric=[4, 5],
        )
        parts.append(f"<details><summary>{esc(summary)}</summary>{body}</details>")
    return "".join(parts)
