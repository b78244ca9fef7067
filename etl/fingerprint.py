"""A fingerprint of what a night published: row count and sha256 of each published table for one day.

    python -m etl.fingerprint --ds 2026-02-04 [--warehouse-url URL] [--exclude model_version]

Two runs that published the same rows print the same lines, on SQLite and PostgreSQL alike: rows
are read in the contract's types, sorted by every column and hashed as CSV, so neither the order
the rows were written in nor the database matters. Columns that differ on every run
(``model_runs.run_id`` and ``created_at``) are always left out. ``--exclude model_version`` compares
the scores themselves across code changes: a model version hashes the code that trained it.
"""
from __future__ import annotations

import argparse
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl
import sqlalchemy as sa

from etl.contract import PUBLISHED_TABLES
from etl.warehouse import TABLE_SCHEMAS, bind_date, create_warehouse_engine, mask_url, normalize_url, read_frame

RUN_COLUMNS = ("run_id", "created_at")  # differ on every run by design


@dataclass(frozen=True)
class TableFingerprint:
    table: str
    rows: int
    sha256: str


def fingerprint_frame(frame: pl.DataFrame) -> str:
    """sha256 of a frame's rows in a canonical order (sorted by every column) as CSV."""
    ordered = frame.sort(frame.columns, nulls_last=True) if frame.columns else frame
    return hashlib.sha256(ordered.write_csv().encode()).hexdigest()


def fingerprint_day(warehouse_url: str, ds: date, exclude: Sequence[str] = ()) -> list[TableFingerprint]:
    """One fingerprint per published table for day ``ds`` (tables that do not exist count as empty)."""
    dropped = {*RUN_COLUMNS, *exclude}
    url = sa.make_url(normalize_url(warehouse_url))
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").is_file():
        # Connecting would create an empty file and report nothing published: say it is the wrong path.
        raise FileNotFoundError(f"no SQLite warehouse at {url.database!r}")
    fingerprints = []
    engine = create_warehouse_engine(warehouse_url)
    try:
        with engine.connect() as conn:
            existing = set(conn.dialect.get_table_names(conn))
            if not existing & set(PUBLISHED_TABLES):
                raise ValueError(f"{mask_url(warehouse_url)} has none of the published tables {list(PUBLISHED_TABLES)}")
            for table in PUBLISHED_TABLES:
                columns = [name for name in TABLE_SCHEMAS[table] if name not in dropped]
                if table in existing:
                    query = f"SELECT {', '.join(columns)} FROM {table} WHERE ds = :ds"  # names from the contract
                    frame = read_frame(conn, query, {"ds": bind_date(conn, ds)}, table=table)
                else:
                    frame = pl.DataFrame(schema={name: TABLE_SCHEMAS[table][name] for name in columns})
                fingerprints.append(TableFingerprint(table, frame.height, fingerprint_frame(frame)))
    finally:
        engine.dispose()
    return fingerprints


def main(argv: Sequence[str] | None = None) -> int:
    from etl.config import load_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ds", type=date.fromisoformat, required=True, help="day D, YYYY-MM-DD")
    parser.add_argument("--warehouse-url", default=None, help="SQLAlchemy URL (default: the embedded warehouse)")
    parser.add_argument("--exclude", action="append", default=[], help="a column to leave out (repeatable)")
    args = parser.parse_args(argv)
    warehouse_url = args.warehouse_url or load_settings().embedded_warehouse_url
    for fingerprint in fingerprint_day(warehouse_url, args.ds, args.exclude):
        print(f"{fingerprint.table:<24} rows={fingerprint.rows:<8} sha256={fingerprint.sha256}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
