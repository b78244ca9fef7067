"""Validate what one night brings, record the results, and stop the run on a critical failure.

``validate_extracts`` checks each table of ``{extract_dir}/{table}.parquet`` (``etl.layout.extract_path``)
with the rules of ``validation.suites``, each where it is cheapest and on the rows it concerns:

1. the table's GX day suite on tonight's rows only (``validation.day_rows``: day D, read with
   pyarrow filters), in an ephemeral GX context (pandas data source): earlier days of the window were
   validated on their own nights, so the cost follows day D, not the window or the catalogue;
2. the whole-window key uniqueness and row counts (``validation.window_checks``, Polars on the key
   columns);
3. the referential checks in the warehouse (``validation.references``, SQL anti-joins on indexed keys).

It then builds the GX data docs (the day suites) into ``docs_dir``, replaces the run's rows in
``data_quality_results`` (one row per rule, ``validation.results``) and finally raises
``DataQualityError`` when a critical rule failed.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

# GX logs ~25 INFO lines while it imports; keep task logs readable unless GX logging is configured.
if logging.getLogger("great_expectations").level == logging.NOTSET:
    logging.getLogger("great_expectations").setLevel(logging.WARNING)

import great_expectations as gx  # noqa: E402
import pandas as pd  # noqa: E402
from great_expectations.core.run_identifier import RunIdentifier  # noqa: E402
from great_expectations.data_context import EphemeralDataContext  # noqa: E402
from great_expectations.data_context.types.base import (  # noqa: E402
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)
from great_expectations.datasource.fluent import PandasDatasource  # noqa: E402

from etl.contract import SOURCE_TABLES  # noqa: E402
from etl.layout import DATA_DOCS_INDEX, extract_path  # noqa: E402
from validation.day_rows import ExtractReadError, read_day_rows  # noqa: E402
from validation.image_checks import check_images  # noqa: E402
from validation.references import check_references  # noqa: E402
from validation.results import RESULTS_TABLE, ExpectationOutcome, outcome_from_result, write_results  # noqa: E402
from validation.suites import ValidationLimits, ValidationWindow, build_suite  # noqa: E402
from validation.window_checks import check_window  # noqa: E402

log = logging.getLogger(__name__)

DATASOURCE_NAME = "extracts"
DOCS_SITE_NAME = "shopmtl"
# SUMMARY gives counts and up to 20 unexpected values, enough for samples without copying data.
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 20}


class DataQualityError(Exception):
    """Extracts broke a critical expectation (or are missing); the message lists every failure."""

    def __init__(self, message: str, failures: Sequence[ExpectationOutcome] = ()) -> None:
        super().__init__(message)
        self.failures = list(failures)


@dataclass
class TableCounts:
    """Validation counts of one extract: its window rows, tonight's rows (validated by the day suite)."""

    n_rows: int
    n_day_rows: int
    n_expectations: int
    n_failed: int
    n_critical_failed: int


@dataclass
class ValidationSummary:
    """What one validation run found; ``to_dict`` is small and JSON-safe for XCom."""

    ds: date
    run_id: str
    n_expectations: int
    n_failed: int
    n_critical_failed: int
    docs_index_path: str | None
    tables: dict[str, TableCounts] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (dates as ISO text)."""
        data = asdict(self)
        data["ds"] = self.ds.isoformat()
        return data


def validate_extracts(
    extract_dir: Path,
    docs_dir: Path,
    warehouse_url: str,
    ds: date,
    run_id: str,
    window_start: datetime,
    window_end: datetime,
    tables: Sequence[str] = SOURCE_TABLES,
    limits: ValidationLimits = ValidationLimits(),
) -> ValidationSummary:
    """Validate the extracts of ``tables``, build data docs, record results; raise on critical failures.
    ``limits``: the deployment's bounds of the rules (the money ceiling)."""
    extract_dir, docs_dir = Path(extract_dir), Path(docs_dir)
    ds = date(ds.year, ds.month, ds.day)  # a plain date, also when Airflow hands over a pendulum one
    tables = list(dict.fromkeys(tables))
    unknown = [table for table in tables if table not in SOURCE_TABLES]
    if unknown:
        raise ValueError(f"Unknown source tables {unknown}; expected some of {list(SOURCE_TABLES)}")
    window = ValidationWindow(
        window_start=to_naive_utc(window_start),
        window_end=to_naive_utc(window_end),
        day_start=datetime.combine(ds, time.min),
    )
    require_extract_files(extract_dir, tables)

    context = create_context(docs_dir)
    datasource = context.data_sources.add_pandas(DATASOURCE_NAME)
    gx_run_id = make_gx_run_id(run_id)
    outcomes: list[ExpectationOutcome] = []
    counts: dict[str, TableCounts] = {}
    references = check_references(warehouse_url, tables, window)
    for table in tables:
        try:
            frame = read_day_rows(extract_dir, table, window)
            n_rows, window_outcomes = check_window(extract_dir, table)
        except ExtractReadError as error:
            raise DataQualityError(str(error)) from error
        table_outcomes = validate_table(context, datasource, table, frame, window, gx_run_id, limits)
        if table == "item_images":
            table_outcomes.append(check_images(frame))
        table_outcomes += window_outcomes + [outcome for outcome in references if outcome.table == table]
        outcomes.extend(table_outcomes)
        counts[table] = count_outcomes(n_rows, len(frame), table_outcomes)
        log_table_summary(table, counts[table])

    docs_index_path = build_docs(context, docs_dir)
    write_results(warehouse_url, ds, run_id, outcomes)
    summary = summarize(ds, run_id, outcomes, counts, docs_index_path)
    raise_for_failures(outcomes, summary)
    return summary


def summarize(
    ds: date,
    run_id: str,
    outcomes: Sequence[ExpectationOutcome],
    counts: dict[str, TableCounts],
    docs_index_path: Path | None,
) -> ValidationSummary:
    """The run's ValidationSummary."""
    return ValidationSummary(
        ds=ds,
        run_id=run_id,
        **tally_outcomes(outcomes),
        docs_index_path=str(docs_index_path) if docs_index_path else None,
        tables=counts,
    )


def raise_for_failures(outcomes: Sequence[ExpectationOutcome], summary: ValidationSummary) -> None:
    """Log non-critical failures as warnings; raise DataQualityError listing every critical one."""
    for outcome in outcomes:
        if not outcome.success and not outcome.critical:
            log.warning("Data quality warning: %s", outcome.describe())
    failures = [outcome for outcome in outcomes if not outcome.success and outcome.critical]
    if failures:
        raise DataQualityError(format_failures(failures, summary), failures)
    log.info(
        "Data quality passed for ds=%s run_id=%s: %d expectations, %d warnings; data docs: %s",
        summary.ds, summary.run_id, summary.n_expectations, summary.n_failed, summary.docs_index_path,
    )


def to_naive_utc(value: datetime) -> datetime:
    """A plain naive-UTC datetime, the warehouse convention (aware values, e.g. pendulum, converted)."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return datetime(
        value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond
    )


def require_extract_files(extract_dir: Path, tables: Sequence[str]) -> None:
    """Fail clearly when an extract to validate, or one needed to find tonight's rows, is missing."""
    # order lines have no time of their own: the orders extract says which lines are of day D
    needed = list(tables) + (["orders"] if "order_items" in tables and "orders" not in tables else [])
    missing = [table for table in needed if not extract_path(extract_dir, table).is_file()]
    if missing:
        listed = ", ".join(f"{table} ({extract_path(extract_dir, table)})" for table in missing)
        raise DataQualityError(
            f"Missing extract file(s) for table(s): {listed}. The extract step must write one Parquet "
            f"file per source table before validation (order_items needs orders to find day D's lines)."
        )


def create_context(docs_dir: Path) -> EphemeralDataContext:
    """An in-memory GX context whose only data docs site is ``docs_dir``, with progress bars off."""
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        data_docs_sites={
            DOCS_SITE_NAME: {
                "class_name": "SiteBuilder",
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder", "show_cta_footer": False},
            }
        },
        # GX draws tqdm bars on stderr for every metric graph; they only clutter task logs.
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
        analytics_enabled=False,
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def make_gx_run_id(run_id: str) -> RunIdentifier:
    """A GX RunIdentifier named after our run, so data docs pages name the Airflow run."""
    return RunIdentifier(run_name=run_id, run_time=datetime.now(UTC))


def validate_table(
    context: EphemeralDataContext,
    datasource: PandasDatasource,
    table: str,
    frame: pd.DataFrame,
    window: ValidationWindow,
    gx_run_id: RunIdentifier,
    limits: ValidationLimits = ValidationLimits(),
) -> list[ExpectationOutcome]:
    """Run ``table``'s day suite on tonight's rows and turn every expectation result into an outcome."""
    suite = context.suites.add(build_suite(table, window, limits))
    batch_definition = datasource.add_dataframe_asset(table).add_batch_definition_whole_dataframe(table)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{table}_day", data=batch_definition, suite=suite)
    )
    result = definition.run(
        batch_parameters={"dataframe": frame},
        result_format=RESULT_FORMAT,
        run_id=gx_run_id,
    )
    return [outcome_from_result(table, item, len(frame)) for item in result.results]


def count_outcomes(n_rows: int, n_day_rows: int, outcomes: Sequence[ExpectationOutcome]) -> TableCounts:
    """Counts of one table's outcomes."""
    return TableCounts(n_rows=n_rows, n_day_rows=n_day_rows, **tally_outcomes(outcomes))


def tally_outcomes(outcomes: Sequence[ExpectationOutcome]) -> dict[str, int]:
    """Expectations, failures and critical failures among ``outcomes`` (of one table or of the run)."""
    return {
        "n_expectations": len(outcomes),
        "n_failed": sum(not outcome.success for outcome in outcomes),
        "n_critical_failed": sum(not outcome.success and outcome.critical for outcome in outcomes),
    }


def log_table_summary(table: str, counts: TableCounts) -> None:
    """One line per table."""
    log.log(
        logging.ERROR if counts.n_critical_failed else logging.WARNING if counts.n_failed else logging.INFO,
        "Data quality %s: %d rows of day D (%d in the window), %d expectations, %d failed (%d critical)",
        table, counts.n_day_rows, counts.n_rows, counts.n_expectations, counts.n_failed, counts.n_critical_failed,
    )


def build_docs(context: EphemeralDataContext, docs_dir: Path) -> Path | None:
    """Render the GX data docs site into ``docs_dir``; a rendering problem must not hide the results."""
    try:
        context.build_data_docs(site_names=[DOCS_SITE_NAME])
    except Exception:
        log.exception("Building the GX data docs in %s failed; the results are still recorded", docs_dir)
        return None
    index = docs_dir / DATA_DOCS_INDEX
    log.info("GX data docs: %s", index)
    return index


def format_failures(failures: Sequence[ExpectationOutcome], summary: ValidationSummary) -> str:
    """The DataQualityError message: every failed critical expectation, then where to look."""
    lines = [
        f"Data quality check failed for ds={summary.ds.isoformat()} run_id={summary.run_id}: "
        f"{len(failures)} critical expectation(s) failed:"
    ]
    lines += [f"  - {failure.describe()}" for failure in failures]
    lines.append(
        f"See table {RESULTS_TABLE} (ds={summary.ds.isoformat()}, run_id={summary.run_id}) "
        f"and the GX data docs at {summary.docs_index_path or '(data docs were not built)'}."
    )
    return "\n".join(lines)


__all__ = ["DataQualityError", "TableCounts", "ValidationSummary", "validate_extracts"]
