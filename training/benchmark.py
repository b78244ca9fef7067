"""Training throughput of the multi-task network: samples per second per task kind, on this machine.

    python -m training.benchmark --features-dir DIR [--steps 30] [--device auto] [--num-threads 1]

``--features-dir`` is a run's features directory, e.g. ``.shopmtl/runs/2026-02-04/features`` after
``make demo``. The network and data are prepared exactly as ``train_multitask`` prepares them with
the default ``MultiTaskConfig``. Then, for each batch kind present, ``--steps`` optimizer steps that
train only that kind's objectives at its configured batch size are timed (after 3 untimed warm-up
steps), and finally one joint epoch as the nightly run trains it (every kind in every step). One
line per kind: rows per second and milliseconds per step. The first lines name the device (the CPU
model from /proc/cpuinfo, or the CUDA device name) and the torch thread count; on CUDA the steps
run under bf16 autocast, as in training, and the clock waits for the GPU (synchronize) before
reading the time.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import time
from pathlib import Path

import torch

from training.config import MultiTaskConfig
from training.data import OBJECTIVE_KIND, n_rows, read_feature_tables
from training.device import resolve_device, seeded_torch
from training.loop import ID_KEYS, build_optimizers, objective_losses, take_batch, train_one_epoch, train_step
from training.sampler import kind_settings
from training.multitask import with_image_features
from training.train import build_objective_weighting, prepare_training

WARMUP_STEPS = 3


def describe_device(device: torch.device) -> str:
    """A human name for the device: the GPU's name, or the CPU model and core count."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"cpu: {model} ({torch.get_num_threads()} torch threads, {__import__('os').cpu_count()} logical cores)"


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock times cover it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def benchmark(features_dir: Path, config: MultiTaskConfig, steps: int) -> list[dict[str, object]]:
    """Rows per second and ms per step for each batch kind alone, then for one joint epoch."""
    device = resolve_device(config.device)
    tables = read_feature_tables(features_dir, impression_splits=("eval",))
    results: list[dict[str, object]] = []
    with seeded_torch(config.seed, device, config.num_threads) as generator:
        prepared = prepare_training(tables, config)
        model = prepared.model.to(device)
        items = with_image_features(model, prepared.items)
        settings = kind_settings(config)
        for kind, tensors in prepared.train.items():
            objectives = tuple(name for name in prepared.trained if OBJECTIVE_KIND[name] == kind)
            weighting = build_objective_weighting(config, objectives).to(device)
            optimizers = build_optimizers(model, weighting, config)
            model.train()
            size = min(settings[kind][1], n_rows(tensors))
            elapsed = 0.0
            for step in range(WARMUP_STEPS + steps):
                index = torch.randint(0, n_rows(tensors), (size,), generator=generator)
                synchronize(device)
                started = time.perf_counter()
                batch = take_batch(tensors, index, ID_KEYS[kind], config.id_dropout, generator, device)
                losses = objective_losses(model, {kind: batch}, items, objectives, config, device, generator)
                train_step(model, weighting, optimizers, losses, config)
                synchronize(device)
                if step >= WARMUP_STEPS:
                    elapsed += time.perf_counter() - started
            results.append(
                {"kind": kind, "objectives": ",".join(objectives), "batch": size, "rows_per_s": size * steps / elapsed,
                 "ms_per_step": 1000 * elapsed / steps}
            )  # fmt: skip
        weighting = build_objective_weighting(config, prepared.trained).to(device)
        optimizers = build_optimizers(model, weighting, config)
        synchronize(device)
        started = time.perf_counter()
        stats = train_one_epoch(
            model, weighting, optimizers, prepared.train, items, prepared.trained, config, device, generator
        )
        synchronize(device)
        elapsed = time.perf_counter() - started
        results.append(
            {"kind": "joint epoch", "objectives": ",".join(prepared.trained), "batch": None, "rows_per_s": stats.rows / elapsed,
             "ms_per_step": None, "epoch_s": elapsed, "rows_per_s_by_objective": stats.rates(elapsed)}
        )  # fmt: skip
    return results


def main() -> None:
    """CLI: print training throughput per batch kind."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features-dir", type=Path, required=True, help="a run's features directory")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per batch kind")
    parser.add_argument("--device", default=MultiTaskConfig.device)
    parser.add_argument("--num-threads", type=int, default=MultiTaskConfig.num_threads)
    args = parser.parse_args()
    config = dataclasses.replace(MultiTaskConfig(), device=args.device, num_threads=args.num_threads)
    print(f"features: {args.features_dir}")
    device = resolve_device(config.device)
    with seeded_torch(config.seed, device, config.num_threads):
        print(f"device: {describe_device(device)}; torch {torch.__version__}")
    results = benchmark(args.features_dir, config, args.steps)
    print(f"{'kind':<12} {'objectives':<36} {'batch':>6} {'rows/s':>10} {'ms/step':>8}")
    for row in results:
        batch = "" if row["batch"] is None else str(row["batch"])
        ms = "" if row["ms_per_step"] is None else f"{row['ms_per_step']:.1f}"
        print(f"{row['kind']:<12} {row['objectives']:<36} {batch:>6} {row['rows_per_s']:>10.0f} {ms:>8}")
    joint = results[-1]
    print(f"joint epoch: {joint['epoch_s']:.2f} s")


if __name__ == "__main__":
    main()
