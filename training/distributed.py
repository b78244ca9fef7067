"""Training on several processes launched by torchrun, with DistributedDataParallel (``SHOPMTL_TRAIN_PROCS``).

``train_multitask`` (training/train.py) calls ``launch_training`` when ``etl.config.Settings.train_procs``
is above 1: it runs ``python -m torch.distributed.run --standalone --nproc-per-node N -m
training.distributed JOB`` (torchrun's module form: no PATH lookup), streams the processes' output
into its own, and returns the ``TrainingSummary`` rank 0 wrote; a failing process makes it raise
``DistributedTrainingError`` with torchrun's exit code and the output's last lines.

Each process (``main``) joins the default process group over torchrun's environment (``env://``):
NCCL with one GPU per process (``cuda:LOCAL_RANK``, bf16 autocast as in training/multitask.py) when
CUDA is there, gloo on CPUs. It is a ``DistributedReplica`` of ``training/parallel.py``'s ``Replica``,
so training/loop.py runs the same loop as for the forked CPU replicas, except that:

- every rank encodes only its own shard of the training rows (``shard_frames``): the impressions'
  day files ``files[rank::world]`` (those holding training rows), or every world-th row when there
  are fewer such files than ranks; every world-th row of the small kinds. Vocabularies, scaling and
  output biases still cover the whole window (training/train.py ``prepare_training``);
- every rank takes as many steps an epoch, planned from the summed row counts (``count_totals``),
  each from its own rows, and each step has rows of at least one kind on every rank
  (``sampler.plan_shard_rows``): DDP's all-reduce waits for every rank's backward pass. A step holds
  one batch per rank only while an epoch keeps ``min_steps_per_replica`` steps (``count_replicas``,
  as for the forked replicas); below that the ranks split one batch, so little data gets the
  updates an epoch of one process;
- the forward runs through ``DistributedDataParallel`` (``wrap``), whose backward hooks all-reduce
  the network's dense gradients. ``find_unused_parameters``: a step of a rank may lack a kind (a
  tower unused), and a parameter no rank reached keeps ``grad = None`` (Adam skips it), as alone.
  What DDP does not reduce, ``Replica.average_gradients`` does explicitly: the sparse id tables
  (DDP ignores them: NCCL has no sparse all-reduce, so their rows are all-gathered), the loss
  weighting's own parameters (not in the network), and under GradNorm every gradient (its
  per-objective ``torch.autograd.grad`` never runs DDP's hooks, so GradNorm trains without DDP);
- rank 0 alone validates, decides early stopping (broadcast to the others), predicts and saves.

Reproducible: the same data, seed and process count give the same weights on the CPU (gloo sums two
ranks exactly; every rank gets the same reduced values). The process count is hashed into the model
version: another count splits the rows otherwise and gives other, equally valid, weights.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
import torch.distributed as dist
from torch.distributed.elastic.multiprocessing.errors import record
from torch.nn.parallel import DistributedDataParallel

from etl.io import write_json_atomically
from training.config import MultiTaskConfig
from training.impression_rows import BATCH_ROWS, ImpressionRows
from training.loop import sparse_parameters
from training.loss_weighting import GradNormWeighting
from training.parallel import COLLECTIVE_TIMEOUT, Replica
from training.summary import TrainingSummary

log = logging.getLogger(__name__)

KINDS = ("impression", "review", "item", "order")  # training/data.py KINDS: the order counts are summed in
PROJECT_ROOT = Path(__file__).resolve().parents[1]  # where ``-m training.distributed`` resolves
OUTPUT_TAIL_LINES = 40  # lines of the processes' output a failure quotes


class DistributedTrainingError(RuntimeError):
    """A torchrun training process failed (the message has torchrun's exit code and the output's end)."""


# --- the launching process ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingJob:
    """What every torchrun process trains (a JSON file the launching process writes)."""

    features_dir: Path
    output_dir: Path
    config: MultiTaskConfig
    warm_start_dir: Path | None
    model_version: str
    summary_path: Path  # rank 0 writes the TrainingSummary here, as JSON

    def to_json(self) -> str:
        values = {
            "features_dir": str(self.features_dir),
            "output_dir": str(self.output_dir),
            "config": json.loads(self.config.to_json()),
            "warm_start_dir": None if self.warm_start_dir is None else str(self.warm_start_dir),
            "model_version": self.model_version,
            "summary_path": str(self.summary_path),
        }
        return json.dumps(values)

    @classmethod
    def from_json(cls, text: str) -> TrainingJob:
        values = json.loads(text)
        return cls(
            features_dir=Path(values["features_dir"]),
            output_dir=Path(values["output_dir"]),
            config=MultiTaskConfig.from_json(json.dumps(values["config"])),
            warm_start_dir=None if values["warm_start_dir"] is None else Path(values["warm_start_dir"]),
            model_version=values["model_version"],
            summary_path=Path(values["summary_path"]),
        )


def launch_training(
    procs: int, features_dir: Path, output_dir: Path, config: MultiTaskConfig, warm_start_dir: Path | None, model_version: str
) -> TrainingSummary:
    """Train ``model_version`` on ``procs`` torchrun processes into ``output_dir``; rank 0's summary."""
    with tempfile.TemporaryDirectory(prefix="shopmtl-torchrun-") as directory:
        job = TrainingJob(
            features_dir=Path(features_dir).resolve(),
            output_dir=Path(output_dir).resolve(),
            config=config,
            warm_start_dir=None if warm_start_dir is None else Path(warm_start_dir).resolve(),
            model_version=model_version,
            summary_path=Path(directory) / "summary.json",
        )
        job_path = Path(directory) / "job.json"
        job_path.write_text(job.to_json())
        command = [
            sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={procs}",
            "-m", "training.distributed", str(job_path),
        ]  # fmt: skip
        run_streaming(command, procs)
        if not job.summary_path.exists():
            raise DistributedTrainingError(f"torchrun's {procs} training processes exited without rank 0's summary")
        return TrainingSummary.from_dict(json.loads(job.summary_path.read_text()))


def run_streaming(command: list[str], procs: int) -> None:
    """Run ``command``, copying its output into this process's stderr as it comes (the task log);
    a non-zero exit raises ``DistributedTrainingError`` quoting the output's last lines."""
    tail: collections.deque[str] = collections.deque(maxlen=OUTPUT_TAIL_LINES)
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert process.stdout is not None
        for line in process.stdout:
            sys.stderr.write(line)
            tail.append(line)
        code = process.wait()
    except BaseException:  # interrupted (a killed task): torchrun passes the signal on to its processes
        process.terminate()
        process.wait()
        raise
    if code != 0:
        raise DistributedTrainingError(
            f"torchrun's {procs} training processes failed with exit code {code}; the end of their output:\n"
            + "".join(tail)
        )


# --- a torchrun process -------------------------------------------------------------------------------


@dataclass(frozen=True)
class DistributedReplica(Replica):
    """This torchrun process as a ``training.parallel.Replica`` over the default process group."""

    device: torch.device = torch.device("cpu")
    backend: str = "gloo"
    # The parameters DDP all-reduces in the backward pass (filled by ``wrap``): averaged already.
    synced: set[int] = field(default_factory=set)

    def shard_frames(self, frames: dict[str, Any]) -> dict[str, Any]:
        """This rank's share of each kind's training rows (the module docstring says which)."""
        return {
            kind: shard_impressions(frame, self.rank, self.world) if isinstance(frame, ImpressionRows)
            else frame.gather_every(self.world, offset=self.rank)
            for kind, frame in frames.items()
        }  # fmt: skip

    def shard(self, index: torch.Tensor) -> torch.Tensor:
        """A step's rows, all of them: they are this rank's own already (``shard_frames``)."""
        return index

    def count_totals(self, sizes: dict[str, int]) -> dict[str, int]:
        """Every rank's rows per kind, summed (every rank holds the same kinds)."""
        kinds = [kind for kind in KINDS if kind in sizes]
        totals = self.sum(torch.tensor([float(sizes[kind]) for kind in kinds], dtype=torch.float64))
        return {kind: int(total) for kind, total in zip(kinds, totals.tolist(), strict=True)}

    def wrap(self, module: torch.nn.Module, weighting: torch.nn.Module) -> torch.nn.Module:
        """``module`` under DistributedDataParallel, which starts every rank from rank 0's weights and
        all-reduces the dense gradients in the backward pass; GradNorm's module itself (see above)."""
        if isinstance(weighting, GradNormWeighting):
            for tensor in module.state_dict().values():  # what DDP's constructor would do: rank 0's weights
                dist.broadcast(tensor, 0)
            return module
        sparse = {id(parameter) for parameter in sparse_parameters(module)}
        ignored = [name for name, parameter in module.named_parameters() if id(parameter) in sparse]
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(module, ignored)
        # Buffers (vocabularies, scaling) are equal on every rank and never change: synced once, at
        # construction, not on every forward.
        network = DistributedDataParallel(module, find_unused_parameters=True, forward_sync_buffers=False)
        self.synced.update(id(p) for p in module.parameters() if p.requires_grad and id(p) not in sparse)
        return network

    def average_gradients(self, dense: list[torch.nn.Parameter], sparse: list[torch.nn.Parameter]) -> None:
        """Average what DDP has not: the sparse tables, the weighting's parameters (all under GradNorm)."""
        super().average_gradients([p for p in dense if id(p) not in self.synced], sparse)

    def start_all_reduce(self, values: torch.Tensor) -> Any:
        return dist.all_reduce(values, async_op=True)

    def sum_sparse(self, grads: list[torch.Tensor]) -> list[torch.Tensor]:
        """Coalesced sparse gradients summed over the ranks, by gathering every rank's rows (NCCL has
        no sparse all-reduce; tensors are padded to the longest rank's rows, then cut back)."""
        if not grads:
            return grads
        counts = [torch.zeros(len(grads), dtype=torch.long, device=self.device) for _ in range(self.world)]
        dist.all_gather(counts, torch.tensor([grad._nnz() for grad in grads], device=self.device))
        rows = torch.stack(counts).tolist()  # [world][grads] rows of each rank's gradient
        summed = []
        for g, grad in enumerate(grads):
            longest = max(rank_rows[g] for rank_rows in rows)
            if longest == 0:  # no rank reached the table
                summed.append(grad)
                continue
            pad = longest - grad._nnz()
            indices = torch.nn.functional.pad(grad.indices(), (0, pad))  # [1, longest]
            values = torch.cat([grad.values(), grad.values().new_zeros((pad, *grad.shape[1:]))])  # [longest, d]
            gathered_indices = [torch.empty_like(indices) for _ in range(self.world)]
            gathered_values = [torch.empty_like(values) for _ in range(self.world)]
            dist.all_gather(gathered_indices, indices)
            dist.all_gather(gathered_values, values)
            cut = [rank_rows[g] for rank_rows in rows]
            summed.append(
                torch.sparse_coo_tensor(
                    torch.cat([i[:, :n] for i, n in zip(gathered_indices, cut, strict=True)], dim=1),
                    torch.cat([v[:n] for v, n in zip(gathered_values, cut, strict=True)]),
                    grad.shape,
                    check_invariants=True,
                ).coalesce()
            )
        return summed

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` summed over the ranks, on the device ``values`` came from (NCCL sums GPU tensors)."""
        summed = values.to(self.device, copy=True)
        dist.all_reduce(summed)
        return summed.to(values.device)

    def follow_leader(self, decisions: list[bool]) -> list[bool]:
        """Rank 0's ``decisions`` on every rank."""
        flags = torch.tensor([float(decision) for decision in decisions], device=self.device)
        dist.broadcast(flags, 0)
        return [bool(flag) for flag in flags.tolist()]

    def describe(self, sizes: dict[str, int]) -> dict[str, Any]:
        """For metrics.json: the world size, the backend and every rank's training rows per kind."""
        rows: list[Any] = [None] * self.world
        dist.all_gather_object(rows, sizes)
        return {"world_size": self.world, "backend": self.backend, "rows_by_rank": rows}


@dataclass(frozen=True)
class ShardRows(ImpressionRows):
    """One rank's share of ``ImpressionRows``: its day files, or (``stride``) every world-th row."""

    shard_files: tuple[Path, ...] = ()
    stride: tuple[int, int] | None = None  # (rank, world): rows rank, rank + world, ... of all the files

    @property
    def files(self) -> list[Path]:
        return list(self.shard_files)

    def lazy(self) -> pl.LazyFrame:
        frame = super().lazy()
        if self.stride is None:
            return frame
        rank, world = self.stride
        return frame.with_row_index("_row").filter(pl.col("_row") % world == rank).drop("_row")

    def batches(self, columns: list[str], batch_rows: int = BATCH_ROWS) -> Any:
        if self.stride is None:
            yield from super().batches(columns, batch_rows)
            return
        rank, world = self.stride
        seen = 0  # rows before this batch (the kept rows of every file, in order, as ``lazy`` numbers them)
        for frame in super().batches(columns, batch_rows):
            keep = (np.arange(seen, seen + frame.height) % world) == rank
            seen += frame.height
            yield frame.filter(pl.Series(keep))


def shard_impressions(rows: ImpressionRows, rank: int, world: int) -> ShardRows:
    """This rank's training impressions: ``files[rank::world]`` of the day files holding training rows
    (a day is never split, so each rank reads only its own files), or every world-th row of all of
    them when there are fewer such files than ranks (each rank still gets rows)."""
    fields = {item.name: getattr(rows, item.name) for item in dataclasses.fields(ImpressionRows)}
    files = [path for path in rows.files if pl.scan_parquet(path).filter(rows.keeps()).select(pl.len()).collect().item()]
    if len(files) >= world:
        return ShardRows(**fields, shard_files=tuple(files[rank::world]))
    return ShardRows(**fields, shard_files=tuple(files), stride=(rank, world))


@record  # a failure's traceback goes to torchrun's error file, which its failure summary quotes
def main() -> None:
    """A torchrun process: ``python -m training.distributed JOB`` (a ``TrainingJob`` as JSON)."""
    from training.data import read_feature_tables  # noqa: PLC0415 - below: training.train imports this module
    from training.device import resolve_device  # noqa: PLC0415
    from training.train import train_and_save  # noqa: PLC0415

    started = time.perf_counter()
    job = TrainingJob.from_json(Path(sys.argv[1]).read_text())
    device = resolve_device(job.config.device)
    if device.type == "cuda":  # one GPU per process: torchrun numbers them on the node (its LOCAL_RANK)
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT)  # env://: torchrun's RANK, WORLD_SIZE, MASTER_ADDR
    rank, world = dist.get_rank(), dist.get_world_size()
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s rank {rank}/{world} %(levelname)s %(name)s: %(message)s")
    try:
        log.info("training %s on %s (%s)", job.model_version, device, backend)
        replica = DistributedReplica(rank, world, device=device, backend=backend)
        tables = read_feature_tables(job.features_dir, impression_splits=("eval",))
        summary = train_and_save(
            tables, job.output_dir, job.config, job.warm_start_dir, job.model_version, device, started, replica
        )
        if summary is not None:
            write_json_atomically(job.summary_path, summary.to_dict())
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    # Run as ``-m training.distributed``, this file is ``__main__``; training.train checks its replica
    # against ``training.distributed.DistributedReplica``, so run the module under that name.
    from training.distributed import main as run_process

    run_process()
