"""Training on torchrun processes with DistributedDataParallel (training/distributed.py, SHOPMTL_TRAIN_PROCS):
real torchrun, real gloo processes on the CPU, the real ``train_multitask``."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import sys
import tempfile
from pathlib import Path

import polars as pl
import pytest
import torch

from etl.contract import MAIN_METRIC
from etl.layout import day_file_path
from training.config import MultiTaskConfig
from training.distributed import KINDS, DistributedReplica, DistributedTrainingError, run_streaming, shard_impressions
from training.impression_rows import ImpressionRows
from training.loop import ID_KEYS, ObjectiveLosses, build_optimizers, take_batch, train_step
from training.sampler import plan_epoch
from training.splits import split_objective_frames
from training.data import read_feature_tables
from training.train import build_objective_weighting, prepare_training, train_multitask

# How far a gated metric (etl.contract.MAIN_METRIC: AUC, or the category's accuracy) of the 2-process
# run may lie from the 1-process run's. Two processes draw other batches and other id dropout, so they
# train other, equally valid, weights: the difference is seed-like noise, not an error. Measured on
# features like these (3k impressions, 41 eval items) over 6 data seeds: the largest 1-vs-2-process
# difference was 0.049 (category accuracy, 2 of the 41 items; AUCs at most 0.033, with no sign
# favoured), while one process alone ranged over at least 0.074 in every gated metric between seeds.
# 0.075 (3 items) admits that noise; a run that learns less fails it (the bug that halved every
# rank's rows cost 0.29 accuracy), and one that learns nothing scores AUC ~0.5 against ~0.7-0.9.
METRIC_TOLERANCE = 0.075

# How far one DDP step's averaged gradient may lie from one process's gradient of the mean of the
# ranks' losses, relative to that gradient's norm (per parameter tensor). Both are float32 sums of the
# same per-rank terms in another order: DDP divides each rank's gradient by the world size in its
# buckets and gloo adds the two ranks', while one process accumulates both ranks' backward passes
# into one .grad (the rank-mean's 1/2 applied inside autograd). That reorders a few float32
# additions: measured at most 9e-8 relative (most tensors bit-equal). 1e-5 leaves 100x for it, while a
# wrong average (a sum, or a mean over only the ranks that had a kind) is off by 50-100%.
GRADIENT_RTOL = 1e-5
GRADIENT_ATOL = 1e-8  # for tensors whose gradient is (nearly) zero, e.g. a bias no row moved
# Rows of each kind a rank takes per step (rank 1 one fewer than rank 0, so the ranks' batches differ in size too).
STEP_ROWS = {"impression": 48, "review": 16, "item": 6, "order": 32}
# The DDP steps the test takes, in order: {name: (kinds rank 0 lacks, kinds rank 1 lacks)}.
DDP_STEPS = {
    "every kind": ((), ()),
    **{f"rank 1 without {kind}": ((), (kind,)) for kind in KINDS},  # that kind's rows only on rank 0
    "no rank with review": (("review",), ("review",)),  # its tower reached by no rank: grad None
}
# MultiTaskNet's modules that only each kind's rows reach (all of them, for review).
TOWERS = {
    "impression": ("impression_tower",),
    "review": ("review_tower", "review_text_linear"),
    "item": ("image_encoder", "category_head"),
    "order": ("fraud_tower",),
}


@pytest.fixture(scope="module")
def day_features(features_dir: Path, copy_features, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: ANN001
    """The tiny features with the impressions as the feature builder writes them: one file per day."""
    target = copy_features(features_dir, tmp_path_factory.mktemp("day-features") / "features")
    impressions = pl.read_parquet(target / "impressions.parquet")
    (target / "impressions.parquet").unlink()
    (target / "impressions.parquet").mkdir()
    for (day,), rows in impressions.partition_by("event_date", as_dict=True).items():
        rows.write_parquet(day_file_path(target / "impressions.parquet", day))
    return target


def load_weights(model_dir: Path) -> dict[str, torch.Tensor]:
    """The saved networks' tensors (one state_dict per best epoch), flat: "<state>/<tensor>"."""
    states = torch.load(model_dir / "model.pt", weights_only=True)
    return {f"{name}/{key}": value for name, state in states.items() for key, value in state.items()}


def gated_metrics(metrics: list[dict]) -> dict[str, float]:
    """{objective: value} of the metric the champion/challenger gate decides on."""
    return {row["task"]: row["value"] for row in metrics if MAIN_METRIC.get(row["task"]) == row["metric"]}


def test_two_processes_reach_the_metrics_of_one_and_write_where_one_does(
    day_features: Path, tiny_config: MultiTaskConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOPMTL_TRAIN_PROCS", "1")
    one = train_multitask(day_features, tmp_path / "one" / "multitask", tiny_config, versioned=True)
    monkeypatch.setenv("SHOPMTL_TRAIN_PROCS", "2")
    two = train_multitask(day_features, tmp_path / "two" / "multitask", tiny_config, versioned=True)

    # The same files where one process writes them: the version directory, linked from output_dir.
    assert two.model_version != one.model_version  # the process count is hashed into the version
    assert two.output_dir == tmp_path / "two" / two.model_version
    assert (tmp_path / "two" / "multitask").resolve() == two.output_dir.resolve()
    assert sorted(p.name for p in two.output_dir.iterdir()) == sorted(p.name for p in one.output_dir.iterdir())
    assert two.n_train == one.n_train  # the ranks' shards add up to the whole window

    # Two ranks really trained, each on its own shard of the day files, through DDP's all-reduce.
    report = json.loads((two.output_dir / "metrics.json").read_text())
    assert report["distributed"]["world_size"] == 2 and report["distributed"]["backend"] == "gloo"
    by_rank = report["distributed"]["rows_by_rank"]
    assert all(rows["impression"] > 0 for rows in by_rank)
    assert sum(rows["impression"] for rows in by_rank) == one.n_train["click"]
    assert {epoch["replicas"] for epoch in report["history"][1:]} == {2}

    first, second = gated_metrics(one.metrics), gated_metrics(two.metrics)
    assert first.keys() == second.keys() == set(MAIN_METRIC)
    far = {task: (first[task], second[task]) for task in first if abs(first[task] - second[task]) > METRIC_TOLERANCE}
    assert not far, f"2-process metrics further than {METRIC_TOLERANCE} from 1-process: {far}"


def test_two_processes_train_reproducibly(
    features_dir: Path, tiny_config: MultiTaskConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One impressions file and two processes: each rank takes every other row of it.
    monkeypatch.setenv("SHOPMTL_TRAIN_PROCS", "2")
    config = dataclasses.replace(tiny_config, max_epochs=2, patience=2)
    first = train_multitask(features_dir, tmp_path / "first", config)
    second = train_multitask(features_dir, tmp_path / "second", config)
    weights = [load_weights(tmp_path / name) for name in ("first", "second")]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])
    assert first.metrics == second.metrics


def test_a_failing_process_is_reported_with_its_error(
    features_dir: Path, copy_features, tiny_config: MultiTaskConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch  # noqa: ANN001
) -> None:
    monkeypatch.setenv("SHOPMTL_TRAIN_PROCS", "2")
    # Only fraud, and no orders: each process fails in its training (the launching process does not
    # look at the rows), as a process failing on a real night would.
    config = dataclasses.replace(tiny_config, objectives=("fraud",))
    features = copy_features(features_dir, tmp_path / "features", empty=("orders.parquet",))
    with pytest.raises(DistributedTrainingError, match="exit code 1") as failure:
        train_multitask(features, tmp_path / "model", config)
    assert "no objective can be trained" in str(failure.value)  # the processes' own error, quoted


def test_the_job_reaches_the_processes_as_json_whole(tiny_config: MultiTaskConfig, tmp_path: Path) -> None:
    from training.distributed import TrainingJob

    config = dataclasses.replace(tiny_config, objectives=("click", "fraud"), grad_clip_norm=math.inf, recent_days=3)
    job = TrainingJob(tmp_path / "features", tmp_path / "model", config, None, "multitask-20260122-abc", tmp_path / "summary.json")
    assert TrainingJob.from_json(job.to_json()) == job  # no pickle: plain JSON, the config rebuilt field by field
    assert MultiTaskConfig.from_json(config.to_json()) == config


def test_ranks_read_disjoint_shards_that_cover_the_training_impressions(day_features: Path, features_dir: Path) -> None:
    for directory, world in ((day_features, 2), (day_features, 8), (features_dir, 2)):
        rows = split_objective_frames(read_feature_tables(directory, impression_splits=("eval",))).train["impression"]
        assert isinstance(rows, ImpressionRows)
        shards = [shard_impressions(rows, rank, world) for rank in range(world)]
        # By day files when there are enough (each rank reads only its own), else every world-th row.
        by_files = directory == day_features and world == 2
        assert all((shard.stride is None) == by_files for shard in shards)
        if by_files:
            assert not set(shards[0].files) & set(shards[1].files)
        ids = [pl.concat(list(shard.batches(["user_id", "item_id"], batch_rows=100))) for shard in shards]
        assert all(frame.height > 0 for frame in ids)
        assert [frame.height for frame in ids] == [shard.lazy().select(pl.len()).collect().item() for shard in shards]
        whole = rows.lazy().select("user_id", "item_id").collect()
        assert pl.concat(ids).sort(["user_id", "item_id"]).equals(whole.sort(["user_id", "item_id"]))


def test_every_rank_takes_the_same_steps_each_with_rows() -> None:
    config = MultiTaskConfig(
        batch_size=100, review_batch_size=50, impression_ratio=1.0, min_steps_per_epoch=1, min_steps_per_replica=1
    )
    totals = {"impression": 1_000, "review": 30}
    shards = [{"impression": 997, "review": 30}, {"impression": 3, "review": 0}]  # a tiny shard, and no reviews
    plans = [plan_epoch(sizes, config, torch.Generator().manual_seed(0), 2, totals) for sizes in shards]
    assert len(plans[0]) == len(plans[1]) == 5  # 1,000 impressions, 2 ranks of 100 a step
    assert all(step for plan in plans for step in plan)  # no rank has an empty step (DDP would wait for it)
    assert all(int(index.max()) < shards[1]["impression"] for step in plans[1] for index in step.values())


def test_ranks_share_a_batch_a_step_while_an_epoch_has_few_steps() -> None:
    # 10 steps an epoch, below min_steps_per_replica: two ranks keep the 10 steps of one process, 50 rows each.
    config = MultiTaskConfig(batch_size=100, impression_ratio=1.0, min_steps_per_epoch=1, min_steps_per_replica=250)
    shard = {"impression": 500}
    plan = plan_epoch(shard, config, torch.Generator().manual_seed(0), 2, {"impression": 1_000})
    assert [step["impression"].numel() for step in plan] == [50] * 10


def test_one_ddp_step_averages_the_gradients_one_process_would(
    features_dir: Path, tiny_config: MultiTaskConfig, tmp_path: Path
) -> None:
    """Two real torchrun ranks (gloo) take real DDP steps (``DistributedReplica.wrap``, the loop's
    ``take_batch`` and ``train_step``, so DDP's all-reduce and ``average_gradients``) on fixed rows of
    their own shards. After each step every rank must hold, for every parameter (the network's dense
    ones, its sparse id tables, the uncertainty weighting's s_i), what one process computes: the
    gradient of the mean of the ranks' losses, (1/2) d(L_0 + L_1) -- the average of the per-rank
    gradients. A rank without a kind's rows adds nothing for it (``Replica.average_gradients``: one
    that only some reached averages with zeros from the others; ``train_step``: a replica without
    rows joins the average), so that kind's tower gets half rank 0's gradient, not all of it; a
    parameter no rank reached keeps ``grad = None``."""
    config = dataclasses.replace(
        tiny_config,
        network=dataclasses.replace(tiny_config.network, augment=False),  # no random crops: the ranks' forwards are repeatable
        id_dropout=0.0,
        grad_clip_norm=math.inf,  # clipping scales by exactly 1: the gradients after train_step are the averaged ones
        loss_weighting="uncertainty",  # its s_i are averaged by average_gradients, not by DDP
    )
    job = tmp_path / "job.json"
    result = tmp_path / "gradients.pt"
    job.write_text(json.dumps({"features_dir": str(features_dir), "config": config.to_json(), "result": str(result)}))
    # The way launch_training starts torchrun (the project's run_streaming), with this module as the script.
    run_streaming([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", __file__, str(job)], 2)
    steps = torch.load(result, weights_only=True)

    assert list(steps) == list(DDP_STEPS)
    for name, step in steps.items():
        lacking = DDP_STEPS[name]
        assert step["rows"] == [
            {kind: STEP_ROWS[kind] - rank for kind in KINDS if kind not in lacking[rank]} for rank in (0, 1)
        ], name
        ddp, expected, other_rank = step["ddp"], step["expected"], step["rank 1"]
        assert ddp.keys() == expected.keys() == other_rank.keys(), name
        # Both ranks hold the same averaged gradients (so their optimizers take the same step).
        differ = [key for key in ddp if not torch.equal(ddp[key], other_rank[key])]
        assert not differ, f"{name}: the ranks hold different gradients of {differ}"
        reached = {key for key, grad in expected.items() if grad.numel()}  # an empty tensor: grad None
        assert {key for key, grad in ddp.items() if grad.numel()} == reached, name
        unreached = {key.split(".")[1] for key in expected.keys() - reached}
        assert unreached == {module for kind in set(lacking[0]) & set(lacking[1]) for module in TOWERS[kind]}, name
        assert any(key.startswith("weighting.") for key in reached)
        assert any(step["sparse"][key] for key in reached)  # the id tables' sparse gradients are in the check
        far = {}
        for key in reached:
            error = float((ddp[key] - expected[key]).norm())
            if error > GRADIENT_RTOL * float(expected[key].norm()) + GRADIENT_ATOL:
                far[key] = (error, float(expected[key].norm()), float(ddp[key].norm()))
        assert not far, f"{name}: DDP gradients off one process's mean of the ranks' gradients (error, |expected|, |ddp|): {far}"
        # The step exercised something: most gradients are non-zero, and the tower of a kind only rank
        # 0 had got a gradient (rank 0's, halved) rather than none.
        assert sum(float(expected[key].norm()) > 0 for key in reached) > len(reached) // 2, name
        for kind in set(lacking[1]) - set(lacking[0]):
            tower = [key for key in reached if key.split(".")[1] in TOWERS[kind]]
            assert tower and any(float(expected[key].norm()) > 0 for key in tower), name


def ddp_step_worker(job_path: str) -> None:
    """One torchrun rank of ``test_one_ddp_step_averages_the_gradients_one_process_would``: the DDP
    steps of ``DDP_STEPS`` on fixed rows; rank 0 also computes each step's expected gradients in this
    process, on an unwrapped copy of the network taken before the step (no collective)."""
    import torch.distributed as dist  # noqa: PLC0415

    from training.data import n_rows, read_feature_tables  # noqa: PLC0415
    from training.device import seeded_torch  # noqa: PLC0415
    from training.multitask import with_image_features  # noqa: PLC0415

    job = json.loads(Path(job_path).read_text())
    features_dir, config, result_path = Path(job["features_dir"]), MultiTaskConfig.from_json(job["config"]), Path(job["result"])
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    cpu = torch.device("cpu")
    try:
        replica = DistributedReplica(rank, world)
        tables = read_feature_tables(features_dir, impression_splits=("eval",))
        with tempfile.TemporaryDirectory() as scratch, seeded_torch(config.seed, cpu, config.num_threads) as generator:
            prepared = prepare_training(tables, config, None, Path(scratch), replica)
            model, trained = prepared.model, prepared.trained
            assert {"click", "purchase", "review", "category", "fraud"} <= set(trained)
            weighting = build_objective_weighting(config, trained)
            optimizers = build_optimizers(model, weighting, config)
            network = replica.wrap(ObjectiveLosses(model), weighting)  # DDP: rank 0's weights on every rank
            items = with_image_features(model, prepared.items)
            sparse_ids = {id(p) for p in (optimizers.sparse.param_groups[0]["params"] if optimizers.sparse else [])}
            named = step_parameters(model, weighting)
            steps = {}
            for number, (name, lacking) in enumerate(DDP_STEPS.items()):
                kinds = [kind for kind in KINDS if kind not in lacking[rank]]
                rows = {}
                for kind in kinds:
                    count = STEP_ROWS[kind] - rank
                    rows[kind] = (torch.arange(count) + number * STEP_ROWS[kind]) % n_rows(prepared.train[kind])
                batches = {
                    kind: take_batch(prepared.train[kind], index, ID_KEYS[kind], 0.0, generator, cpu) for kind, index in rows.items()
                }
                before = (copy.deepcopy(model), copy.deepcopy(weighting)) if rank == 0 else None
                model.train()
                losses = network(batches, items, trained, config, cpu, generator)
                train_step(model, weighting, optimizers, losses, config, replica)  # the loop's step
                grads = {key: dense_grad(p) for key, p in named}
                every: list = [None] * world
                dist.all_gather_object(every, ({kind: index.numel() for kind, index in rows.items()}, batches, grads))
                if rank == 0:
                    steps[name] = {
                        "rows": [r for r, _, _ in every],
                        "ddp": grads,
                        "rank 1": every[1][2],
                        "expected": mean_rank_gradients(*before, [b for _, b, _ in every], items, trained, config),
                        "sparse": {key: id(p) in sparse_ids for key, p in named},
                    }
            if rank == 0:
                torch.save(steps, result_path)
    finally:
        dist.destroy_process_group()


def step_parameters(model: torch.nn.Module, weighting: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    """Every parameter a step updates, named "model.<name>" (the network's) or "weighting.<name>"."""
    return [
        *((f"model.{name}", p) for name, p in model.named_parameters()),
        *((f"weighting.{name}", p) for name, p in weighting.named_parameters()),
    ]


def dense_grad(parameter: torch.nn.Parameter) -> torch.Tensor:
    """``parameter.grad`` as a dense tensor (an empty one for None)."""
    if parameter.grad is None:
        return torch.empty(0)
    return (parameter.grad.to_dense() if parameter.grad.is_sparse else parameter.grad).detach().clone()


def mean_rank_gradients(
    model: torch.nn.Module,
    weighting: torch.nn.Module,
    batches: list[dict],
    items,  # noqa: ANN001 - a training.data.ItemTable
    trained: tuple[str, ...],
    config: MultiTaskConfig,
) -> dict[str, torch.Tensor]:
    """One process's gradient of the mean of the ranks' losses, (1/world) sum_r weighting(L_r(batches[r])):
    the unwrapped network, no collective."""
    model.train()
    network = ObjectiveLosses(model)
    total = sum(weighting.combine(network(b, items, trained, config, torch.device("cpu"), torch.Generator())) for b in batches)
    (total / len(batches)).backward()
    named = step_parameters(model, weighting)
    return {name: dense_grad(p) for name, p in named}


if __name__ == "__main__":  # a torchrun process of the DDP-step test: python -m torch.distributed.run ... THIS JOB
    ddp_step_worker(sys.argv[1])
