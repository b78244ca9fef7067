"""How often the champion/challenger gate rejects a model that differs from the champion only by its seed.

    python -m bench.gate_noise --features-dir <run>/features [--nights 20] [--out gate_noise.json]

On one features directory (a night of ``make demo``), the network and the LightGBM baseline are
trained with seeds 1, 2, ..., nights + 1. Night k gates seed k + 1 against the champions so far, in a
registry of its own (a temporary SQLite database; the nights are dated one day apart, as a nightly
schedule would), through the DAG's own ``select_scoring_model``. Every challenger is as good as every
champion by construction, so every rejection on evidence is a false one. The output counts, per
objective, the nights promoted, rejected on evidence (the interval below the tolerance) and kept for
lack of evidence (too few positives: the champion stays by the documented rule).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

from training.config import FraudLgbmConfig, GateConfig, MultiTaskConfig


def classify(status: str, reasons: list[str]) -> str:
    """promoted, rejected (on evidence), not enough evidence, or another reason (backfill, coupling)."""
    text = " ".join(reasons)
    if status == "champion":
        return "promoted"
    if "beyond the tolerance" in text:
        return "rejected on evidence"
    if "not enough evidence" in text:
        return "kept: not enough evidence"
    return "kept: " + text[:60]


def run_nights(features_dir: Path, nights: int, work_dir: Path, config: GateConfig = GateConfig()) -> dict[str, object]:
    """Train ``nights + 1`` seeds of both models and gate each against the champions so far."""
    from training.fraud_lgbm import train_fraud_lgbm
    from training.gate import select_scoring_model
    from training.registry import commit_registrations
    from training.train import train_multitask

    url = f"sqlite:///{work_dir / 'registry.db'}"
    first_day = date(2030, 1, 1)  # dates of the registry only; the rows are the features directory's
    counts: dict[str, Counter[str]] = {}
    log: list[dict[str, object]] = []
    for night in range(nights + 1):
        seed = night + 1
        ds = first_day + timedelta(days=night)
        trained = [
            train_multitask(features_dir, work_dir / f"multitask-{seed}", dataclasses.replace(MultiTaskConfig(), seed=seed)),
            train_fraud_lgbm(features_dir, work_dir / f"lgbm-{seed}", dataclasses.replace(FraudLgbmConfig(), seed=seed)),
        ]
        for summary in trained:  # the seed is in the config hashed into the version: one version per night
            result = select_scoring_model(url, ds, summary, features_dir, work_dir / f"champions-{night}", config)
            commit_registrations(url, [result.decision])  # as the night's publish would record it
            for objective, status in result.decision.objectives.items():
                outcome = classify(status.status, status.reasons)
                if night:  # night 0 only seeds the champions
                    counts.setdefault(f"{summary.model_name}.{objective}", Counter())[outcome] += 1
                log.append({"night": night, "model": summary.model_name, "objective": objective, "outcome": outcome,
                            "reasons": status.reasons})  # fmt: skip
    return {
        "nights": nights,
        "config": dataclasses.asdict(config),
        "counts": {key: dict(counter) for key, counter in sorted(counts.items())},
        "nights_with_a_rejection_on_evidence": len(
            {entry["night"] for entry in log if entry["outcome"] == "rejected on evidence"}
        ),
        "log": log,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features-dir", type=Path, required=True, help="a run's features directory")
    parser.add_argument("--nights", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("gate_noise.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="shopmtl_gate_noise_") as work:
        result = run_nights(args.features_dir, args.nights, Path(work))
    args.out.write_text(json.dumps(result, indent=2, default=str))
    print(f"{args.nights} nights, challengers differing from the champions only by seed:")
    for key, counter in result["counts"].items():
        print(f"  {key:<22} " + ", ".join(f"{outcome} {n}" for outcome, n in sorted(counter.items())))
    print(f"nights with any rejection on evidence: {result['nights_with_a_rejection_on_evidence']}")


if __name__ == "__main__":
    main()
