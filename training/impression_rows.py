"""The window's training impressions: read a Parquet batch at a time, encoded into memory-mapped files.

Impressions are the one training input that grows with the whole window (14M rows at 100x the
demo). Reading them into one Polars frame and encoding that into tensors held both copies in
process memory at once (6.6 GB peak at 100x the demo). Here neither exists whole:

- ``ImpressionRows.batches`` reads ``impressions.parquet`` (a folder of one file per day, or one file)
  with pyarrow's batch reader (only the columns training needs, one batch in memory at a time, in
  file order, so the rows and any seeded selection of them are the same however the files are cut);
- ``encode_batches`` encodes each batch and writes it into one ``.npy`` file per tensor in a scratch
  directory, opened as memory maps (``numpy.lib.format.open_memmap``); the tensors training indexes
  are views of those maps (``torch.from_numpy``).

Mapped pages are page cache, not process memory: the kernel keeps what the sampler touches and can
drop the rest under memory pressure, reading it back from the file, and forked training replicas
(``training.parallel``) share the same pages. A ``None`` directory keeps the tensors in memory (the
rows of a small run, or a caller without scratch space).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from etl.layout import feature_path, parquet_files

Tensors = dict[str, torch.Tensor]
BATCH_ROWS = 1 << 18  # Parquet rows read and encoded at a time: bounds every transient copy


@dataclass(frozen=True)
class ImpressionRows:
    """The impressions of some splits of a features directory, never read whole: ``lazy()`` for what
    is computed over all of them (counts, vocabularies), ``batches()`` to encode them."""

    features_dir: Path
    splits: tuple[str, ...]
    schema: dict[str, pl.DataType]  # the training schema, for a deployment without impressions
    first_day: date | None = None  # only rows whose event_date is on or after this day
    last_day: date | None = None  # ...and on or before this one

    def keeps(self) -> pl.Expr:
        """The rows' predicate: their split and, when bounded, their event_date."""
        predicate = pl.col("split").is_in(list(self.splits))
        if self.first_day is not None:
            predicate &= pl.col("event_date") >= self.first_day
        if self.last_day is not None:
            predicate &= pl.col("event_date") <= self.last_day
        return predicate

    @property
    def files(self) -> list[Path]:
        """The impressions' Parquet files, days in order."""
        return parquet_files(feature_path(self.features_dir, "impressions"))

    def lazy(self) -> pl.LazyFrame:
        """The rows as a lazy scan (an empty frame of ``schema`` when there is no impressions file)."""
        files = self.files
        if not files:
            return pl.LazyFrame(schema=self.schema)
        return pl.scan_parquet(files).filter(self.keeps())

    def batches(self, columns: list[str], batch_rows: int = BATCH_ROWS) -> Iterator[pl.DataFrame]:
        """The ``columns`` of the rows, a Parquet batch at a time (pyarrow's batch reader), in file order."""
        for path in self.files:
            for frame in read_batches(path, list(dict.fromkeys([*columns, "split", "event_date"])), batch_rows):
                yield frame.filter(self.keeps()).select(columns)

    def empty(self, columns: list[str]) -> pl.DataFrame:
        """No rows, the ``columns`` of the schema."""
        return pl.DataFrame(schema={name: self.schema[name] for name in columns})


def read_batches(path: Path, columns: list[str], batch_rows: int = BATCH_ROWS) -> Iterator[pl.DataFrame]:
    """``columns`` of a Parquet file a batch at a time (pyarrow's batch reader), in file order."""
    for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=columns):
        frame = pl.from_arrow(batch)
        assert isinstance(frame, pl.DataFrame)
        yield frame
    # pyarrow's allocator (mimalloc) keeps the freed batches' memory for reuse: 0.9 GB after the 14M
    # impressions of 100x the demo, held through training. Hand it back to the system.
    pa.default_memory_pool().release_unused()


def count_rows(frame: pl.DataFrame | pl.LazyFrame | ImpressionRows) -> int:
    """Rows of a frame, counted without collecting a lazy one."""
    if isinstance(frame, pl.DataFrame):
        return frame.height
    return int(frame.lazy().select(pl.len()).collect().item())


def encode_batches(
    encode: Callable[[pl.DataFrame], Tensors],
    batches: Iterable[pl.DataFrame],
    capacity: int,
    directory: Path | None,
    empty: pl.DataFrame,
) -> Tensors:
    """``encode`` every batch into preallocated tensors of ``capacity`` rows (memory maps under
    ``directory``, or memory when it is None); returns views of the rows filled. ``empty`` (a frame of
    the batches' schema) gives the tensors' shapes when no batch has a row."""
    arrays: dict[str, np.ndarray] = {}
    filled = 0
    for batch in batches:
        if batch.height == 0:
            continue
        encoded = encode(batch)
        if not arrays:
            arrays = {
                key: allocate(directory, key, (capacity, *value.shape[1:]), value.numpy().dtype)
                for key, value in encoded.items()
            }
        end = filled + batch.height
        if end > capacity:
            raise ValueError(f"more rows to encode than the {capacity} counted: the impressions file changed while read")
        for key, value in encoded.items():
            arrays[key][filled:end] = value.numpy()
        filled = end
    if not arrays:
        return encode(empty)
    return {key: torch.from_numpy(array[:filled]) for key, array in arrays.items()}


def allocate(directory: Path | None, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A zeroed array: a new ``.npy`` memory map in ``directory`` (sparse until written), or memory."""
    if directory is None:
        return np.zeros(shape, dtype=dtype)
    return np.lib.format.open_memmap(Path(directory) / f"{name}.npy", mode="w+", dtype=dtype, shape=shape)


__all__ = ["BATCH_ROWS", "ImpressionRows", "allocate", "count_rows", "encode_batches", "read_batches"]
