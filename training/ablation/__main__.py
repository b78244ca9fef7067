"""``python -m training.ablation``: run the ablation for one day and print its two tables.

Writes ``ablation.json`` (the long metric and comparison rows, for any other summary) to the work dir.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import polars as pl

from etl.config import FeatureConfig
from etl.contract import ALL_SCENARIOS
from etl.io import write_text_atomically
from training.ablation.run import PEERS, run_ablation
from training.ablation.table import format_comparisons, format_metrics
from training.config import MultiTaskConfig


def parse_seeds(text: str) -> list[int]:
    """``7,8,9`` -> [7, 8, 9]."""
    return [int(value) for value in text.split(",") if value.strip()]


def main(argv: Sequence[str] | None = None) -> None:
    """CLI: run the ablation for one day and print the tables."""
    from etl.config import load_settings, parse_sources

    parser = argparse.ArgumentParser(prog="python -m training.ablation", description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse-url", required=True)
    parser.add_argument("--ds", type=date.fromisoformat, required=True, help="day D (YYYY-MM-DD)")
    parser.add_argument("--window-days", type=int, default=28)
    parser.add_argument("--work-dir", type=Path, help="default: $SHOPMTL_HOME/ablation/<D>")
    parser.add_argument(
        "--features-dir", type=Path,
        help="a nightly run's features (<run>/features) instead of extracting and building them from the warehouse",
    )
    parser.add_argument("--seeds", type=parse_seeds, default=[7, 8, 9], help="comma-separated (default 7,8,9)")
    parser.add_argument("--peers", default=",".join(PEERS), help=f"comma-separated subset of {','.join(PEERS)} ('' for none)")
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
    peers = [peer for peer in args.peers.split(",") if peer]
    unknown = set(peers) - set(PEERS)
    if unknown:
        parser.error(f"unknown peers {sorted(unknown)}; known: {list(PEERS)}")
    work_dir = args.work_dir or settings.home / "ablation" / args.ds.isoformat()
    started = time.perf_counter()
    result = run_ablation(
        args.warehouse_url,
        args.ds,
        work_dir,
        args.window_days,
        args.seeds,
        MultiTaskConfig(max_epochs=args.max_epochs),
        sources,
        FeatureConfig(
            maturity_days=args.maturity_days, fraud_eval_days=args.fraud_eval_days, review_eval_days=args.review_eval_days
        ),
        args.features_dir,
        peers,
    )
    write_text_atomically(
        Path(work_dir) / "ablation.json",
        json.dumps({"metrics": result.metrics.to_dicts(), "comparisons": result.comparisons.to_dicts(),
                    "thin_scenario": result.thin_scenario}, indent=1),
    )  # fmt: skip
    seeds = ",".join(str(seed) for seed in args.seeds)
    print(f"\nAblation for {args.ds} (seeds {seeds}; thinnest scenario {result.thin_scenario}; {time.perf_counter() - started:.0f} s)\n")
    print(format_metrics(result.metrics))
    shown = [ALL_SCENARIOS, *([result.thin_scenario] if result.thin_scenario else [])]
    print(f"\nThe network minus each model, paired on the same rows ({' and '.join(shown)} rows; every scenario in ablation.json):\n")
    print(format_comparisons(result.comparisons.filter(pl.col("scenario").is_in(shown))))


if __name__ == "__main__":
    main()
