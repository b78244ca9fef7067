"""Loaders for the real public data slices (``../shared/data``) into the warehouse contract.

    python -m demo.public_data olist --path DIR --warehouse-url URL
    python -m demo.public_data fashion_mnist --path DIR --warehouse-url URL [--limit N] [--seed S]

Each command creates the contract tables (all DDL areas) if needed, writes its tables in ONE
transaction that first deletes the rows it owns and then inserts them (so loading twice leaves the
same rows), and prints the rows written per table as JSON.

Olist (users, items, orders, order_items, reviews) is loaded by ``demo.olist``, Fashion-MNIST (items,
item_images, truth_items) by ``demo.fashion_mnist``; each documents how it makes its rows.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from demo.fashion_mnist import load_fashion_mnist
from demo.olist import load_olist


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line arguments of ``python -m demo.public_data``."""
    parser = argparse.ArgumentParser(prog="python -m demo.public_data", description=__doc__.split("\n\n")[0])
    sources = parser.add_subparsers(dest="source", required=True)
    for name, help_text in (("olist", "Olist CSV folder"), ("fashion_mnist", "Fashion-MNIST IDX folder")):
        sub = sources.add_parser(name, help=f"load the {help_text}")
        sub.add_argument("--path", required=True, type=Path, help=help_text)
        sub.add_argument("--warehouse-url", required=True, help="SQLAlchemy URL (sqlite:///... or postgresql://...)")
        if name == "fashion_mnist":
            sub.add_argument("--limit", type=int, default=None, help="load only the first N images")
            sub.add_argument("--seed", type=int, default=7, help="seed of the created_at spread")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: load one public data set and print the rows written per table as JSON."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    if args.source == "olist":
        written = load_olist(args.path, args.warehouse_url)
    else:
        written = load_fashion_mnist(args.path, args.warehouse_url, limit=args.limit, seed=args.seed)
    print(json.dumps(written, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
