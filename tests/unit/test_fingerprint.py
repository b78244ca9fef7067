"""The published-day fingerprint: same rows give the same digest on either database, in any order."""
from __future__ import annotations

from datetime import date

import polars as pl
import pytest

from etl.fingerprint import fingerprint_day, fingerprint_frame
from etl.warehouse import create_tables, create_warehouse_engine, insert_frame

DS = date(2026, 2, 4)


def reviews(ds: date, p_negative: list[float], version: str = "multitask-1") -> pl.DataFrame:
    return pl.DataFrame(
        {"ds": [ds] * len(p_negative), "review_id": list(range(1, len(p_negative) + 1)), "p_negative": p_negative,
         "model_version": [version] * len(p_negative)},
        schema={"ds": pl.Date, "review_id": pl.Int64, "p_negative": pl.Float64, "model_version": pl.String},
    )  # fmt: skip


def write(url: str, frame: pl.DataFrame) -> None:
    engine = create_warehouse_engine(url)
    create_tables(engine, areas=["scores"])
    with engine.begin() as conn:
        insert_frame(conn, "score_review_sentiment", frame)
    engine.dispose()


def digests(url: str, **kwargs) -> dict[str, tuple[int, str]]:
    return {fp.table: (fp.rows, fp.sha256) for fp in fingerprint_day(url, DS, **kwargs)}


def test_fingerprint_ignores_row_order_and_other_days_and_sees_every_value(warehouse_url: str, sqlite_url: str) -> None:
    rows = reviews(DS, [0.1, 0.25, 0.9])
    write(warehouse_url, rows.reverse())  # written in another order ...
    write(warehouse_url, reviews(date(2026, 2, 3), [0.5]))  # ... next to another day
    published = digests(warehouse_url)
    assert published["score_review_sentiment"] == (3, fingerprint_frame(rows))  # what was written, on either database
    assert published["score_user_item"][0] == 0 and published["model_runs"][0] == 0  # empty tables still listed

    other = sqlite_url.replace("warehouse.db", "other.db")
    write(other, reviews(DS, [0.1, 0.25, 0.9 + 1e-12]))  # one value off in the last bits
    assert digests(other)["score_review_sentiment"] != published["score_review_sentiment"]

    renamed = sqlite_url.replace("warehouse.db", "renamed.db")
    write(renamed, reviews(DS, [0.1, 0.25, 0.9], version="multitask-2"))  # the same scores from newer code
    assert digests(renamed)["score_review_sentiment"] != published["score_review_sentiment"]
    assert digests(renamed, exclude=["model_version"]) == digests(warehouse_url, exclude=["model_version"])


def test_fingerprint_refuses_a_warehouse_that_published_nothing(sqlite_url: str, tmp_path) -> None:
    missing = f"sqlite:///{tmp_path / 'nowhere' / 'warehouse.db'}"
    with pytest.raises(FileNotFoundError, match="no SQLite warehouse"):
        fingerprint_day(missing, DS)
    assert not (tmp_path / "nowhere").exists()  # a wrong path is not turned into an empty warehouse
    engine = create_warehouse_engine(sqlite_url)
    create_tables(engine, areas=["warehouse"])  # sources only: nothing was ever published here
    engine.dispose()
    with pytest.raises(ValueError, match="none of the published tables"):
        fingerprint_day(sqlite_url, DS)
