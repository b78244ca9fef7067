"""What a training run returns (small and JSON-able, fit for an Airflow XCom) and how a model version is named."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any


def compute_model_version(model_name: str, ds: date, config_json: str, input_paths: Iterable[Path]) -> str:
    """``{model_name}-{YYYYMMDD}-{hash}``: the hash covers the config and the bytes of every input file."""
    return f"{model_name}-{ds:%Y%m%d}-{digest_inputs(config_json, input_paths)[:10]}"


def version_dir(output_dir: Path, model_version: str) -> Path:
    """Where a version trained for ``output_dir`` is kept, beside it: ``<parent>/<model_version>``.
    The registry records a model by its directory, so no other version may ever write there: a re-run
    of a day on corrected data trains another version, and must not overwrite the one that serves."""
    return Path(output_dir).parent / model_version


def digest_inputs(text: str, input_paths: Iterable[Path]) -> str:
    """sha256 (hex) of ``text`` and the bytes of every file in ``input_paths``."""
    # Files are hashed in the order given, by name and bytes only: the same inputs in another
    # directory (another checkout, another run folder) give the same digest.
    digest = hashlib.sha256(text.encode())
    for path in map(Path, input_paths):
        digest.update(f"{path.name}\0{path.stat().st_size}\0".encode())  # unambiguous file boundaries
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


@dataclass
class TrainingSummary:
    """A trained (or scoring) model: its name, version, directory and day-D metric rows."""

    model_name: str
    model_version: str
    output_dir: Path
    metrics: list[dict[str, Any]] = field(default_factory=list)  # rows {task, metric, value, n_rows}
    # The same over each impression scenario's rows alone (click and purchase): rows {..., scenario}.
    # Reported (model_runs), never gated: a thin scenario's day holds too few positives to decide on.
    scenario_metrics: list[dict[str, Any]] = field(default_factory=list)
    device: str = "cpu"
    n_train: dict[str, int] = field(default_factory=dict)  # training rows per objective
    wall_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only (paths as strings, NaN as None)."""
        summary = asdict(self)
        summary["output_dir"] = str(self.output_dir)
        for key in ("metrics", "scenario_metrics"):
            summary[key] = [
                {**row, "value": None if row["value"] is None or math.isnan(row["value"]) else row["value"]}
                for row in getattr(self, key)
            ]
        summary["wall_s"] = round(self.wall_s, 3)
        return summary

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainingSummary:
        """The inverse of ``to_dict`` (an XCom back into a summary); keys it does not know are ignored."""
        return cls(
            model_name=str(values["model_name"]),
            model_version=str(values["model_version"]),
            output_dir=Path(str(values["output_dir"])),
            metrics=[dict(row) for row in values.get("metrics", [])],
            scenario_metrics=[dict(row) for row in values.get("scenario_metrics", [])],
            device=str(values.get("device", "cpu")),
            n_train=dict(values.get("n_train", {})),
            wall_s=float(values.get("wall_s", 0.0)),
        )

    def metric(self, task: str, metric: str) -> float | None:
        """The value of one metric row, or None when absent."""
        for row in self.metrics:
            if row["task"] == task and row["metric"] == metric:
                return row["value"]
        return None
