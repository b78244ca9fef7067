"""Data parallelism over one machine's CPU cores: forked replicas that average gradients over gloo.

The network's small matrix products do not split across threads (two torch threads measured 0.97x
the wall time of one), so ``MultiTaskConfig.processes`` replicas each train on one thread: every
step, each replica takes its own batches (``Replica.shard`` of the step's rows, which
``training/sampler.py`` plans ``world`` batches wide), runs forward and backward, and the gradients are
averaged before the (identical) optimizer steps, so the replicas' weights stay equal. Splitting one
batch between replicas instead gained nothing: a step's fixed cost (Python, small kernels) does not
shrink with its rows. This is what ``torch.nn.parallel.DistributedDataParallel`` does; it is not used
because the step must also average the loss weighting's own parameters and the sparse id-table
gradients of objectives that only some replicas saw this step, and GradNorm takes per-objective
gradients with ``torch.autograd.grad``, which DDP's backward hooks do not see. (Processes launched by
torchrun, ``SHOPMTL_TRAIN_PROCS``, each reading their own shard, do use DDP for the network's dense
gradients and average the rest through the hooks of ``Replica``: ``training/distributed.py``.)

The calling process is replica 0 (it keeps the trained network and evaluates); replicas 1.. are
``os.fork()`` children, so they share its encoded tensors copy-on-write instead of reading and
encoding the data again (peak memory stays one copy). Forking is safe here because replicas are CPU
only (no CUDA context is inherited) and each child runs torch on one thread, so it never enters the
OpenMP thread pool its parent may have started (GNU libgomp's pool does not survive a fork).
Gloo connects the replicas over the loopback interface through a ``FileStore`` in a temporary
directory: no port is chosen and nothing outlives the call.

Reproducible: the same data, seed and process count give the same weights (a two-way sum is exact
in either order, and gloo hands every replica the same reduced values). A different process count
splits the batches differently, so it gives different, equally valid, weights.
"""

from __future__ import annotations

import datetime
import logging
import os
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch.distributed import FileStore, ProcessGroupGloo

log = logging.getLogger(__name__)

T = TypeVar("T")

# How long a replica waits for the others at a collective. Replica 0 evaluates day D and refreshes
# the image features while the others wait; at 100x the demo that takes about a minute.
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=30)


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, which containers and taskset narrow)."""
    return len(os.sched_getaffinity(0))


def resolve_processes(processes: int | None, device: torch.device) -> int:
    """Replicas to train with: ``processes``, or one per usable core when None; always 1 off the CPU
    (one accelerator per process; several accelerators are a distributed run's business)."""
    if device.type != "cpu":
        return 1
    count = usable_cores() if processes is None else processes
    if count < 1:
        raise ValueError(f"MultiTaskConfig.processes must be at least 1 or None, got {processes}")
    return count


@dataclass(frozen=True)
class Replica:
    """One of ``world`` data-parallel replicas; ``group`` is None when training alone.

    The forked replicas hold every row and split each step's rows between them (``shard``); a torchrun
    rank (``training.distributed.DistributedReplica``) holds only its own rows and overrides the hooks
    below (``shard_frames``, ``count_totals``, ``wrap``, the collectives)."""

    rank: int = 0
    world: int = 1
    group: ProcessGroupGloo | None = None

    @property
    def leads(self) -> bool:
        """Replica 0: evaluates, decides early stopping and keeps the trained network."""
        return self.rank == 0

    def shard(self, index: torch.Tensor) -> torch.Tensor:
        """This replica's contiguous share of a step's row indices (shares differ by at most one row)."""
        return index if self.world == 1 else index.tensor_split(self.world)[self.rank]

    def shard_frames(self, frames: dict[str, T]) -> dict[str, T]:
        """The training frames this replica encodes: all of them (forked replicas share one copy)."""
        return frames

    def count_totals(self, sizes: dict[str, int]) -> dict[str, int] | None:
        """Every replica's rows per kind when each holds only its own (None: all hold the same rows)."""
        return None

    def wrap(self, module: torch.nn.Module, weighting: torch.nn.Module) -> torch.nn.Module:
        """The module a training step's forward runs through (``module`` itself: gradients are averaged
        by ``average_gradients`` after the backward pass)."""
        return module

    def average_gradients(self, dense: list[torch.nn.Parameter], sparse: list[torch.nn.Parameter]) -> None:
        """Average ``.grad`` over the replicas. A parameter no replica reached keeps ``grad = None``
        (so Adam skips it, as it does when training alone); one that only some reached averages
        with zeros from the others."""
        if self.world == 1:
            return
        # The dense collective is started before the sparse ones and waited on last: gloo runs them on
        # its own threads, so their round trips overlap instead of adding up.
        pending = []
        if dense:
            device = dense[0].device
            present = torch.tensor([p.grad is not None for p in dense], dtype=torch.float32, device=device)  # [n_dense]
            grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in dense]
            # One flat buffer: one collective per step instead of one per parameter tensor.
            flat = torch.cat([present, *(g.reshape(-1) for g in grads)])
            pending.append(self.start_all_reduce(flat))
        sparse_grads = self.sum_sparse([(p.grad if p.grad is not None else _empty_sparse_like(p)).coalesce() for p in sparse])
        for work in pending:
            work.wait()
        if dense:
            reached, values = flat[: len(dense)], flat[len(dense) :].div_(self.world)
            for parameter, grad, count in zip(dense, values.split([g.numel() for g in grads]), reached.tolist(), strict=True):
                parameter.grad = grad.view_as(parameter).clone() if count > 0 else None
        for parameter, grad in zip(sparse, sparse_grads, strict=True):
            grad = grad.coalesce()
            parameter.grad = grad / self.world if grad._nnz() else None

    def start_all_reduce(self, values: torch.Tensor) -> Any:
        """Start summing ``values`` in place over the replicas; returns the work to ``wait()`` on."""
        assert self.group is not None
        return self.group.allreduce([values])

    def sum_sparse(self, grads: list[torch.Tensor]) -> list[torch.Tensor]:
        """Coalesced sparse gradients summed over the replicas (gloo gathers every replica's rows)."""
        assert self.group is not None
        for work in [self.group.allreduce([grad]) for grad in grads]:
            work.wait()
        return grads

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` summed over the replicas (every replica gets the sum)."""
        if self.world > 1:
            values = values.clone()
            self.start_all_reduce(values).wait()
        return values

    def follow_leader(self, decisions: list[bool]) -> list[bool]:
        """Replica 0's ``decisions`` on every replica (which kinds train on: early stopping is decided
        where validation runs); every replica passes a list of the same length."""
        if self.group is None:
            return decisions
        flags = torch.tensor([float(decision) for decision in decisions])
        self.group.broadcast(flags, 0).wait()
        return [bool(flag) for flag in flags.tolist()]


def _empty_sparse_like(parameter: torch.nn.Parameter) -> torch.Tensor:
    """A sparse gradient with no rows, shaped like the embedding table ``parameter``."""
    indices = torch.empty((1, 0), dtype=torch.long, device=parameter.device)
    values = parameter.new_zeros((0, *parameter.shape[1:]))
    return torch.sparse_coo_tensor(indices, values, parameter.shape, check_invariants=True)


def connect(store_path: Path, rank: int, world: int, timeout: datetime.timedelta) -> Replica:
    """Join the gloo group of ``world`` replicas rendezvousing through the file ``store_path``."""
    options = ProcessGroupGloo._Options()
    # Loopback explicitly: the default resolves the host name, which need not resolve in a container.
    options._devices = [ProcessGroupGloo.create_device(hostname="127.0.0.1")]
    options._timeout = timeout
    return Replica(rank, world, ProcessGroupGloo(FileStore(str(store_path), world), rank, world, options))


def run_replicas(processes: int, work: Callable[[Replica], T], timeout: datetime.timedelta = COLLECTIVE_TIMEOUT) -> T:
    """``work(replica)`` on ``processes`` replicas (this process and forked children); returns replica
    0's result. A child that fails makes this raise; a failure here stops the children."""
    if processes == 1:
        return work(Replica())
    with tempfile.TemporaryDirectory(prefix="shopmtl-replicas-") as directory:
        store_path = Path(directory) / "store"
        children = []
        for rank in range(1, processes):
            pid = os.fork()
            if pid == 0:  # a replica: run, then leave without the parent's exit handlers or finally blocks
                os._exit(_run_child(store_path, rank, processes, timeout, work))
            children.append(pid)
        try:
            result = work(connect(store_path, 0, processes, timeout))
        except BaseException as error:
            # A replica that died first is the likely cause (this one then saw its connection close):
            # give it a moment to be reaped and say how it ended, then stop the others, which would
            # wait for this one until the timeout.
            ended = _reap(children, grace_s=2.0)
            for pid in set(children) - set(ended):
                _kill_quietly(pid)
            _reap(children)
            if failure := _describe_failures(children, ended):
                raise RuntimeError(failure) from error
            raise
        ended = _reap(children)
    if failure := _describe_failures(children, ended):
        raise RuntimeError(failure)
    return result


def _describe_failures(children: list[int], ended: dict[int, int]) -> str | None:
    """What went wrong with the replicas that ended with a non-zero code, or None when none did."""
    failures = {rank: ended[pid] for rank, pid in enumerate(children, start=1) if ended.get(pid, 0) != 0}
    if not failures:
        return None
    return f"training replicas failed with exit codes {failures} (negative: killed by that signal; see their logged errors)"


def _reap(children: list[int], grace_s: float | None = None) -> dict[int, int]:
    """{pid: exit code} of the children that ended (negative: killed by that signal): all of them,
    or, with ``grace_s``, those that end within that many seconds."""
    ended: dict[int, int] = {}
    deadline = None if grace_s is None else time.monotonic() + grace_s
    while True:
        for pid in set(children) - set(ended):
            try:
                waited, status = os.waitpid(pid, 0 if deadline is None else os.WNOHANG)
            except ChildProcessError:  # reaped already
                continue
            if waited == pid:
                ended[pid] = os.waitstatus_to_exitcode(status)
        if deadline is None or len(ended) == len(children) or time.monotonic() > deadline:
            return ended
        time.sleep(0.05)


def _run_child(store_path: Path, rank: int, world: int, timeout: datetime.timedelta, work: Callable[[Replica], object]) -> int:
    """A forked replica's whole life: its exit code (0, or 1 after logging the error)."""
    # One thread, first: an OpenMP thread pool the parent started does not exist in a forked child,
    # and a parallel region asking for it hangs (GNU libgomp is not fork-safe); one thread never asks.
    torch.set_num_threads(1)
    try:
        work(connect(store_path, rank, world, timeout))
        return 0
    except BaseException:  # anything: the exit code is the only way back to the parent
        log.exception("training replica %d of %d failed", rank, world)
        return 1


def _kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
