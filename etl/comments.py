"""What every table and column means, kept next to its DDL in ``sql/`` as ``COMMENT ON`` statements,
so that PostgreSQL's catalogue carries it (``\\d+ score_user_item`` in psql, any BI tool's column
descriptions) and ``docs/data_dictionary.md`` is generated from the same words (``etl.dictionary``).

SQLite has no ``COMMENT ON``: there the statements are skipped. On PostgreSQL a comment is written
only when the catalogue's differs, so the many ``create_tables`` calls of a night do not rewrite the
catalogue each time.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

COMMENT_STATEMENT = re.compile(
    r"^COMMENT ON (?P<kind>TABLE|COLUMN) (?P<table>[a-z_]+)(?:\.(?P<column>[a-z_]+))? IS '(?P<text>(?:[^']|'')*)'$",
    re.DOTALL,
)


@dataclass(frozen=True)
class Comment:
    """The meaning of ``table`` (``column`` None) or of one of its columns."""

    table: str
    column: str | None
    text: str


def parse_comment(statement: str) -> Comment | None:
    """The comment a ``COMMENT ON TABLE|COLUMN ... IS '...'`` statement sets; None for other statements."""
    match = COMMENT_STATEMENT.match(statement.strip())
    if match is None:
        if statement.lstrip().upper().startswith("COMMENT ON"):
            raise ValueError(f"a COMMENT statement of an unexpected form (a plain table or table.column, one quoted text): {statement!r}")
        return None
    return Comment(match["table"], match["column"], match["text"].replace("''", "'"))


def apply_comments(conn: Connection, statements: Iterable[str]) -> int:
    """Run the ``COMMENT ON`` statements whose text differs from the catalogue's (PostgreSQL; none on
    SQLite); returns how many were written."""
    if conn.dialect.name == "sqlite":
        return 0
    written = 0
    known: dict[str, dict[str | None, str | None]] = {}
    for statement in statements:
        comment = parse_comment(statement)
        if comment is None:
            continue
        if comment.table not in known:
            known[comment.table] = catalogue_comments(conn, comment.table)
        if known[comment.table].get(comment.column) != comment.text:
            # Sent as written, without bind parameters: a % in a text is not a placeholder.
            conn.connection.driver_connection.execute(statement)
            written += 1
    return written


def catalogue_comments(conn: Connection, table: str) -> dict[str | None, str | None]:
    """{column: its comment, None: the table's comment} as PostgreSQL has them now."""
    rows = conn.execute(
        sa.text(
            "SELECT a.attname, col_description(a.attrelid, a.attnum) FROM pg_attribute a "
            "WHERE a.attrelid = to_regclass(:table) AND a.attnum > 0 AND NOT a.attisdropped"
        ),
        {"table": table},
    ).all()
    comments: dict[str | None, str | None] = {name: text for name, text in rows}
    comments[None] = conn.execute(sa.text("SELECT obj_description(to_regclass(:table), 'pg_class')"), {"table": table}).scalar()
    return comments


__all__ = ["Comment", "apply_comments", "catalogue_comments", "parse_comment"]
