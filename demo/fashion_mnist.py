"""Fashion-MNIST into the warehouse contract (``python -m demo.public_data fashion_mnist``).

Fashion-MNIST (Zalando, MIT; ``*-images-idx3-ubyte.gz`` and ``*-labels-idx1-ubyte.gz``) -> items,
item_images, truth_items. Image k of the file (0-based) is item ``k + 1``; its 28x28 grey pixels are
stored losslessly as a PNG in item_images.image. items.category and truth_items.true_category are the
label's name (no listing noise). PLACEHOLDERS: price 10.00 for every item (one value, so price says
nothing about the label), seller_id 0, title ``"Fashion-MNIST item <item_id>"`` (no label in it).
created_at (= item_images.updated_at) spreads the items uniformly at random (``seed``) over the 28 days
ending 2026-02-04 (2026-01-08 00:00 .. 2026-02-04 23:59:59 UTC), so a daily pipeline has new items
every day; the draws are made for every image in the file, so ``limit`` never moves an item's time.
A load owns item ids 1..(images in the file): it refuses to run if items it did not write hold ids
there (the demo generator's base items do), and otherwise replaces them all, so a load with
``limit=N`` leaves exactly N items. Rows for the shared slice (``fashion_mnist_test``, the test split):
10,000 per table, 1,000 per category; about 1 s into SQLite.
"""
from __future__ import annotations

import gzip
import io
import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import sqlalchemy as sa
from PIL import Image
from sqlalchemy.engine import Connection

from etl.warehouse import create_tables, create_warehouse_engine, mask_url, replace_rows, select_table

log = logging.getLogger(__name__)

FASHION_MNIST_LABELS = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
FASHION_MNIST_TITLE_PREFIX = "Fashion-MNIST item "
IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension


@dataclass(frozen=True)
class FashionMnistConfig:
    """Placeholders and the time span of the Fashion-MNIST catalogue."""

    limit: int | None = None  # load the first N images (None: all)
    seed: int = 7  # random stream that spreads created_at over the span
    end_day: date = date(2026, 2, 4)  # last day that receives items (the demo warehouse's last day)
    span_days: int = 28  # days that receive items, ending with end_day
    price: float = 10.0  # one placeholder price for every item, so price carries no label information


def read_idx(path: Path, magic: int) -> np.ndarray:
    """An IDX array of unsigned bytes (gzip or plain): big-endian magic and dimension sizes, then the data."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        data = handle.read()
    found, = np.frombuffer(data[:4], dtype=">u4")
    if found != magic:
        raise ValueError(f"{path}: IDX magic {found:#010x}, expected {magic:#010x}")
    n_dims = magic & 0xFF
    shape = tuple(int(size) for size in np.frombuffer(data[4 : 4 + 4 * n_dims], dtype=">u4"))
    values = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * n_dims)
    if values.size != int(np.prod(shape)):
        raise ValueError(f"{path}: {values.size} bytes of data for shape {shape}")
    return values.reshape(shape)


def find_one(path: Path, pattern: str) -> Path:
    """The single file under ``path`` matching ``pattern``."""
    matches = sorted(path.glob(pattern))
    if len(matches) != 1:
        raise FileNotFoundError(f"expected one file matching {pattern} in {path}, found {[m.name for m in matches]}")
    return matches[0]


def read_fashion_mnist(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images [n, 28, 28] uint8, labels [n] uint8) of the IDX files under ``path``."""
    images = read_idx(find_one(path, "*images-idx3-ubyte*"), IDX_IMAGES_MAGIC)
    labels = read_idx(find_one(path, "*labels-idx1-ubyte*"), IDX_LABELS_MAGIC)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels in {path}")
    if labels.max(initial=0) >= len(FASHION_MNIST_LABELS):
        raise ValueError(f"label {labels.max()} outside 0..{len(FASHION_MNIST_LABELS) - 1} in {path}")
    return images, labels


def encode_png(image: np.ndarray) -> bytes:
    """A grey uint8 image as PNG bytes (lossless)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def spread_created_at(n_total: int, config: FashionMnistConfig) -> pl.Series:
    """Creation times of all ``n_total`` images: a uniform random second of the span (seeded)."""
    first = datetime.combine(config.end_day - timedelta(days=config.span_days - 1), datetime.min.time())
    rng = np.random.default_rng(config.seed)
    seconds = rng.integers(0, config.span_days * 86_400, n_total)  # drawn for every image: limit moves none
    first_us = int((first - datetime(1970, 1, 1)).total_seconds()) * 1_000_000
    return pl.Series("created_at", first_us + seconds.astype(np.int64) * 1_000_000).cast(pl.Datetime("us"))


def build_fashion_mnist_tables(
    images: np.ndarray, labels: np.ndarray, config: FashionMnistConfig
) -> dict[str, pl.DataFrame]:
    """items, item_images and truth_items of the first ``config.limit`` images (contract frames)."""
    n = images.shape[0] if config.limit is None else min(config.limit, images.shape[0])
    created_at = spread_created_at(images.shape[0], config)[:n]
    item_id = pl.Series("item_id", np.arange(1, n + 1, dtype=np.int64))
    category = pl.Series("category", np.array(FASHION_MNIST_LABELS, dtype=object)[labels[:n]].tolist(), dtype=pl.String)
    items = pl.DataFrame({"item_id": item_id, "category": category, "created_at": created_at}).with_columns(
        pl.lit(config.price).alias("price"),
        pl.lit(0).alias("seller_id"),
        (pl.lit(FASHION_MNIST_TITLE_PREFIX) + pl.col("item_id").cast(pl.String)).alias("title"),
    )
    pngs = pl.Series("image", [encode_png(image) for image in images[:n]], dtype=pl.Binary)
    item_images = pl.DataFrame({"item_id": item_id, "image": pngs, "updated_at": created_at})
    truth = pl.DataFrame({"item_id": item_id, "true_category": category})
    return {
        "items": select_table("items", items),
        "item_images": select_table("item_images", item_images),
        "truth_items": select_table("truth_items", truth),
    }


def check_fashion_ids_free(conn: Connection, n_total: int) -> None:
    """Fail if items this loader did not write hold ids in 1..n_total (replacing them would destroy them)."""
    foreign = conn.execute(
        sa.text(
            "SELECT COUNT(*) FROM items WHERE item_id >= 1 AND item_id <= :high "
            "AND (seller_id <> 0 OR title NOT LIKE :prefix)"
        ),
        {"high": n_total, "prefix": FASHION_MNIST_TITLE_PREFIX + "%"},
    ).scalar_one()
    if foreign:
        raise ValueError(
            f"the warehouse holds {foreign} other items with ids in 1..{n_total} (the demo generator's?); "
            "load Fashion-MNIST into a warehouse of its own"
        )


def load_fashion_mnist(path: Path, warehouse_url: str, limit: int | None = None, seed: int = 7) -> dict[str, int]:
    """Load Fashion-MNIST images as PNG items with their category; returns rows written per table."""
    config = FashionMnistConfig(limit=limit, seed=seed)
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    images, labels = read_fashion_mnist(Path(path))
    tables = build_fashion_mnist_tables(images, labels, config)
    engine = create_warehouse_engine(warehouse_url)
    written: dict[str, int] = {}
    try:
        create_tables(engine)
        n_items = tables["items"].height
        log.info("loading %d Fashion-MNIST images from %s into %s", n_items, path, mask_url(warehouse_url))
        with engine.begin() as conn:
            check_fashion_ids_free(conn, images.shape[0])
            for table, frame in tables.items():
                written[table] = replace_rows(
                    conn, table, frame, "item_id >= 1 AND item_id <= :high", {"high": images.shape[0]}
                )
    finally:
        engine.dispose()
    return written
