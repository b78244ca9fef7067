"""The public-data loaders on the real shared slices (Olist sample, Fashion-MNIST test split)."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
from collections import Counter
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import polars as pl
import pytest
import sqlalchemy as sa
from PIL import Image

from demo.fashion_mnist import FASHION_MNIST_LABELS, load_fashion_mnist
from demo.olist import encode_ids, load_olist, local_to_utc, stable_id
from demo.public_data import main
from etl.warehouse import TABLE_SCHEMAS, create_tables, create_warehouse_engine, insert_frame, read_frame

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
OLIST_TABLES = ("users", "items", "orders", "order_items", "reviews")
FASHION_TABLES = ("items", "item_images", "truth_items")


def require(folder: str) -> Path:
    path = SHARED_DATA / folder
    if not path.is_dir():
        pytest.skip(f"shared data slice {path} is absent (CI clones the repo with ../shared beside it)")
    return path


@pytest.fixture(scope="module")
def olist_dir() -> Path:
    return require("olist_sample")


@pytest.fixture(scope="module")
def fashion_dir() -> Path:
    return require("fashion_mnist_test")


@pytest.fixture(scope="module")
def olist_csv(olist_dir: Path) -> dict[str, pl.DataFrame]:
    names = ("customers", "orders", "order_items", "order_reviews")
    return {name: pl.read_csv(olist_dir / f"olist_{name}_dataset.csv", infer_schema=False) for name in names}


@pytest.fixture(scope="module")
def olist_db(olist_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, int]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('olist') / 'warehouse.db'}"
    return url, load_olist(olist_dir, url)


def dump(url: str, tables: tuple[str, ...]) -> dict[str, pl.DataFrame]:
    """Every row of ``tables``, typed and sorted, for comparing warehouses."""
    engine = create_warehouse_engine(url)
    with engine.connect() as conn:
        frames = {t: read_frame(conn, f"SELECT * FROM {t}", table=t).sort(pl.all()) for t in tables}
    engine.dispose()
    return frames


def scalar(url: str, query: str) -> object:
    engine = create_warehouse_engine(url)
    with engine.connect() as conn:
        value = conn.execute(sa.text(query)).scalar_one()
    engine.dispose()
    return value


def olist_order_id(order: str) -> int:
    """The documented id rule, recomputed here without the module."""
    digest = hashlib.blake2b(f"order:{order}".encode(), digest_size=8).digest()
    return (1 << 62) | (int.from_bytes(digest, "big") & ((1 << 62) - 1))


def test_olist_row_counts_match_the_csv_files(olist_db, olist_csv):
    url, written = olist_db
    lines = olist_csv["order_items"]
    reviewed_with_lines = olist_csv["order_reviews"].join(lines.select("order_id").unique(), on="order_id", how="semi")
    expected = {
        "users": olist_csv["customers"].get_column("customer_unique_id").n_unique(),
        "items": lines.get_column("product_id").n_unique(),
        "orders": olist_csv["orders"].height,
        "order_items": lines.select("order_id", "product_id").n_unique(),
        "reviews": reviewed_with_lines.height,
    }
    assert written == expected
    # The numbers the module docstring states: 7 of 996 reviews rate orders that never had an item.
    assert expected == {"users": 999, "items": 923, "orders": 1000, "order_items": 1025, "reviews": 989}
    assert olist_csv["order_reviews"].height == 996
    for table, rows in written.items():
        assert scalar(url, f"SELECT COUNT(*) FROM {table}") == rows
    # quantity counts Olist's repeated per-unit lines
    assert scalar(url, "SELECT SUM(quantity) FROM order_items") == lines.height
    for table in ("clicks", "fraud_labels", "item_images"):
        assert scalar(url, f"SELECT COUNT(*) FROM {table}") == 0


@pytest.mark.parametrize(
    ("child", "column", "parent", "parent_column"),
    [
        ("orders", "user_id", "users", "user_id"),
        ("order_items", "order_id", "orders", "order_id"),
        ("order_items", "item_id", "items", "item_id"),
        ("reviews", "order_id", "orders", "order_id"),
        ("reviews", "user_id", "users", "user_id"),
        ("reviews", "item_id", "items", "item_id"),
    ],
)
def test_olist_foreign_keys_resolve(olist_db, child, column, parent, parent_column):
    url, _ = olist_db
    dangling = scalar(
        url,
        f"SELECT COUNT(*) FROM {child} c LEFT JOIN {parent} p ON c.{column} = p.{parent_column} "
        f"WHERE p.{parent_column} IS NULL",
    )
    assert dangling == 0


def test_olist_reviews_point_at_their_orders_user_and_first_item(olist_db):
    url, _ = olist_db
    wrong_user = scalar(url, "SELECT COUNT(*) FROM reviews r JOIN orders o USING (order_id) WHERE r.user_id <> o.user_id")
    not_in_order = scalar(
        url,
        "SELECT COUNT(*) FROM reviews r LEFT JOIN order_items l ON l.order_id = r.order_id AND l.item_id = r.item_id "
        "WHERE l.order_id IS NULL",
    )
    assert (wrong_user, not_in_order) == (0, 0)


def test_olist_ids_are_the_documented_hashes_and_timestamps_are_utc(olist_db, olist_csv):
    url, _ = olist_db
    orders = dump(url, ("orders",))["orders"]
    # Hand-checked: Sao Paulo is UTC-3 in June 2018 and UTC-2 (summer time) on 2018-01-20.
    checked = {
        "b9a6c5f5df52c7226ac85aee7524c27f": datetime(2018, 6, 12, 23, 7, 44),  # local 2018-06-12 20:07:44
        "261e71d2349c713eafa9f3df5972b95d": datetime(2018, 1, 20, 14, 15, 57),  # local 2018-01-20 12:15:57
    }
    for order, utc in checked.items():
        row = orders.filter(pl.col("order_id") == olist_order_id(order))
        assert row.height == 1, order
        assert row.item(0, "created_at") == utc
        assert row.item(0, "status") == "delivered"
        customer = olist_csv["orders"].filter(pl.col("order_id") == order).item(0, "customer_id")
        person = olist_csv["customers"].filter(pl.col("customer_id") == customer).item(0, "customer_unique_id")
        assert row.item(0, "user_id") == stable_id("user", person)
    assert orders.get_column("order_id").min() >= 1 << 62
    # signup is the person's first order
    late_signups = scalar(
        url,
        "SELECT COUNT(*) FROM users u WHERE u.signup_at <> (SELECT MIN(created_at) FROM orders WHERE user_id = u.user_id)",
    )
    assert late_signups == 0


def test_olist_amount_and_payment_method_come_from_payments(olist_db, olist_dir):
    url, _ = olist_db
    payments = pl.read_csv(olist_dir / "olist_order_payments_dataset.csv", schema_overrides={"payment_value": pl.Float64})
    # an order paid in several parts: amount is their sum, the method the largest part's
    split = payments.filter(pl.col("order_id").is_duplicated()).sort("order_id", "payment_value", descending=[False, True])
    order = split.item(0, "order_id")
    part = split.filter(pl.col("order_id") == order)
    row = dump(url, ("orders",))["orders"].filter(pl.col("order_id") == olist_order_id(order))
    assert row.item(0, "amount") == pytest.approx(part.get_column("payment_value").sum(), abs=0.005)
    assert row.item(0, "payment_method") == part.item(0, "payment_type")
    assert (row.item(0, "device_id"), row.item(0, "channel"), row.item(0, "ship_country")) == ("unknown", "web", "BR")


def test_olist_portuguese_review_text_survives_byte_for_byte(olist_db, olist_csv):
    url, _ = olist_db
    source = olist_csv["order_reviews"].with_columns(
        pl.Series(
            "review_id",
            [stable_id("review", f"{r}/{o}") for r, o in olist_csv["order_reviews"].select("review_id", "order_id").iter_rows()],
        )
    )
    loaded = dump(url, ("reviews",))["reviews"].join(source, on="review_id", how="left", validate="1:1")
    assert loaded.height == 989
    assert loaded.get_column("body").eq_missing(loaded.get_column("review_comment_message")).all()
    assert loaded.get_column("title").eq_missing(loaded.get_column("review_comment_title")).all()
    accented = loaded.filter(pl.col("body").str.contains("[ãçéêíóôõú]"))
    assert accented.height > 50
    assert loaded.filter(pl.col("body") == "Parabéns ").height >= 1  # trailing space kept too
    assert loaded.get_column("body").null_count() > 400  # empty comments stay null, not ''


def test_olist_ids_are_stable_across_databases_and_reloading_is_idempotent(olist_db, olist_dir, tmp_path):
    url, written = olist_db
    other = f"sqlite:///{tmp_path / 'other.db'}"
    assert load_olist(olist_dir, other) == written
    assert load_olist(olist_dir, other) == written  # loading twice replaces, never duplicates
    first, second = dump(url, OLIST_TABLES), dump(other, OLIST_TABLES)
    for table in OLIST_TABLES:
        assert second[table].equals(first[table]), table


def test_hash_collisions_fail_loudly():
    keys = pl.Series([f"{i:032x}" for i in range(20)])
    assert encode_ids("order", keys).n_unique() == 20
    with pytest.raises(ValueError, match="hash to the same integer"):
        encode_ids("order", keys, hash_bits=3)  # 8 values for 20 keys


@pytest.mark.parametrize(
    "wall",
    [
        datetime(2018, 6, 12, 20, 7, 44),  # standard time, UTC-3
        datetime(2018, 1, 20, 12, 15, 57),  # summer time, UTC-2
        datetime(2017, 10, 15, 0, 30),  # skipped: clocks jumped 00:00 -> 01:00
        datetime(2018, 2, 17, 23, 30),  # repeated: clocks went back 00:00 -> 23:00
    ],
)
def test_local_to_utc_follows_python_fold_zero_at_dst_edges(wall):
    expected = wall.replace(tzinfo=ZoneInfo("America/Sao_Paulo")).astimezone(ZoneInfo("UTC")).replace(tzinfo=None)
    got = pl.DataFrame({"t": [wall]}, schema={"t": pl.Datetime("us")}).select(local_to_utc(pl.col("t"))).item()
    assert got == expected


def read_idx_independently(path: Path, header: int) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        return np.frombuffer(handle.read(), dtype=np.uint8, offset=header)


def test_fashion_mnist_items_are_png_images_with_their_label(fashion_dir, tmp_path):
    url = f"sqlite:///{tmp_path / 'fashion.db'}"
    written = load_fashion_mnist(fashion_dir, url, limit=300)
    assert written == {"items": 300, "item_images": 300, "truth_items": 300}
    pixels = read_idx_independently(fashion_dir / "t10k-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
    labels = read_idx_independently(fashion_dir / "t10k-labels-idx1-ubyte.gz", 8)
    tables = dump(url, FASHION_TABLES)
    items, images, truth = tables["items"], tables["item_images"], tables["truth_items"]
    assert items.get_column("item_id").to_list() == list(range(1, 301))
    expected = [FASHION_MNIST_LABELS[label] for label in labels[:300]]
    assert items.get_column("category").to_list() == expected
    assert truth.get_column("true_category").to_list() == expected
    assert Counter(items.get_column("category")) == Counter(FASHION_MNIST_LABELS[label] for label in labels[:300])
    for item_id, png in images.select("item_id", "image").iter_rows():
        image = Image.open(io.BytesIO(png))
        assert (image.format, image.size, image.mode) == ("PNG", (28, 28), "L")
        assert np.array_equal(np.asarray(image), pixels[item_id - 1])  # lossless
    assert images.get_column("updated_at").equals(items.get_column("created_at"))
    created = items.get_column("created_at")
    assert created.min() >= datetime(2026, 1, 8) and created.max() < datetime(2026, 2, 5)
    assert created.dt.date().n_unique() == 28  # every day of the span gets items
    assert set(items.get_column("title")) == {f"Fashion-MNIST item {i}" for i in range(1, 301)}

    assert load_fashion_mnist(fashion_dir, url, limit=300) == written
    again = dump(url, FASHION_TABLES)
    for table in FASHION_TABLES:
        assert again[table].equals(tables[table]), table
    # A smaller load replaces the whole Fashion-MNIST id range; times do not depend on the limit.
    load_fashion_mnist(fashion_dir, url, limit=100)
    smaller = dump(url, ("items",))["items"]
    assert smaller.equals(items.head(100))


def test_fashion_mnist_refuses_to_overwrite_other_items(fashion_dir, tmp_path):
    url = f"sqlite:///{tmp_path / 'mixed.db'}"
    engine = create_warehouse_engine(url)
    create_tables(engine)
    other = pl.DataFrame(
        [(5, "toys", 3.5, 17, "a demo item", datetime(2026, 1, 1))], schema=TABLE_SCHEMAS["items"], orient="row"
    )
    with engine.begin() as conn:
        insert_frame(conn, "items", other)
    engine.dispose()
    with pytest.raises(ValueError, match="1 other items"):
        load_fashion_mnist(fashion_dir, url, limit=10)
    assert dump(url, ("items",))["items"].equals(other)


def test_cli_prints_rows_written_as_json(fashion_dir, tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert main(["fashion_mnist", "--path", str(fashion_dir), "--warehouse-url", url, "--limit", "20"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {"items": 20, "item_images": 20, "truth_items": 20}


@pytest.mark.postgres
def test_both_loaders_on_postgresql(postgres_url, olist_db, olist_dir, fashion_dir):
    sqlite_url, written = olist_db
    assert load_olist(olist_dir, postgres_url) == written
    assert load_olist(olist_dir, postgres_url) == written
    on_postgres, on_sqlite = dump(postgres_url, OLIST_TABLES), dump(sqlite_url, OLIST_TABLES)
    for table in OLIST_TABLES:
        assert on_postgres[table].equals(on_sqlite[table]), table
    assert load_fashion_mnist(fashion_dir, postgres_url, limit=50) == {"items": 50, "item_images": 50, "truth_items": 50}
    assert load_fashion_mnist(fashion_dir, postgres_url, limit=50)["items"] == 50
    images = dump(postgres_url, ("item_images",))["item_images"]
    assert images.height == 50
    assert Image.open(io.BytesIO(images.item(0, "image"))).size == (28, 28)
    assert scalar(postgres_url, "SELECT COUNT(*) FROM items") == 923 + 50
