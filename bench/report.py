"""The benchmark's results: growth exponents, the machine, Markdown tables and ``results.json``."""
from __future__ import annotations

import json
import math
import os
import platform
from datetime import UTC, datetime
from pathlib import Path

from bench.run import RUN, STAGES

MIB = 1024 * 1024


def compute_exponents(scales: list[dict]) -> dict[str, list[dict]]:
    """Per stage, log(time ratio) / log(rows ratio) between consecutive scales (each stage's own rows)."""
    ordered = sorted(scales, key=lambda result: result["scale"])
    exponents: dict[str, list[dict]] = {}
    for stage in (*STAGES, RUN):
        pairs = []
        for low, high in zip(ordered, ordered[1:]):
            a, b = low["stages"][stage], high["stages"][stage]
            exponent = None
            if a["seconds_sum"] and b["seconds_sum"] and a["rows"] and b["rows"] and a["rows"] != b["rows"]:
                exponent = math.log(b["seconds_sum"] / a["seconds_sum"]) / math.log(b["rows"] / a["rows"])
            pairs.append({"from_scale": low["scale"], "to_scale": high["scale"], "exponent": exponent})
        exponents[stage] = pairs
    return exponents


def describe_machine(server_version: str | None) -> dict[str, object]:
    """CPU, memory, OS and the versions that shape the figures."""
    import pandas
    import polars
    import psutil
    import psycopg
    import torch
    from airflow import __version__ as airflow_version

    from training.benchmark import describe_device
    from training.device import resolve_device

    return {
        "device": describe_device(resolve_device("auto")),
        "cpu_count": os.cpu_count(),
        "memory_bytes": psutil.virtual_memory().total,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "polars": polars.__version__,
        "pandas": pandas.__version__,
        "psycopg": psycopg.__version__,
        "airflow": airflow_version,
        "postgresql": server_version,
    }


def format_number(value: float | None, digits: int = 2) -> str:
    """Thousands separated from 1000 up, ``digits`` decimals below; n/a for None."""
    if value is None:
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def format_mib(value: int | None) -> str:
    """Bytes as whole MiB."""
    return "n/a" if value is None else f"{value / MIB:,.0f}"


def describe_nights(result: dict) -> str:
    """Which night the table measures: a first night extracts the whole window, later ones one day."""
    earlier = result.get("earlier_nights", [])
    if not earlier:
        return "a first night (every day of the window extracted)"
    walls = ", ".join(f"{night['ds']} {night['wall_s']:.0f} s" for night in earlier)
    return f"night {len(earlier) + 1} in a row, after {walls} (one day of events extracted)"


def render_stage_table(result: dict) -> list[str]:
    """One scale: seconds, rows, rows/s and peak RSS per stage."""
    lines = [
        f"### Scale {result['scale']:g}: {result['clicks_window_rows']:,} clicks rows in the window",
        "",
        f"Seeded in {result['seed_s']:.1f} s; {describe_nights(result)}; `airflow dags test` of the measured night "
        f"{result['dag_wall_s']:.1f} s wall, peak PSS of its process tree {format_mib(result['dag_peak_rss_bytes'])} MiB, "
        f"of it anonymous {format_mib(result.get('dag_peak_anon_bytes'))} MiB ({result['rss_samples']} samples).",
        "",
        "| stage | seconds | seconds (sum of instances) | rows | rows are | rows/s | peak PSS MiB | peak anon MiB |",
        "|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for stage in (*STAGES, RUN):
        row = result["stages"][stage]
        name = f"{stage} ({row['instances']} mapped)" if stage == "extract" else ("whole run" if stage == RUN else stage)
        lines.append(
            f"| {name} | {format_number(row['seconds'])} | {format_number(row['seconds_sum'])} | {row['rows']:,} | "
            f"{row['rows_what']} | {format_number(row['rows_per_s'])} | {format_mib(row['peak_rss_bytes'])} | "
            f"{format_mib(row.get('peak_anon_bytes'))} |"
        )
    return lines


def render_exponent_table(exponents: dict[str, list[dict]], scales: list[dict]) -> list[str]:
    """Growth exponents: 1 = linear in the stage's rows, 0 = constant (fixed overhead)."""
    first = next(iter(exponents.values()))
    if not first:
        return ["(Growth exponents need two scales or more, e.g. `make bench BENCH_SCALES=\"1 10\"`.)"]
    rows_what = {stage: scales[0]["stages"][stage]["rows_what"] for stage in exponents}
    header = " | ".join(f"{pair['from_scale']:g} → {pair['to_scale']:g}" for pair in first)
    lines = [
        "### Growth exponents: log(time ratio) / log(rows ratio), time = sum over instances",
        "",
        f"| stage | rows used | {header} |",
        "|---|---|" + "---:|" * len(first),
    ]
    for stage, pairs in exponents.items():
        values = " | ".join(format_number(pair["exponent"]) for pair in pairs)
        lines.append(f"| {'whole run' if stage == RUN else stage} | {rows_what[stage]} | {values} |")
    return lines


def render_peer_tables(scales: list[dict]) -> list[str]:
    """The side-by-side ratios, and training samples/s per batch kind."""
    with_peers = [result for result in scales if result.get("peers")]
    if not with_peers:
        return []
    repeats = len(next(iter(with_peers[0]["peers"].values()))["shopmtl_all_s"])
    lines = [
        f"### Side by side (median of {repeats} alternating repeats; ratio = shopmtl time / peer time)",
        "",
        "| scale | comparison | rows | shopmtl | s | peer | s | ratio |",
        "|---:|---|---:|---|---:|---|---:|---:|",
    ]
    for result in with_peers:
        for peer in result["peers"].values():
            lines.append(
                f"| {result['scale']:g} | {peer['name']} | {peer['rows']:,} | {peer['shopmtl']} | {peer['shopmtl_s']:.3f} | "
                f"{peer['peer']} | {peer['peer_s']:.3f} | **{peer['ratio']:.2f}** |"
            )
    lines += ["", "### Training samples/s per objective (training.benchmark, default MultiTaskConfig)", "",
              "| scale | objective | batch kind | its kind trained alone | joint epoch (its rows / whole epoch s) |", "|---:|---|---|---:|---:|"]  # fmt: skip
    for result in with_peers:
        training = result["peers"]["training"]
        for objective, row in training["samples_per_s"].items():
            lines.append(f"| {result['scale']:g} | {objective} | {row['kind']} | {row['alone']:,.0f} | {row['joint_epoch']:,.0f} |")
        lines.append(f"| {result['scale']:g} | all (rows of every kind once) | joint epoch | | {training['joint_samples_per_s']:,.0f} |")
    return lines


def render_incremental_table(scales: list[dict]) -> list[str]:
    """The incremental night next to full-window retraining: seconds, rows and each objective's day-D metric."""
    measured = [result for result in scales if result.get("incremental")]
    if not measured:
        return []
    lines = [
        "### Incremental night vs full-window retraining (same features, seed and day-D rows)",
        "",
        "| scale | training | s | training rows | best epochs | " + " | ".join(
            f"{objective} {row['metric']} (n)" for objective, row in measured[0]["incremental"]["quality"].items()
        ) + " |",
        "|---:|---|---:|---:|---:|" + "---:|" * len(measured[0]["incremental"]["quality"]),
    ]
    for result in measured:
        night = result["incremental"]
        for side, label in (("peer", night["peer"]), ("shopmtl", night["shopmtl"])):
            values = " | ".join(
                f"{format_number(row[side], 4)} ({row['n_rows']:,})" for row in night["quality"].values()
            )
            lines.append(
                f"| {result['scale']:g} | {label} | {night[side + '_s']:.1f} | {night[side + '_rows']:,} | "
                f"{night['epochs'][side]} | {values} |"
            )
        lines.append(f"| {result['scale']:g} | ratio (incremental / full) | **{night['ratio']:.2f}** | | |" + " |" * len(night["quality"]))
    return lines


def render_markdown(results: dict) -> str:
    """Every table of ``results.json`` as Markdown."""
    machine = results["machine"]
    lines = [
        f"## `make bench` — {results['date']}",
        "",
        f"{machine['device']}; {machine['memory_bytes'] / 1024**3:.0f} GiB; torch {machine['torch']}, polars {machine['polars']}, "
        f"pandas {machine['pandas']}, Airflow {machine['airflow']}, {(machine['postgresql'] or 'PostgreSQL ?').split(' on ')[0]}. "
        f"Days {results['start']}..{results['end']}, DAG run for {results['end']}, seed {results['seed']}. "
        "Peak PSS: the proportional set sizes summed over the `airflow dags test` process tree (a page shared by "
        "forked training replicas counts once), sampled every 0.2 s; anon: its anonymous part, the memory the "
        "processes own (the rest is mapped files, such as the training impressions' memory maps: page cache the "
        "kernel can drop). `dags test` runs every task in that one process, so a stage's peak includes what earlier "
        "stages left resident.",
        "",
    ]
    for result in results["scales"]:
        lines += render_stage_table(result) + [""]
    lines += render_exponent_table(results["exponents"], results["scales"]) + [""]
    lines += render_peer_tables(results["scales"]) + [""]
    lines += render_incremental_table(results["scales"])
    return "\n".join(lines).rstrip() + "\n"


def write_results(results: dict, out_dir: Path) -> tuple[Path, Path]:
    """``results.json`` (everything) and ``results.md`` (the tables) in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "results.json", out_dir / "results.md"
    json_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    md_path.write_text(render_markdown(results))
    return json_path, md_path


def stamp_results(args: dict, scales: list[dict], server_version: str | None) -> dict:
    """The results document: when, where, with which arguments, and the figures."""
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": describe_machine(server_version),
        **args,
        "scales": scales,
        "exponents": compute_exponents(scales),
    }
