"""Training impressions are read a Parquet batch at a time and encoded into memory maps: the same
tensors, and the same incremental selection, as encoding the whole frame at once."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
import torch

from training.config import MultiTaskConfig, ValidationSplit
from training.data import (
    ImpressionRows,
    encode_impressions,
    encode_objective_data,
    impression_columns,
    read_feature_tables,
    source_schemas,
)
from training.impression_rows import count_rows, encode_batches
from training.incremental import plan_replay
from training.splits import split_objective_frames
from training.train import prepare_training


@pytest.fixture(scope="module")
def prepared(features_dir: Path, tiny_config: MultiTaskConfig):  # noqa: ANN201 - (tables, prepared training)
    tables = read_feature_tables(features_dir, impression_splits=("eval",))
    return tables, prepare_training(tables, tiny_config)


def mapped_file(tensor: torch.Tensor) -> str | None:
    """The file mapped at the tensor's first byte (this process's /proc/self/maps), or None for memory."""
    address = tensor.data_ptr()
    for line in Path("/proc/self/maps").read_text().splitlines():
        span, *rest = line.split(maxsplit=5)
        start, end = (int(bound, 16) for bound in span.split("-"))
        if start <= address < end:
            return rest[4] if len(rest) == 5 else None
    return None


def whole_frame(tables, split: str = "train") -> pl.DataFrame:  # noqa: ANN001
    return pl.read_parquet(tables.features_dir / "impressions.parquet").filter(pl.col("split") == split)


def training_frame(tables) -> pl.DataFrame:  # noqa: ANN001
    """The training split without the validation days (training's rows)."""
    first_validation_day = tables.ds - timedelta(days=ValidationSplit().days)
    return whole_frame(tables).filter(pl.col("event_date") < first_validation_day)


def test_batches_are_the_rows_of_the_split_in_file_order(prepared) -> None:  # noqa: ANN001
    tables, run = prepared
    rows = ImpressionRows(tables.features_dir, ("train",), source_schemas(tables.manifest)["impressions"])
    columns = impression_columns(run.spec)
    batches = list(rows.batches(columns, batch_rows=97))
    assert len(batches) > 3 and all(batch.columns == columns for batch in batches)
    expected = whole_frame(tables).select(columns)
    assert pl.concat(batches).equals(expected)
    assert count_rows(rows) == expected.height == count_rows(rows.lazy())
    absent = ImpressionRows(tables.features_dir / "nowhere", ("train",), rows.schema)
    assert list(absent.batches(columns)) == [] and count_rows(absent) == 0


def test_memory_mapped_encoding_equals_encoding_the_whole_frame(prepared, tmp_path: Path) -> None:  # noqa: ANN001
    tables, run = prepared
    frame = training_frame(tables).select(impression_columns(run.spec))
    expected = encode_impressions(run.model, run.spec, frame, run.items)
    batches = (frame.slice(start, 101) for start in range(0, frame.height, 101))
    encode = lambda part: encode_impressions(run.model, run.spec, part, run.items)  # noqa: E731
    mapped = encode_batches(encode, batches, frame.height, tmp_path, frame.clear())
    assert sorted(path.stem for path in tmp_path.glob("*.npy")) == sorted(expected)  # one file per tensor
    for key, value in expected.items():
        assert torch.equal(mapped[key], value), key
        assert mapped_file(mapped[key]) == str(tmp_path / f"{key}.npy"), key  # the tensor's memory is the file
    # training's own encoding of the window (prepare_training) is the same tensors
    for key, value in expected.items():
        assert torch.equal(run.train["impression"][key], value), key
    # no rows: the tensors of an empty frame, nothing mapped
    empty = encode_batches(encode, iter([]), 0, tmp_path / "none", frame.clear())
    assert all(value.shape[0] == 0 for value in empty.values())


def test_incremental_selection_keeps_the_same_rows_however_the_batches_are_cut(prepared, tmp_path: Path) -> None:  # noqa: ANN001
    tables, run = prepared
    frames = split_objective_frames(tables)
    rows = frames.train["impression"]
    assert isinstance(rows, ImpressionRows)
    whole = plan_replay(training_frame(tables), "impression", recent_days=2, replay_fraction=0.3, seed=11)
    kept = whole(training_frame(tables).select(impression_columns(run.spec)))
    batched = plan_replay(rows, "impression", recent_days=2, replay_fraction=0.3, seed=11)
    encoded = encode_objective_data(
        run.model, run.spec, frames.train, run.items, {"impression"}, {"impression": batched}, tmp_path
    )["impression"]
    assert batched.report() == whole.report() and 0 < kept.height < count_rows(rows)
    assert torch.equal(encoded["dense"], encode_impressions(run.model, run.spec, kept, run.items)["dense"])


def test_an_incremental_night_trains_on_the_selected_rows_only(features_dir: Path, tiny_config: MultiTaskConfig, trained) -> None:  # noqa: ANN001
    _, champion_dir = trained
    tables = read_feature_tables(features_dir, impression_splits=("eval",))
    config = replace(tiny_config, recent_days=1, replay_fraction=0.0)
    run = prepare_training(tables, config, warm_start_dir=champion_dir)
    newest = training_frame(tables).get_column("event_date").max()
    assert run.incremental["impression"]["recent"] == training_frame(tables).filter(pl.col("event_date") == newest).height
    assert run.train["impression"]["dense"].shape[0] == run.incremental["impression"]["recent"]
