"""Atomic file writes: write to a temporary name in the same directory, then rename.

A reader (the next task, a concurrent night's gate loading a champion, an analyst's report) sees the
old file or the new one, never half of one, and a task killed mid-write leaves no partial file.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl


def write_atomically(path: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(temporary path)``, then rename it to ``path`` (same directory, so the rename is atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The pid keeps two processes writing the same file (a retry beside a zombie) off each other's temp file.
    tmp_path = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp_path)
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)
    return path


# Files a later task of the same night reads once and the next night replaces (extracts' window
# files, features): LZ4 writes them in 0.57x the time of Parquet's usual zstd and reads them in 0.66x,
# for 1.7x the bytes (impressions at 10x the demo). Kept files (daily partitions) stay zstd.
SCRATCH_COMPRESSION = "lz4"


def write_parquet_atomically(frame: pl.DataFrame, path: Path, compression: str = "zstd") -> Path:
    return write_atomically(path, lambda tmp: frame.write_parquet(tmp, compression=compression))


def write_text_atomically(path: Path, text: str) -> Path:
    """UTF-8 text, whatever the locale."""
    return write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json_atomically(path: Path, payload: Any, sort_keys: bool = True) -> Path:
    """Strict JSON (NaN is an error), indented, with a final newline."""
    text = json.dumps(payload, indent=2, sort_keys=sort_keys, allow_nan=False) + "\n"
    return write_text_atomically(path, text)


def point_link(link: Path, target: Path) -> Path:
    """Make ``link`` a symbolic link to ``target`` (relative, so the folder can move), switched
    atomically: a reader follows the old target or the new one. A real directory already at ``link``
    (written by an older release) is left as it is, and the link is not made."""
    link, target = Path(link), Path(target)
    if link.is_dir() and not link.is_symlink():
        return link
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp_link = link.with_name(f".{link.name}.{os.getpid()}.link")
    tmp_link.unlink(missing_ok=True)
    os.symlink(os.path.relpath(target, link.parent), tmp_link)
    try:
        os.replace(tmp_link, link)
    finally:
        tmp_link.unlink(missing_ok=True)
    return link
