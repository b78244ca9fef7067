"""Settings: the one place that reads the environment, and the feature builder's typed settings.

``SHOPMTL_HOME`` (default ``~/.shopmtl``) holds the embedded warehouse (``warehouse.db``), the daily
partitions of the event sources (``partitions/<warehouse>/<table>/<d>.parquet``) and the run directories
(``runs/<D>/``, whose files ``etl.layout`` names; the models are trained there). Environment
variables: ``SHOPMTL_HOME``, ``SHOPMTL_ARTIFACTS_URL``, ``SHOPMTL_SOURCES``, ``SHOPMTL_TRAINING_QUEUE``,
``SHOPMTL_TRAIN_PROCS``, ``SHOPMTL_BENCH_POSTGRES_URL``, ``SHOPMTL_MONEY_CEILING``.
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from etl.contract import SOURCE_TABLES, WAREHOUSE_CONN_ID
from etl.layout import PARTITIONS_DIR, RUNS_DIR, WAREHOUSE_FILE

log = logging.getLogger(__name__)

DEFAULT_HOME = Path("~/.shopmtl")
DEFAULT_BENCH_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_MONEY_CEILING = 1e7


@dataclass(frozen=True)
class Settings:
    """Where shopmtl keeps its files; everything else is passed explicitly."""

    home: Path
    # The warehouse sources this deployment has (SHOPMTL_SOURCES, comma separated; default: all).
    sources: tuple[str, ...] = SOURCE_TABLES
    # The Airflow (Celery) queue the training tasks run on (SHOPMTL_TRAINING_QUEUE, e.g. "gpu" for the
    # docker-compose gpu worker); None keeps Airflow's default queue.
    training_queue: str | None = None
    # The PostgreSQL server `make bench` creates its warehouses on (SHOPMTL_BENCH_POSTGRES_URL; its
    # databases are named shopmtl_bench_* and dropped after).
    bench_postgres_url: str = DEFAULT_BENCH_POSTGRES_URL
    # Prices and amounts at or above this fail validation (SHOPMTL_MONEY_CEILING; the shop's currency
    # units). 10 million by default: raise it for a shop that sells houses.
    money_ceiling: float = DEFAULT_MONEY_CEILING
    # Where the run artifacts live (SHOPMTL_ARTIFACTS_URL: any fsspec URL, e.g. s3://bucket/shopmtl);
    # None keeps them in ``home`` itself. With a URL, ``home`` is each worker's local working copy and
    # every task pulls what it reads and pushes what it wrote (etl.artifacts).
    artifacts_url: str | None = None
    # Processes train_multitask trains on (SHOPMTL_TRAIN_PROCS): above 1, torchrun launches that many
    # DistributedDataParallel workers (NCCL on GPUs, gloo on CPUs).
    train_procs: int = 1

    @property
    def embedded_warehouse_url(self) -> str:
        return f"sqlite:///{self.home / WAREHOUSE_FILE}"

    def partitions_dir(self, warehouse_url: str) -> Path:
        """The daily partitions of one warehouse's event sources, shared by every night
        (``etl.extract.extract_partitions``). One folder per warehouse (a digest of its URL without
        the password), so a deployment that points at another warehouse never reuses the first one's days."""
        from etl.warehouse import mask_url  # SQLAlchemy: imported only when a task runs, not at DAG parse time

        return self.home / PARTITIONS_DIR / hashlib.sha256(mask_url(warehouse_url).encode()).hexdigest()[:16]

    @property
    def runs_dir(self) -> Path:
        return self.home / RUNS_DIR

    def run_dir(self, ds: date) -> Path:
        """Artifacts of the run for day ``ds``; one directory per day so concurrent days never share files."""
        return self.runs_dir / ds.isoformat()


@dataclass(frozen=True)
class FeatureConfig:
    """Label, split and candidate settings of ``etl.build_features.build_features``; the window itself is decided
    by the extract. The DAG's Params ``maturity_days`` and ``fraud_eval_days`` set the first two."""

    maturity_days: int = 14  # an unlabelled order counts as legitimate once this old
    fraud_eval_days: int = 3  # newest mature days held out to evaluate fraud models
    click_hours: int = 24  # an impression is clicked when a click on it in the same session follows within this many hours
    conversion_hours: int = 24  # a click converts when the user orders the item within this many hours
    top_categories_per_user: int = 3  # candidate categories per user, by the user's clicks in the window
    items_per_category: int = 30  # most popular items per candidate category
    popular_items: int = 30  # globally most popular items every active user gets as candidates
    review_eval_days: int = 1  # newest days of reviews held out to evaluate sentiment (1 = day D only)
    # The behaviour sequence of every impression and candidate (etl.sequences): the user's newest
    # clicks before it, within the feature history. 20 covers the demo's users whole (median ~3 clicks
    # in 28 days); the network reads the first NetworkConfig.history_length of them.
    recent_clicks: int = 20

    @property
    def label_days(self) -> int:
        """Days after an impression's day by whose end its labels are final (at least 1): a click within
        ``click_hours`` of the impression, then an order within ``conversion_hours`` of the click."""
        return max(1, math.ceil((self.click_hours + self.conversion_hours) / 24))


def load_settings() -> Settings:
    """Read ``SHOPMTL_HOME``, ``SHOPMTL_ARTIFACTS_URL``, ``SHOPMTL_SOURCES``, ``SHOPMTL_TRAINING_QUEUE``,
    ``SHOPMTL_TRAIN_PROCS``, ``SHOPMTL_BENCH_POSTGRES_URL`` and ``SHOPMTL_MONEY_CEILING`` (or their
    defaults) into Settings."""
    home = Path(os.environ.get("SHOPMTL_HOME") or DEFAULT_HOME).expanduser().resolve()
    return Settings(
        home=home,
        sources=parse_sources(os.environ.get("SHOPMTL_SOURCES")),
        training_queue=os.environ.get("SHOPMTL_TRAINING_QUEUE") or None,
        bench_postgres_url=os.environ.get("SHOPMTL_BENCH_POSTGRES_URL") or DEFAULT_BENCH_POSTGRES_URL,
        money_ceiling=parse_money_ceiling(os.environ.get("SHOPMTL_MONEY_CEILING")),
        artifacts_url=(os.environ.get("SHOPMTL_ARTIFACTS_URL") or "").strip() or None,
        train_procs=parse_train_procs(os.environ.get("SHOPMTL_TRAIN_PROCS")),
    )


def parse_train_procs(value: str | None) -> int:
    """A whole number of processes, at least 1 (default 1)."""
    if not value or not value.strip():
        return 1
    try:
        procs = int(value)
    except ValueError:
        raise ValueError(f"SHOPMTL_TRAIN_PROCS must be a whole number, got {value!r}") from None
    if procs < 1:
        raise ValueError(f"SHOPMTL_TRAIN_PROCS must be at least 1, got {value!r}")
    return procs


def parse_money_ceiling(value: str | None) -> float:
    """A positive finite number (a bad setting is an error at once, not a silently open rule)."""
    if not value or not value.strip():
        return DEFAULT_MONEY_CEILING
    try:
        ceiling = float(value)
    except ValueError:
        raise ValueError(f"SHOPMTL_MONEY_CEILING must be a number, got {value!r}") from None
    if not math.isfinite(ceiling) or ceiling <= 0:
        raise ValueError(f"SHOPMTL_MONEY_CEILING must be positive and finite, got {value!r}")
    return ceiling


def parse_sources(value: str | None) -> tuple[str, ...]:
    """Configured source tables, in contract order; unknown names are an error, not a silent skip."""
    if not value or not value.strip():
        return SOURCE_TABLES
    names = {name.strip() for name in value.split(",") if name.strip()}
    unknown = names - set(SOURCE_TABLES)
    if unknown:
        raise ValueError(f"SHOPMTL_SOURCES names unknown sources {sorted(unknown)}; known: {list(SOURCE_TABLES)}")
    return tuple(table for table in SOURCE_TABLES if table in names)


def resolve_warehouse_url(conn_id: str = WAREHOUSE_CONN_ID) -> str:
    """The warehouse URL from the Airflow connection ``conn_id``, else the embedded SQLite default.

    Called inside Airflow tasks only (never at DAG parse time). The URL may carry a password: never
    log it unmasked (use ``etl.warehouse.mask_url``).
    """
    # Airflow is needed only when a task really runs, never at import time.
    from airflow.sdk import Connection
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        connection = Connection.get(conn_id)
    except AirflowNotFoundException:
        url = load_settings().embedded_warehouse_url
        log.info("Airflow connection %r is not defined: using the embedded warehouse %s", conn_id, url)
        return url
    return connection_to_url(
        conn_type=connection.conn_type,
        host=connection.host,
        login=connection.login,
        password=connection.password,
        port=connection.port,
        schema=connection.schema,
    )


def connection_to_url(
    conn_type: str | None,
    host: str | None,
    login: str | None,
    password: str | None,
    port: int | None,
    schema: str | None,
) -> str:
    """Turn Airflow connection fields into a SQLAlchemy URL string (psycopg 3 for PostgreSQL)."""
    from sqlalchemy.engine import URL

    kind = (conn_type or "").lower().split("+", 1)[0]  # "postgresql+psycopg" -> "postgresql"
    if kind in {"postgres", "postgresql"}:
        url = URL.create(
            "postgresql+psycopg", username=login, password=password, host=host, port=port, database=schema
        )
        return url.render_as_string(hide_password=False)
    if kind == "sqlite":
        # AIRFLOW_CONN_X=sqlite:////abs/path.db arrives as host="/abs/path.db"
        path = "/".join(part for part in (host, schema) if part) or ":memory:"
        return f"sqlite:///{path}"
    raise ValueError(f"Unsupported warehouse connection type {conn_type!r}: use postgres or sqlite")
