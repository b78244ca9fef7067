"""Features -> tensors: reading a features directory and encoding its frames for the network.

Columnar all the way (Polars -> numpy -> torch); per-row Python only to hash text. Ids become
embedding rows through sorted int64 vocabularies (``lookup_rows``; row 0 = unseen), strings through
sorted string vocabularies (``FeatureSpec``), item content (images, titles) through the
``ItemTable``. Every frame comes in four batch kinds, one per shape of input:

| kind | rows | objectives |
|---|---|---|
| impression | impressions (and candidates, to score) | click, purchase |
| review | reviews | review |
| item | items with an image | category |
| order | orders | fraud |
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import numpy as np
import polars as pl
import torch

from etl.contract import OBJECTIVE_KIND, OBJECTIVES
from etl.layout import feature_input_paths, feature_path, manifest_path
from etl.sequences import SEQUENCE_COLUMNS
from training.config import TextHashing
from training.encoders import decode_images, gather_bags, hash_texts
from training.impression_rows import ImpressionRows, count_rows, encode_batches, read_batches


UNSEEN_ROW = 0  # embedding row shared by every id or category value missing from the vocabulary
KINDS = ("impression", "review", "item", "order")  # sampler order (fixed: the shuffles consume the generator in it)
Tensors = dict[str, torch.Tensor]


class Vocabularies(Protocol):
    """What encoding reads of a network (``training.multitask.MultiTaskNet``): its sorted id
    vocabularies and its config, whose ``network.text`` says how to hash text."""

    user_vocabulary: torch.Tensor
    item_vocabulary: torch.Tensor
    config: Any


# --- reading the features directory ------------------------------------------------------------------


def read_manifest(features_dir: Path) -> dict[str, Any]:
    """The features directory's manifest.json (ds, feature column names, objectives_available)."""
    return json.loads(manifest_path(features_dir).read_text())


def source_schemas(manifest: dict[str, Any]) -> dict[str, dict[str, pl.DataType]]:
    """The columns training reads from each features file, for files a deployment does not write."""
    impression_dense = {name: pl.Float32 for name in manifest.get("impression_dense", [])}
    return {
        "impressions": {
            "event_id": pl.Int64, "user_id": pl.Int64, "item_id": pl.Int64, "category": pl.String,
            "scenario": pl.String, "event_date": pl.Date, "split": pl.String, "clicked": pl.Int8, "converted": pl.Int8,
            **SEQUENCE_COLUMNS, **impression_dense,
        },
        "orders": {
            "order_id": pl.Int64, "user_id": pl.Int64, "created_at": pl.Datetime("us"), "split": pl.String,
            "is_fraud": pl.Int8,
            **{name: pl.Float32 for name in manifest.get("order_dense", [])},
            **{name: pl.String for name in manifest.get("order_categorical", [])},
        },
        "reviews": {
            "review_id": pl.Int64, "user_id": pl.Int64, "item_id": pl.Int64, "category": pl.String,
            "text": pl.String, "created_at": pl.Datetime("us"), "split": pl.String, "negative": pl.Int8,
        },
        "items": {
            "item_id": pl.Int64, "category": pl.String, "title": pl.String, "image": pl.Binary, "split": pl.String,
        },
        "candidates": {
            "user_id": pl.Int64, "item_id": pl.Int64, "category": pl.String, "scenario": pl.String, **SEQUENCE_COLUMNS,
            **impression_dense,
        },
    }  # fmt: skip


@dataclass
class FeatureTables:
    """The frames of one features directory; a file that is missing reads as an empty frame."""

    features_dir: Path
    manifest: dict[str, Any]
    impressions: pl.DataFrame
    orders: pl.DataFrame
    reviews: pl.DataFrame
    items: pl.DataFrame
    impression_splits: tuple[str, ...] | None = None  # the splits ``impressions`` holds; None: all of them

    def candidate_batches(self) -> Iterator[pl.DataFrame]:
        """The recommendation candidates a Parquet batch at a time (millions of rows at 100x the demo:
        scored a batch at a time, never held whole); nothing when the file is absent."""
        path = feature_path(self.features_dir, "candidates")
        if path.exists():
            yield from read_batches(path, list(source_schemas(self.manifest)["candidates"]))

    def impressions_of(self, split: str) -> pl.DataFrame:
        """The impressions of one split: from memory when read, else from the file (row groups of other
        splits are skipped by their statistics, so day D's rows cost one day's read)."""
        if self.impression_splits is None or split in self.impression_splits:
            return self.impressions.filter(pl.col("split") == split)
        return scan_impressions(self.features_dir, self.manifest, (split,)).collect()

    @property
    def ds(self) -> date:
        """Day D."""
        return date.fromisoformat(self.manifest["ds"])

    @property
    def objectives_available(self) -> tuple[str, ...]:
        """Objectives whose source data this deployment has (all five for a manifest without the key)."""
        return tuple(self.manifest.get("objectives_available", OBJECTIVES))

    def input_paths(self) -> list[Path]:
        """The files that exist, in a fixed order (hashed into the model version)."""
        return feature_input_paths(self.features_dir)


def scan_impressions(features_dir: Path, manifest: dict[str, Any], splits: tuple[str, ...]) -> pl.LazyFrame:
    """The impressions of ``splits``, lazily (an empty frame of the training schema when the file is absent)."""
    return ImpressionRows(features_dir, splits, source_schemas(manifest)["impressions"]).lazy()


def read_feature_tables(features_dir: Path, impression_splits: tuple[str, ...] | None = None) -> FeatureTables:
    """Read every features file of ``features_dir``; of the impressions, only ``impression_splits`` when given.

    The impressions are the one file that grows with the whole window (14M rows at 100x the demo);
    scoring needs only day D's (``("eval",)``), and training reads its ``train`` rows on its own
    (``FeatureTables.impressions_of``), so neither holds the window twice.
    """
    features_dir = Path(features_dir)
    manifest = read_manifest(features_dir)
    frames = {}
    for table, schema in source_schemas(manifest).items():
        if table == "candidates":
            continue  # read in batches when scored (FeatureTables.candidate_batches)
        path = feature_path(features_dir, table)
        if table == "impressions" and impression_splits is not None:
            frames[table] = scan_impressions(features_dir, manifest, impression_splits).collect()
        else:
            frames[table] = pl.read_parquet(path) if path.exists() else pl.DataFrame(schema=schema)
    return FeatureTables(features_dir=features_dir, manifest=manifest, impression_splits=impression_splits, **frames)


def sorted_strings(frames: list[pl.DataFrame | ImpressionRows], column: str) -> list[str]:
    """Sorted distinct non-null values of a string column over several frames (lazy ones read lazily)."""
    values: set[str] = set()
    for frame in frames:
        values.update(frame.lazy().select(pl.col(column).cast(pl.String).drop_nulls().unique()).collect().to_series().to_list())
    return sorted(values)


def build_feature_spec(
    manifest: dict[str, Any], train: dict[str, pl.DataFrame | ImpressionRows], trained: tuple[str, ...], item_classes: list[str]
) -> FeatureSpec:
    """Input columns from the manifest and string vocabularies from the trained objectives' training rows."""
    kinds = {OBJECTIVE_KIND[objective] for objective in trained}
    order_categorical = list(manifest.get("order_categorical", []))
    orders = train["order"] if "order" in kinds else train["order"].clear()
    return FeatureSpec(
        impression_dense=list(manifest.get("impression_dense", [])),
        order_dense=list(manifest.get("order_dense", [])),
        order_categorical=order_categorical,
        categories=sorted_strings([train[kind] for kind in ("impression", "review") if kind in kinds], "category"),
        scenarios=sorted_strings([train["impression"]], "scenario") if "impression" in kinds else [],
        order_categorical_values={column: sorted_strings([orders], column) for column in order_categorical},
        item_categories=item_classes,
    )


# --- vocabularies and the item table ---------------------------------------------------------------


@dataclass(frozen=True)
class FeatureSpec:
    """Input columns and string vocabularies: how a Parquet frame becomes model inputs."""

    impression_dense: list[str]
    order_dense: list[str]
    order_categorical: list[str]
    categories: list[str]  # sorted category values seen in training; index + 1 = embedding row
    order_categorical_values: dict[str, list[str]] = field(default_factory=dict)  # column -> sorted values
    item_categories: list[str] = field(default_factory=list)  # image head classes: listed categories of training items
    scenarios: list[str] = field(default_factory=list)  # sorted impression scenarios seen in training; index + 1 = row


def lookup_rows(vocabulary: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Embedding rows of ``ids`` in a sorted int64 ``vocabulary``: position + 1, or 0 when absent."""
    if vocabulary.numel() == 0:
        return torch.zeros_like(ids)
    position = torch.searchsorted(vocabulary, ids)  # [n] in 0..len(vocabulary)
    position = position.clamp(max=vocabulary.numel() - 1)  # [n] valid index to compare against
    found = vocabulary[position] == ids  # [n] bool
    return torch.where(found, position + 1, torch.full_like(position, UNSEEN_ROW))  # [n]


@dataclass(frozen=True)
class ItemTable:
    """Item content as tensors, one row per item plus row 0 (no content): what every item vector reads.

    Built once per dataset from ``items.parquet`` (:func:`encode_item_table`); batches carry
    ``content_rows`` into it. ``image_features`` is the image head's output per row, refreshed by the trainer
    once per epoch and by the scorer before scoring (:func:`with_image_features`).
    """

    item_ids: torch.Tensor  # [n] sorted int64
    images: torch.Tensor  # [n + 1, 3, s, s] uint8
    has_image: torch.Tensor  # [n + 1] bool
    title_ids: torch.Tensor  # [n_title_ids] hashed title features
    title_offsets: torch.Tensor  # [n + 2]: row k's title is title_ids[title_offsets[k]:title_offsets[k + 1]]
    image_features: torch.Tensor | None = None  # [n + 1, n_classes] float32 image class probabilities, or None

    def to(self, device: torch.device | str) -> ItemTable:
        """The same table on ``device``."""
        return ItemTable(**{key: None if value is None else value.to(device) for key, value in self.tensors().items()})

    def tensors(self) -> dict[str, torch.Tensor | None]:
        """The fields by name."""
        return {item.name: getattr(self, item.name) for item in dataclasses.fields(self)}

    @property
    def n_rows(self) -> int:
        """Rows including row 0."""
        return int(self.images.shape[0])

    def rows_of(self, item_ids: pl.Series) -> torch.Tensor:
        """Table rows [len(item_ids)] of an item id column: position + 1, or 0 when unknown or null."""
        return id_rows(self.item_ids, item_ids)


# --- frames -> tensors -----------------------------------------------------------------------------


def encode_strings(column: pl.Expr, values: list[str]) -> pl.Expr:
    """Map strings to 1-based positions in ``values``; null or unseen -> 0."""
    return column.replace_strict(values, list(range(1, len(values) + 1)), default=UNSEEN_ROW, return_dtype=pl.Int64)


def dense_tensor(frame: pl.DataFrame, columns: list[str]) -> torch.Tensor:
    """Float32 [rows, len(columns)] from frame columns (nulls become 0; NaN or inf is an error)."""
    if not columns:
        return torch.zeros((frame.height, 0), dtype=torch.float32)
    array = np.ascontiguousarray(
        frame.select(pl.col(columns).cast(pl.Float32).fill_null(0.0)).to_numpy(), dtype=np.float32
    )  # [rows, n_dense]
    finite = np.isfinite(array).all(axis=0)  # [n_dense]
    if not finite.all():  # one NaN would turn every weight into NaN: fail here, naming the columns
        bad = [column for column, ok in zip(columns, finite, strict=True) if not ok]
        raise ValueError(f"dense feature columns hold NaN or infinite values: {bad}")
    return torch.from_numpy(array)


def id_rows(vocabulary: torch.Tensor, ids: pl.Series) -> torch.Tensor:
    """Embedding rows [rows] for an id column: its vocabulary position + 1, or 0 when unseen or null."""
    raw = torch.from_numpy(ids.cast(pl.Int64).fill_null(0).to_numpy().copy())  # [rows]
    rows = lookup_rows(vocabulary.cpu(), raw)  # [rows]; encoding happens on the CPU, batches move later
    if ids.null_count():
        rows[torch.from_numpy(ids.is_null().to_numpy().copy())] = UNSEEN_ROW
    return rows


def string_rows(frame: pl.DataFrame, column: str, values: list[str]) -> torch.Tensor:
    """Rows [rows] of a string column in a sorted vocabulary (1-based; null or unseen -> 0)."""
    codes = frame.select(encode_strings(pl.col(column).cast(pl.String), values)).to_series().to_numpy()
    return torch.from_numpy(np.array(codes, dtype=np.int64))  # a writable copy


def label_tensor(frame: pl.DataFrame, column: str) -> torch.Tensor:
    """Float32 [rows] of a 0/1 label column."""
    return torch.from_numpy(frame.get_column(column).cast(pl.Float32).to_numpy().copy())


def encode_item_table(items: pl.DataFrame, hashing: TextHashing, image_size: int) -> ItemTable:
    """An :class:`ItemTable` of an items frame (item_id, title, image): images decoded, titles hashed, once."""
    items = items.unique(subset="item_id", keep="first", maintain_order=True).drop_nulls("item_id").sort("item_id")
    images, has_image = decode_images(
        items.get_column("image").to_list() if "image" in items.columns else [None] * items.height, image_size
    )  # [n, 3, s, s], [n]
    titles = items.get_column("title").to_list() if "title" in items.columns else [None] * items.height
    title_ids, title_offsets = hash_texts([None, *titles], hashing)  # row 0: no title
    return ItemTable(
        item_ids=torch.from_numpy(items.get_column("item_id").cast(pl.Int64).to_numpy().copy()),  # [n]
        images=torch.cat([torch.zeros((1, 3, image_size, image_size), dtype=torch.uint8), images]),  # [n + 1, ...]
        has_image=torch.cat([torch.zeros(1, dtype=torch.bool), has_image]),  # [n + 1]
        title_ids=title_ids,
        title_offsets=title_offsets,  # [n + 2]
    )


def empty_item_table(hashing: TextHashing, image_size: int) -> ItemTable:
    """A table with only row 0: every item scores through its id embedding and the no-content vector."""
    schema = {"item_id": pl.Int64, "title": pl.String, "image": pl.Binary}
    return encode_item_table(pl.DataFrame(schema=schema), hashing, image_size)


def user_item_rows(model: Vocabularies, spec: FeatureSpec, frame: pl.DataFrame, items: ItemTable | None) -> Tensors:
    """The embedding rows of a (user, item, category) frame, and its items' rows in the item table."""
    return {
        "user_rows": id_rows(model.user_vocabulary, frame.get_column("user_id")),  # [rows]
        "item_rows": id_rows(model.item_vocabulary, frame.get_column("item_id")),  # [rows]
        "category_rows": string_rows(frame, "category", spec.categories),  # [rows]
        "content_rows": (
            items.rows_of(frame.get_column("item_id")) if items is not None else torch.zeros(frame.height, dtype=torch.int64)
        ),  # [rows] into the item table
    }


def encode_impressions(
    model: Vocabularies, spec: FeatureSpec, frame: pl.DataFrame, items: ItemTable | None = None
) -> Tensors:
    """Tensors for impression-shaped rows (impressions or candidates): rows, dense, and labels when present."""
    tensors = {
        **user_item_rows(model, spec, frame, items),
        "dense": dense_tensor(frame, spec.impression_dense),  # [rows, n_impression_dense]
        # [rows]; a frame without the column (an older features directory) reads as "no scenario"
        "scenario_rows": string_rows(frame, "scenario", spec.scenarios)
        if "scenario" in frame.columns
        else torch.zeros(frame.height, dtype=torch.int64),
        **history_rows(model, spec, frame, items, model.config.network.history_length),
    }
    for label in ("clicked", "converted"):
        if label in frame.columns:
            tensors[label] = label_tensor(frame, label)  # [rows]
    return tensors


def history_rows(
    model: Vocabularies, spec: FeatureSpec, frame: pl.DataFrame, items: ItemTable | None, length: int
) -> Tensors:
    """The behaviour sequence as [rows, length] tensors, newest click first (``etl.sequences``): item
    rows, item-table rows and category rows (0 past a sequence's end or when unseen) and the mask of
    real positions. Nothing for a network without history or a frame without the sequence columns."""
    if length <= 0 or "recent_items" not in frame.columns:
        return {}
    lists = frame.select(pl.col("recent_items").list.head(length), pl.col("recent_categories").list.head(length))
    lengths = lists.get_column("recent_items").list.len().fill_null(0).to_numpy().astype(np.int64)  # [rows]
    row = np.repeat(np.arange(frame.height), lengths)  # [positions] the row of each position
    column = np.arange(row.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)  # [positions] 0..length-1
    flat = lists.select(pl.col("recent_items").explode(), pl.col("recent_categories").explode()).filter(
        pl.col("recent_items").is_not_null()
    )  # an empty list explodes to one null: dropped (clicked item ids are never null)
    mask = np.zeros((frame.height, length), dtype=bool)
    mask[row, column] = True

    def grid(values: torch.Tensor) -> torch.Tensor:
        out = torch.zeros((frame.height, length), dtype=torch.int64)
        out[torch.from_numpy(row), torch.from_numpy(column)] = values
        return out

    item_ids = flat.get_column("recent_items")
    return {
        "history_item_rows": grid(id_rows(model.item_vocabulary, item_ids)),  # [rows, length]
        "history_content_rows": grid(items.rows_of(item_ids) if items is not None else torch.zeros(flat.height, dtype=torch.int64)),
        "history_category_rows": grid(string_rows(flat, "recent_categories", spec.categories)),
        "history_mask": torch.from_numpy(mask),  # [rows, length]
    }


def encode_reviews(model: Vocabularies, spec: FeatureSpec, frame: pl.DataFrame, items: ItemTable | None) -> Tensors:
    """Tensors for review rows: id rows, content rows, the hashed text (flat ids + offsets), and ``negative``."""
    text_ids, text_offsets = hash_texts(frame.get_column("text").to_list(), model.config.network.text)
    tensors = {
        **user_item_rows(model, spec, frame, items),
        "text_ids": text_ids,  # [n_text_ids], not per row: batches gather their bags
        "text_offsets": text_offsets,  # [rows + 1]
    }
    if "negative" in frame.columns and frame.get_column("negative").null_count() == 0:
        tensors["negative"] = label_tensor(frame, "negative")  # [rows]
    return tensors


def encode_item_labels(spec: FeatureSpec, items: ItemTable, frame: pl.DataFrame) -> Tensors:
    """Tensors for category rows: ``table_rows`` into the item table and ``label`` (class index, -1 if unknown)."""
    label = string_rows(frame, "category", spec.item_categories) - 1  # [rows] 0-based; unknown -> -1
    return {"table_rows": items.rows_of(frame.get_column("item_id")), "label": label}  # [rows] each


def encode_orders(model: Vocabularies, spec: FeatureSpec, frame: pl.DataFrame) -> Tensors:
    """Tensors for order rows: user rows, categorical rows [rows, n_cat], dense, and is_fraud when labelled."""
    if spec.order_categorical:
        codes = frame.select(
            encode_strings(pl.col(column).cast(pl.String), spec.order_categorical_values[column]).alias(column)
            for column in spec.order_categorical
        ).to_numpy()  # [rows, n_cat]
    else:
        codes = np.zeros((frame.height, 0), dtype=np.int64)
    tensors = {
        "user_rows": id_rows(model.user_vocabulary, frame.get_column("user_id")),  # [rows]
        "categorical_rows": torch.from_numpy(np.ascontiguousarray(codes, dtype=np.int64)),  # [rows, n_cat]
        "dense": dense_tensor(frame, spec.order_dense),  # [rows, n_order_dense]
    }
    if "is_fraud" in frame.columns and frame.get_column("is_fraud").null_count() == 0:
        tensors["is_fraud"] = label_tensor(frame, "is_fraud")
    return tensors


BAG_KEYS = {"text_ids": "text_offsets"}  # flat bag tensors (not one entry per row) and their offsets


def n_rows(tensors: Tensors) -> int:
    """Rows of an encoded frame (0 for an empty dict)."""
    for key, value in tensors.items():
        if key not in BAG_KEYS and key not in BAG_KEYS.values():
            return int(value.shape[0])
    return 0


def select_rows(tensors: Tensors, index: torch.Tensor) -> Tensors:
    """Rows ``index`` of every per-row tensor; text bags are gathered for those rows."""
    batch = {
        key: value[index] for key, value in tensors.items() if key not in BAG_KEYS and key not in BAG_KEYS.values()
    }
    for ids_key, offsets_key in BAG_KEYS.items():
        if ids_key in tensors:
            batch[ids_key], batch[offsets_key] = gather_bags(tensors[ids_key], tensors[offsets_key], index)
    return batch


def batched(tensors: Tensors, batch_size: int, device: torch.device) -> list[Tensors]:
    """Consecutive batches of encoded rows, moved to ``device``."""
    total = n_rows(tensors)
    return [
        {key: value.to(device) for key, value in select_rows(tensors, torch.arange(start, min(start + batch_size, total))).items()}
        for start in range(0, total, batch_size)
    ]


ENCODE_CHUNK_ROWS = 1 << 20  # rows encoded at a time: bounds encoding's transient copies (Polars -> numpy -> torch)
RowFilter = Callable[[pl.DataFrame], pl.DataFrame]  # the rows of a kind to keep, called on them in order


def encode_in_chunks(encode: Callable[[pl.DataFrame], Tensors], frame: pl.DataFrame, chunk_rows: int = ENCODE_CHUNK_ROWS) -> Tensors:
    """``encode(frame)`` one slice at a time into preallocated tensors, so the copies encoding makes on
    the way stay one slice big however many rows there are. Per-row tensors only (no text bags)."""
    if frame.height <= chunk_rows:
        return encode(frame)
    slices = (frame.slice(start, chunk_rows) for start in range(0, frame.height, chunk_rows))
    return encode_batches(encode, slices, frame.height, None, frame.clear())


def impression_columns(spec: FeatureSpec) -> list[str]:
    """The impression columns encoding and the incremental selection read."""
    return [
        "user_id", "item_id", "category", "scenario", "event_date", "clicked", "converted", *SEQUENCE_COLUMNS,
        *spec.impression_dense,
    ]  # fmt: skip


def encode_objective_data(
    model: Vocabularies,
    spec: FeatureSpec,
    frames: dict[str, pl.DataFrame | ImpressionRows],
    items: ItemTable,
    kinds: set[str],
    row_filters: dict[str, RowFilter] | None = None,
    scratch_dir: Path | None = None,
) -> dict[str, Tensors]:
    """Encoded tensors of the given kinds' frames (item rows without a decodable image or known class
    dropped), of the rows ``row_filters`` keep. :class:`ImpressionRows` are encoded a Parquet batch at a
    time into memory maps under ``scratch_dir`` (in memory when it is None)."""
    row_filters = row_filters or {}
    keep = {kind: row_filters.get(kind, lambda frame: frame) for kind in KINDS}
    data: dict[str, Tensors] = {}
    if "impression" in kinds:
        frame = frames["impression"]
        encode = lambda part: encode_impressions(model, spec, part, items)  # noqa: E731
        if isinstance(frame, ImpressionRows):
            columns = impression_columns(spec)
            batches = (keep["impression"](batch) for batch in frame.batches(columns))
            data["impression"] = encode_batches(encode, batches, count_rows(frame), scratch_dir, frame.empty(columns))
        else:
            data["impression"] = encode_in_chunks(encode, keep["impression"](frame))
    if "review" in kinds:
        data["review"] = encode_reviews(model, spec, keep["review"](frames["review"]), items)
    if "item" in kinds:
        tensors = encode_item_labels(spec, items, keep["item"](frames["item"]))
        usable = items.has_image[tensors["table_rows"]]  # [rows] decodable images only
        data["item"] = {key: value[usable] for key, value in tensors.items()}
    if "order" in kinds:
        data["order"] = encode_in_chunks(lambda part: encode_orders(model, spec, part), keep["order"](frames["order"]))
    return data


def item_classes(items: pl.DataFrame, table: ItemTable) -> list[str]:
    """Sorted listed categories of training items with a decodable image: the image head's classes."""
    decodable = table.has_image[table.rows_of(items.get_column("item_id"))]  # [rows]
    return sorted_strings([items.filter(pl.Series(decodable.numpy()))], "category")
