"""One training process against N torchrun processes (``SHOPMTL_TRAIN_PROCS``) on the same features,
the gated metrics side by side per seed.

    python -m bench.processes --features-dir <run>/features [--procs 2] [--seeds 1 2 3] [--out processes.json]

On one features directory (a night of ``make demo``), ``train_multitask`` trains the network with
the default config and each seed, once in one process and once on ``--procs`` DistributedDataParallel
processes; prints per objective the main metric of both, the largest gap over the seeds, and how far
one process alone moves between seeds (the noise any gap is read against), and the wall times.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

from etl.contract import MAIN_METRIC
from training.config import MultiTaskConfig


def train_both(features_dir: Path, procs: int, seeds: list[int], work_dir: Path) -> list[dict[str, object]]:
    """One row per seed and process count: the main metric per objective and the wall time."""
    from training.train import train_multitask  # torch: imported when a run is asked for

    rows = []
    previous = os.environ.get("SHOPMTL_TRAIN_PROCS")
    try:
        for seed in seeds:
            for count in (1, procs):
                os.environ["SHOPMTL_TRAIN_PROCS"] = str(count)  # the setting train_multitask reads (etl.config)
                started = time.perf_counter()
                config = dataclasses.replace(MultiTaskConfig(), seed=seed)
                summary = train_multitask(features_dir, work_dir / f"seed{seed}-procs{count}", config)
                metrics = {row["task"]: row["value"] for row in summary.metrics if row["metric"] == MAIN_METRIC[row["task"]]}
                rows.append({"seed": seed, "procs": count, "wall_s": round(time.perf_counter() - started, 1), **metrics})
    finally:
        if previous is None:
            os.environ.pop("SHOPMTL_TRAIN_PROCS", None)
        else:
            os.environ["SHOPMTL_TRAIN_PROCS"] = previous
    return rows


def render_table(rows: list[dict[str, object]], procs: int) -> str:
    """Markdown: per objective, ``one / N`` for every seed, the largest gap, one process's seed spread."""
    seeds = sorted({row["seed"] for row in rows})
    by = {(row["seed"], row["procs"]): row for row in rows}
    lines = [
        "| objective (metric) | " + " | ".join(f"seed {seed}: 1 / {procs}" for seed in seeds) + " | largest gap | 1 process, max - min |",
        "|---|" + "---|" * (len(seeds) + 2),
    ]
    for objective, metric in MAIN_METRIC.items():
        pairs = [(by[(seed, 1)].get(objective), by[(seed, procs)].get(objective)) for seed in seeds]
        if any(one is None or many is None for one, many in pairs):
            continue
        gap = max(abs(one - many) for one, many in pairs)
        alone = [one for one, _ in pairs]
        cells = " | ".join(f"{one:.3f} / {many:.3f}" for one, many in pairs)
        lines.append(f"| {objective} ({metric}) | {cells} | {gap:.3f} | {max(alone) - min(alone):.3f} |")
    walls = " | ".join(f"{by[(seed, 1)]['wall_s']} / {by[(seed, procs)]['wall_s']}" for seed in seeds)
    lines.append(f"| wall s | {walls} | | |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features-dir", type=Path, required=True)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--out", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    if args.procs < 2:
        parser.error("--procs must be at least 2 (it is compared with one process)")
    with tempfile.TemporaryDirectory(prefix="shopmtl_processes_") as work_dir:
        rows = train_both(args.features_dir, args.procs, args.seeds, Path(work_dir))
    print(render_table(rows, args.procs))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
