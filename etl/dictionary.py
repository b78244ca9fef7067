"""The data dictionary, generated from ``sql/``: every source, score and ops table with its columns,
their SQL types, whether they may be NULL, what they mean (the ``COMMENT ON`` statements beside the
DDL, ``etl.comments``), which task writes the table and which analysts' views read it.

    python -m etl.dictionary            # writes docs/data_dictionary.md
    python -m etl.dictionary --check    # exits 1 when the file is not what sql/ says (CI runs the test)
"""
from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from etl.comments import parse_comment
from etl.warehouse import named_tables, read_ddl, split_sql

REPO_DIR = Path(__file__).resolve().parents[1]
DICTIONARY_PATH = REPO_DIR / "docs" / "data_dictionary.md"
# The areas described, and who writes their tables (a table of its own overrides its area).
DESCRIBED_AREAS = {
    "warehouse": "Sources: the platform's own tables. shopmtl only reads them (the DAG's `extract` task).",
    "scores": "Scores: published by shopmtl's nightly run, one day `ds` at a time.",
    "ops": "Operations: what shopmtl records about its runs and models.",
}
WRITERS = {
    "warehouse": "the platform (read by `extract`)",
    "scores": "`publish`, day `ds` replaced in one transaction",
    "data_quality_results": "`extract` (schema drift, unreadable values) and `validate` (every rule)",
    "model_registry": "`publish`, recording the gates' decisions with the day's scores",
}
CREATE_TABLE = re.compile(r"CREATE TABLE IF NOT EXISTS (?P<table>[a-z_]+) \((?P<body>.*)\)\s*$", re.DOTALL)
COLUMN_LINE = re.compile(r"^(?P<name>[a-z_]+)\s+(?P<type>[A-Z]+(?: PRECISION)?(?:\(\d+(?:,\s*\d+)?\))?)(?P<rest>.*)$")


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str
    nullable: bool
    meaning: str | None


@dataclass(frozen=True)
class Table:
    name: str
    area: str
    meaning: str | None
    columns: tuple[Column, ...]
    written_by: str
    read_by_views: tuple[str, ...]


def read_tables(areas: Sequence[str] = tuple(DESCRIBED_AREAS)) -> list[Table]:
    """Every table of ``areas`` as its DDL file declares and comments it."""
    readers = view_readers()
    tables = []
    for area in areas:
        for name, text in read_ddl(area):
            statements = split_sql(text)
            create = next(match for statement in statements if (match := CREATE_TABLE.match(statement)))
            comments = {comment.column: comment.text for statement in statements if (comment := parse_comment(statement))}
            columns = tuple(
                Column(match["name"], match["type"], "NOT NULL" not in match["rest"] and "PRIMARY KEY" not in match["rest"], comments.get(match["name"]))
                for line in create["body"].splitlines()
                if (match := COLUMN_LINE.match(line.strip().rstrip(",")))
            )  # fmt: skip
            tables.append(Table(
                name, area, comments.get(None), columns, WRITERS.get(name, WRITERS.get(area, "")), tuple(readers.get(name, ())),
            ))  # fmt: skip
    return tables


def view_readers() -> dict[str, list[str]]:
    """{table: the analysts' views (sql/views/) whose query names it}."""
    readers: dict[str, list[str]] = {}
    for view, text in read_ddl("views"):
        for table in sorted(named_tables(text)):
            readers.setdefault(table, []).append(view)
    return readers


def format_dictionary(tables: Sequence[Table]) -> str:
    """The dictionary as Markdown."""
    lines = [
        "# Data dictionary",
        "",
        "Generated from `sql/` by `python -m etl.dictionary`; edit the `COMMENT ON` statements there, not this file.",
        "PostgreSQL carries the same words in its catalogue (`\\d+ <table>` in psql). All times are UTC.",
        "",
    ]
    for area, about in DESCRIBED_AREAS.items():
        lines += [f"## {area}", "", about, ""]
        for table in (table for table in tables if table.area == area):
            lines += [f"### `{table.name}`", "", table.meaning or "", ""]
            lines.append(f"Written by {table.written_by}.")
            if table.read_by_views:
                lines.append("Read by the views " + ", ".join(f"`{view}`" for view in table.read_by_views) + ".")
            lines += ["", "| column | type | null | meaning |", "|---|---|---|---|"]
            lines += [
                f"| `{column.name}` | {column.sql_type} | {'yes' if column.nullable else 'no'} | {column.meaning or ''} |"
                for column in table.columns
            ]
            lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m etl.dictionary", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=DICTIONARY_PATH)
    parser.add_argument("--check", action="store_true", help="compare with the file instead of writing it")
    args = parser.parse_args(argv)
    text = format_dictionary(read_tables())
    if args.check:
        if not args.output.is_file() or args.output.read_text() != text:
            print(f"{args.output} is not what sql/ says: run python -m etl.dictionary", file=sys.stderr)
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
