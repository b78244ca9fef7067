"""Seed the demo warehouse once: only when every source table is missing or empty.

    python docker/seed_demo_warehouse.py --start 2026-01-01 --end 2026-02-04 --scale 1 --seed 7

Run by docker-compose's airflow-init on every ``docker compose up``. The warehouse is the one the
nightly DAG reads: the Airflow connection ``shopmtl_warehouse`` (``AIRFLOW_CONN_SHOPMTL_WAREHOUSE``),
resolved exactly as the tasks resolve it (``etl.config.resolve_warehouse_url``), unless
``--warehouse-url`` is given. A warehouse that already holds any source row is never touched, so a
real warehouse (or a demo one the DAG has published into) is safe; ``python -m demo.synthetic`` itself
replaces whole days, so re-seeding would only repeat work.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import date

import sqlalchemy as sa

from demo import synthetic
from etl.contract import SOURCE_TABLES
from etl.warehouse import create_warehouse_engine, mask_url


def source_rows(url: str) -> dict[str, int]:
    """Rows per existing source table (missing tables are left out)."""
    engine = create_warehouse_engine(url)
    try:
        existing = set(sa.inspect(engine).get_table_names())
        counts = {}
        with engine.connect() as conn:
            for table in SOURCE_TABLES:
                if table in existing:
                    counts[table] = conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar_one()
        return counts
    finally:
        engine.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warehouse-url", help="default: the shopmtl_warehouse Airflow connection")
    parser.add_argument("--start", required=True, type=date.fromisoformat)
    parser.add_argument("--end", required=True, type=date.fromisoformat)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    if args.warehouse_url:
        url = args.warehouse_url
    else:
        from etl.config import resolve_warehouse_url

        url = resolve_warehouse_url()
    counts = source_rows(url)
    if any(counts.values()):
        print(f"Warehouse {mask_url(url)} already has source rows {counts}: not seeding")
        return 0
    print(f"Warehouse {mask_url(url)} is empty: seeding the demo days {args.start}..{args.end}")
    return synthetic.main(
        [
            "--warehouse-url", url,
            "--start", args.start.isoformat(),
            "--end", args.end.isoformat(),
            "--scale", str(args.scale),
            "--seed", str(args.seed),
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
