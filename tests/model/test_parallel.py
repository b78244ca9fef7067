"""Data-parallel training on CPU cores (training/parallel.py): real forked replicas over gloo."""

from __future__ import annotations

import dataclasses
import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from training.config import MultiTaskConfig
from training.sampler import count_replicas, plan_epoch
from training.parallel import Replica, run_replicas


def test_gradients_are_averaged_over_replicas_and_an_unreached_parameter_keeps_no_gradient(tmp_path: Path) -> None:
    dense_reached, dense_once, dense_never = (torch.nn.Parameter(torch.zeros(2, 3)) for _ in range(3))
    table = torch.nn.Parameter(torch.zeros(10, 2))  # a sparse id table

    def work(replica: Replica) -> None:
        dense_reached.grad = torch.full((2, 3), float(replica.rank + 1))  # 1 and 2: mean 1.5
        dense_once.grad = torch.full((2, 3), 4.0) if replica.rank == 0 else None  # (4 + 0) / 2
        dense_never.grad = None
        rows = torch.tensor([[replica.rank, 9]])  # rows 0 and 9 on replica 0, rows 1 and 9 on replica 1
        table.grad = torch.sparse_coo_tensor(rows, torch.ones(2, 2), (10, 2), check_invariants=True)
        replica.average_gradients([dense_reached, dense_once, dense_never], [table])
        assert dense_never.grad is None
        torch.save(
            {"reached": dense_reached.grad, "once": dense_once.grad, "table": table.grad.to_dense()},
            tmp_path / f"replica{replica.rank}.pt",
        )

    run_replicas(2, work)
    first, second = (torch.load(tmp_path / f"replica{rank}.pt", weights_only=True) for rank in (0, 1))
    for name in first:  # every replica ends with the same gradients, so the same optimizer step
        assert torch.equal(first[name], second[name]), name
    assert torch.equal(first["reached"], torch.full((2, 3), 1.5))
    assert torch.equal(first["once"], torch.full((2, 3), 2.0))
    expected_table = torch.zeros(10, 2)
    expected_table[[0, 1]] = 0.5  # one replica's row, averaged over two
    expected_table[9] = 1.0  # both replicas' row
    assert torch.equal(first["table"], expected_table)


def test_a_failing_replica_fails_the_run_instead_of_hanging_it() -> None:
    def work(replica: Replica) -> None:
        if replica.rank == 1:
            raise ValueError("replica 1 breaks")
        replica.sum(torch.ones(1))  # waits for replica 1, which is gone

    with pytest.raises(RuntimeError, match=r"exit codes \{1: 1\}"):
        run_replicas(2, work)


def test_replicas_are_added_only_while_an_epoch_keeps_its_minimum_steps() -> None:
    config = MultiTaskConfig(batch_size=100, impression_ratio=1.0, min_steps_per_replica=250, min_steps_per_epoch=1)
    assert count_replicas({"impression": 7_000}, config, processes=2) == 1  # 70 steps: the demo stays in one process
    assert count_replicas({"impression": 70_000}, config, processes=2) == 2  # 700 steps: 350 each
    assert count_replicas({"impression": 70_000}, config, processes=16) == 2  # ...and never below 250 steps
    # Each replica takes its own batch: two replicas halve the steps and double the rows a step.
    generator = torch.Generator().manual_seed(0)
    one, two = plan_epoch({"impression": 1_000}, config, generator), plan_epoch({"impression": 1_000}, config, generator, 2)
    assert (len(one), len(two)) == (10, 5)
    assert {step["impression"].numel() for step in two} == {200}


# Trains in a fresh interpreter, as an Airflow task process would: the replicas are forked from a
# process whose only threads are its own. The test process has run Airflow, Polars and LightGBM by
# then, and forking it (threads of theirs included) once crashed a replica in malloc.
TRAIN_TWICE = """
import pickle, sys
from training.train import train_multitask
features_dir, output_dir, config = pickle.loads(open(sys.argv[1], "rb").read())
for name in ("first", "second"):
    train_multitask(features_dir, output_dir / name, config)
"""


def test_two_replicas_train_reproducibly_and_learn(features_dir: Path, tiny_config: MultiTaskConfig, tmp_path: Path) -> None:
    config = dataclasses.replace(tiny_config, processes=2, min_steps_per_replica=1, max_epochs=3, patience=3)
    (tmp_path / "args.pickle").write_bytes(pickle.dumps((features_dir, tmp_path, config)))
    result = subprocess.run(
        [sys.executable, "-c", TRAIN_TWICE, str(tmp_path / "args.pickle")],
        cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    first, second = (json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("first", "second"))
    assert {epoch["replicas"] for epoch in first["history"][1:]} == {2}
    weights = [load_multitask_weights(tmp_path / name) for name in ("first", "second")]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])
    assert first["metrics"] == second["metrics"]
    auc = {row["task"]: row["value"] for row in first["metrics"] if row["metric"] == "auc"}
    assert auc["click"] > 0.65 and auc["fraud"] > 0.75


def load_multitask_weights(model_dir: Path) -> dict[str, torch.Tensor]:
    """The saved networks' tensors (one state_dict per best epoch), flat: "<state>/<tensor>"."""
    states = torch.load(model_dir / "model.pt", weights_only=True)
    return {f"{name}/{key}": value for name, state in states.items() for key, value in state.items()}
