"""Every path of a run, in one place: where each stage writes and the next one reads.

    $SHOPMTL_HOME/
      warehouse.db                         the embedded SQLite warehouse (no Airflow connection)
      partitions/<warehouse>/<table>/<day>.parquet
                                           extract: one day of an event source (etl.extract.extract_partitions)
      partitions/<warehouse>/features/impressions/<version>/<day>.parquet
                                           build_features: one settled day of impression examples (etl.impression_days)
      runs/<D>/                            one directory per day D, so concurrent days share no file
        extract/<source table>.parquet     extract: the training window's rows of each source
        data_docs/index.html               validate: Great Expectations data docs
        features/<table>.parquet           build_features: orders, candidates, reviews, items
        features/impressions.parquet/<day>.parquet
                                           build_features: the window's impressions, one file per day (a
                                           Parquet dataset folder; a settled day is a hard link to its kept file)
        features/manifest.json             build_features: day, feature columns, objectives available
        models/<model name>/               train_<model>: weights, config.json, metrics.json, predictions/
        models/<model name>_champion/      gate_<model>: the champion's predictions when it keeps scoring
        report.html, report/*.png          report: the run report and its plots

Stages take these directories as arguments; the helpers here only name files inside them.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

from etl.contract import FRAUD_LGBM, MULTITASK

WAREHOUSE_FILE = "warehouse.db"
RUNS_DIR = "runs"
PARTITIONS_DIR = "partitions"  # under SHOPMTL_HOME, one folder per warehouse, shared by every night (Settings.partitions_dir)

FEATURE_TABLES = ("impressions", "orders", "reviews", "items", "candidates")
MANIFEST_FILE = "manifest.json"

# Inside a model directory.
WEIGHTS_FILES = {MULTITASK: "model.pt", FRAUD_LGBM: "model.txt"}  # which file tells a model's kind
CONFIG_FILE = "config.json"  # enough to rebuild the model (never pickle)
METRICS_FILE = "metrics.json"
PREDICTIONS_DIR = "predictions"
# Prediction files (predictions/<name>.parquet): the network writes all five, LightGBM ``orders``.
PREDICTIONS = ("impressions_eval", "candidates", "orders", "reviews", "items")

DATA_DOCS_INDEX = "index.html"  # the page Great Expectations builds at the top of the data docs
REPORT_FILE = "report.html"
REPORT_PLOTS_DIR = "report"  # next to report.html; its image links are relative to the run directory
CHAMPION_SUFFIX = "_champion"
ITEM_TABLES_DIR = "item_tables"  # under a features directory: its items decoded once for training and scoring


def extract_path(extract_dir: Path, table: str) -> Path:
    """The extract of one source table."""
    return Path(extract_dir) / f"{table}.parquet"


def partition_path(partitions_dir: Path, table: str, day: date) -> Path:
    """The partition of day ``day`` of an event source: its rows of [day, day + 1)."""
    return Path(partitions_dir) / table / f"{day.isoformat()}.parquet"


def partition_paths(partitions_dir: Path, table: str, days: list[date]) -> list[Path]:
    """The partitions of ``days`` of an event source, present or not (what a worker pulls)."""
    return [partition_path(partitions_dir, table, day) for day in days]


def impression_partition_path(partitions_dir: Path, version: str, day: date) -> Path:
    """The kept impression examples of settled day ``day``, built by feature code and settings ``version``."""
    return Path(partitions_dir) / "features" / "impressions" / version / f"{day.isoformat()}.parquet"


def feature_path(features_dir: Path, table: str) -> Path:
    """One features table (``FEATURE_TABLES``): a Parquet file, or for the impressions a folder of one
    file per day (``parquet_files`` lists either)."""
    if table not in FEATURE_TABLES:
        raise ValueError(f"unknown features table {table!r}; known: {list(FEATURE_TABLES)}")
    return Path(features_dir) / f"{table}.parquet"


def day_file_path(dataset_dir: Path, day: date) -> Path:
    """One day's file in a Parquet dataset folder (the features' impressions)."""
    return Path(dataset_dir) / f"{day.isoformat()}.parquet"


def parquet_files(path: Path) -> list[Path]:
    """The Parquet files of ``path``: itself when a file, its ``*.parquet`` files in name order (days in
    order) when a folder, none when it does not exist."""
    path = Path(path)
    if path.is_dir():
        return sorted(path.glob("*.parquet"))
    return [path] if path.exists() else []


def manifest_path(features_dir: Path) -> Path:
    return Path(features_dir) / MANIFEST_FILE


def item_table_path(features_dir: Path, key: str) -> Path:
    """A features directory's decoded item table for one encoding (``key``: a digest of items and encoding)."""
    return Path(features_dir) / ITEM_TABLES_DIR / f"{key}.pt"


def feature_input_paths(features_dir: Path) -> list[Path]:
    """The features files that exist, tables then manifest, in a fixed order (hashed into model versions)."""
    tables = [path for table in FEATURE_TABLES for path in parquet_files(feature_path(features_dir, table))]
    manifest = manifest_path(features_dir)
    return tables + ([manifest] if manifest.exists() else [])


def prediction_path(model_dir: Path, name: str) -> Path:
    """One prediction file of a model directory (``PREDICTIONS``)."""
    if name not in PREDICTIONS:
        raise ValueError(f"unknown prediction file {name!r}; known: {list(PREDICTIONS)}")
    return Path(model_dir) / PREDICTIONS_DIR / f"{name}.parquet"


def weights_path(model_dir: Path, model_name: str) -> Path:
    return Path(model_dir) / WEIGHTS_FILES[model_name]


def saved_model_name(model_dir: Path) -> str | None:
    """Which model a directory holds (its weights file next to ``config.json``), or None."""
    model_dir = Path(model_dir)
    if not (model_dir / CONFIG_FILE).is_file():
        return None
    return next((name for name, file in WEIGHTS_FILES.items() if (model_dir / file).is_file()), None)


@dataclass(frozen=True)
class RunLayout:
    """The directories of the run for one day."""

    run_dir: Path

    @property
    def extract_dir(self) -> Path:
        return self.run_dir / "extract"

    @property
    def features_dir(self) -> Path:
        return self.run_dir / "features"

    @property
    def data_docs_dir(self) -> Path:
        return self.run_dir / "data_docs"

    @property
    def models_dir(self) -> Path:
        return self.run_dir / "models"

    def model_dir(self, model_name: str) -> Path:
        """The night's ``model_name``: the nightly DAG trains each version into its own directory
        beside this one (``training.summary.version_dir``) and makes this a link to the latest."""
        return self.models_dir / model_name

    def champion_dir(self, model_name: str) -> Path:
        """Where the champion of ``model_name`` scores the day when the night's model is rejected."""
        return self.models_dir / f"{model_name}{CHAMPION_SUFFIX}"

    @property
    def report_path(self) -> Path:
        return self.run_dir / REPORT_FILE

    @property
    def plots_dir(self) -> Path:
        return self.run_dir / REPORT_PLOTS_DIR
