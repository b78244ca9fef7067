"""Validate the Parquet extracts of one run with Great Expectations and record the results.

``validate_extracts`` runs the suites of ``validation.suites`` on ``{extract_dir}/{table}.parquet``
with an ephemeral GX context (pandas data source), builds the GX data docs into ``docs_dir``,
replaces the run's rows in ``data_quality_results`` (one row per expectation) and finally raises
``DataQualityError`` when a critical expectation failed.
"""
from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

# GX logs ~25 INFO lines while it imports; keep task logs readable unless GX logging is configured.
if logging.getLogger("great_expectations").level == logging.NOTSET:
    logging.getLogger("great_expectations").setLevel(logging.WARNING)

import great_expectations as gx  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402
import polars as pl  # noqa: E402
from great_expectations.core.expectation_validation_result import ExpectationValidationResult  # noqa: E402
from great_expectations.core.run_identifier import RunIdentifier  # noqa: E402
from great_expectations.data_context import EphemeralDataContext  # noqa: E402
from great_expectations.data_context.types.base import (  # noqa: E402
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)
from great_expectations.datasource.fluent import PandasDatasource  # noqa: E402

from etl.warehouse import (  # noqa: E402
    SOURCE_TABLES,
    TABLE_SCHEMAS,
    create_tables,
    create_warehouse_engine,
    replace_rows,
)
from validation.suites import REFERENCE_CHECKS, ValidationWindow, build_suite, is_critical  # noqa: E402

log = logging.getLogger(__name__)

RESULTS_TABLE = "data_quality_results"
DATASOURCE_NAME = "extracts"
DOCS_SITE_NAME = "shopmtl"
SAMPLE_SIZE = 5
# SUMMARY gives counts and up to 20 unexpected values, enough for samples without copying data.
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 20}
MAX_LISTED_VALUES = 20
MAX_TEXT_CHARS = 2000


class DataQualityError(Exception):
    """Extracts broke a critical expectation (or are missing); the message lists every failure."""

    def __init__(self, message: str, failures: Sequence[ExpectationOutcome] = ()) -> None:
        super().__init__(message)
        self.failures = list(failures)


@dataclass
class TableCounts:
    """Validation counts of one extract."""

    n_rows: int
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


@dataclass(frozen=True)
class ExpectationOutcome:
    """One expectation's result on one extract: a row of data_quality_results."""

    table: str
    column: str | None
    expectation: str
    critical: bool
    success: bool
    element_count: int | None
    unexpected_count: int | None
    sample_values: list[Any]
    observed_value: Any
    expected: str
    scope: str | None
    exception_message: str | None
    details: dict[str, Any]

    def describe(self) -> str:
        """One line naming table, column, expectation, unexpected count and sample values."""
        where = f"{self.table}.{self.column}" if self.column else self.table
        if self.exception_message:
            return f"{where}: {self.expectation} could not be evaluated: {self.exception_message}"
        if self.unexpected_count is not None:
            return (
                f"{where}: {self.expectation} failed: {self.unexpected_count} unexpected of "
                f"{self.element_count} rows; sample values: {json.dumps(self.sample_values)}"
            )
        observed = json.dumps(to_jsonable(self.observed_value))
        if self.expectation.startswith("expect_table_row_count"):
            observed = f"{observed} rows{f' {self.scope}' if self.scope else ''}"
        return f"{where}: {self.expectation} failed: observed {observed}, expected {self.expected}"


def validate_extracts(
    extract_dir: Path,
    docs_dir: Path,
    warehouse_url: str,
    ds: date,
    run_id: str,
    window_start: datetime,
    window_end: datetime,
    tables: Sequence[str] = SOURCE_TABLES,
) -> ValidationSummary:
    """Validate the extracts of ``tables``, build data docs, record results; raise on critical failures."""
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
    parameters = load_reference_keys(extract_dir, tables)

    context = create_context(docs_dir)
    datasource = context.data_sources.add_pandas(DATASOURCE_NAME)
    gx_run_id = make_gx_run_id(run_id)
    outcomes: list[ExpectationOutcome] = []
    counts: dict[str, TableCounts] = {}
    for table in tables:
        frame = read_extract(extract_dir, table)
        table_outcomes = validate_table(context, datasource, table, frame, window, parameters, gx_run_id)
        outcomes.extend(table_outcomes)
        counts[table] = count_outcomes(frame, table_outcomes)
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
        n_expectations=len(outcomes),
        n_failed=sum(not outcome.success for outcome in outcomes),
        n_critical_failed=sum(not outcome.success and outcome.critical for outcome in outcomes),
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


def extract_path(extract_dir: Path, table: str) -> Path:
    """Where the extractor writes ``table``."""
    return extract_dir / f"{table}.parquet"


def require_extract_files(extract_dir: Path, tables: Sequence[str]) -> None:
    """Fail clearly when an extract to validate, or a parent it is checked against, is missing."""
    parents = {check.parent for check in REFERENCE_CHECKS if check.table in tables}
    needed = list(tables) + sorted(parents - set(tables))
    missing = [table for table in needed if not extract_path(extract_dir, table).is_file()]
    if missing:
        listed = ", ".join(f"{table} ({extract_path(extract_dir, table)})" for table in missing)
        raise DataQualityError(
            f"Missing extract file(s) for table(s): {listed}. The extract step must write one Parquet "
            f"file per source table before validation (parents are needed for referential checks)."
        )


def load_reference_keys(extract_dir: Path, tables: Sequence[str]) -> dict[str, list[Any]]:
    """Suite parameters: the key set of every parent that a table in ``tables`` references."""
    parameters: dict[str, list[Any]] = {}
    for check in REFERENCE_CHECKS:
        if check.table not in tables or check.parameter in parameters:
            continue
        path = extract_path(extract_dir, check.parent)
        try:
            schema = pl.read_parquet_schema(path)
            if check.parent_column not in schema:
                # The parent's own schema expectation reports the root cause; every child value
                # then counts as an orphan, because nothing can vouch for it.
                log.warning(
                    "%s has no column %s: %s.%s cannot be matched",
                    path, check.parent_column, check.table, check.column,
                )
                parameters[check.parameter] = []
                continue
            keys = pl.read_parquet(path, columns=[check.parent_column]).get_column(check.parent_column)
        except (OSError, pl.exceptions.PolarsError) as error:
            raise DataQualityError(f"Cannot read the extract of table {check.parent} ({path}): {error}") from error
        parameters[check.parameter] = keys.drop_nulls().unique().sort().to_list()
    return parameters


def read_extract(extract_dir: Path, table: str) -> pd.DataFrame:
    """Read one extract with pandas' nullable dtypes, so a null id stays a null in an integer column."""
    path = extract_path(extract_dir, table)
    try:
        return pd.read_parquet(path, dtype_backend="numpy_nullable")
    except (OSError, pa.ArrowException) as error:
        raise DataQualityError(f"Cannot read the extract of table {table} ({path}): {error}") from error


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
    parameters: Mapping[str, list[Any]],
    gx_run_id: RunIdentifier,
) -> list[ExpectationOutcome]:
    """Run ``table``'s suite on its extract and turn every expectation result into an outcome."""
    suite = context.suites.add(build_suite(table, window))
    batch_definition = datasource.add_dataframe_asset(table).add_batch_definition_whole_dataframe(table)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{table}_extract", data=batch_definition, suite=suite)
    )
    needed = {check.parameter for check in REFERENCE_CHECKS if check.table == table}
    result = definition.run(
        batch_parameters={"dataframe": frame},
        expectation_parameters={name: parameters[name] for name in needed},
        result_format=RESULT_FORMAT,
        run_id=gx_run_id,
    )
    return [outcome_from_result(table, item, len(frame)) for item in result.results]


def outcome_from_result(table: str, item: ExpectationValidationResult, n_rows: int) -> ExpectationOutcome:
    """Flatten one GX ExpectationValidationResult into the fields we record and report."""
    config = item.expectation_config
    kwargs = dict(config.kwargs)
    meta = dict(config.meta or {})
    result = dict(item.result or {})
    unexpected_count = result.get("unexpected_count")
    element_count = result.get("element_count", n_rows)
    details = trim_details(item.to_json_dict())
    return ExpectationOutcome(
        table=table,
        column=column_of(kwargs, meta),
        expectation=config.type,
        critical=is_critical(meta),
        success=bool(item.success),
        element_count=None if element_count is None else int(element_count),
        unexpected_count=None if unexpected_count is None else int(unexpected_count),
        sample_values=sample_values(result),
        observed_value=result.get("observed_value"),
        expected=describe_expected(kwargs),
        scope=f"on day D {meta['day']}" if "day" in meta else None,
        exception_message=exception_message(item.exception_info),
        details=details,
    )


def column_of(kwargs: Mapping[str, Any], meta: Mapping[str, Any]) -> str | None:
    """The column an expectation is about: its column, its column list, or the day-D count's column."""
    if kwargs.get("column"):
        return str(kwargs["column"])
    if kwargs.get("column_list"):
        return ",".join(kwargs["column_list"])
    return meta.get("day_column")


def sample_values(result: Mapping[str, Any]) -> list[Any]:
    """Up to SAMPLE_SIZE distinct unexpected values, JSON-safe (for duplicates: each value once)."""
    values: list[Any] = []
    for value in result.get("partial_unexpected_list") or []:
        value = to_jsonable(value)
        if value not in values:
            values.append(value)
        if len(values) == SAMPLE_SIZE:
            break
    return values


def describe_expected(kwargs: Mapping[str, Any]) -> str:
    """What a table-level or aggregate expectation wanted, for failure messages."""
    parts = []
    for key in ("type_", "column_set", "column_list", "min_value", "max_value", "value"):
        if kwargs.get(key) is not None:
            parts.append(f"{key.rstrip('_')}={json.dumps(shorten(to_jsonable(kwargs[key])))}")
    return ", ".join(parts) or "success"


def exception_message(exception_info: Any) -> str | None:
    """The error message when GX could not evaluate an expectation (e.g. a missing column)."""
    if not exception_info:
        return None
    infos = [exception_info] if "raised_exception" in exception_info else list(exception_info.values())
    for info in infos:
        info = info if isinstance(info, Mapping) else getattr(info, "to_json_dict", lambda: {})()
        if info.get("raised_exception"):
            return str(info.get("exception_message") or "unknown error")[:MAX_TEXT_CHARS]
    return None


def to_jsonable(value: Any) -> Any:
    """Plain JSON values from what GX/pandas hand back (numpy scalars, NA, timestamps, bytes)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):  # numpy's float64 is a float too
        return None if math.isnan(value) else float(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(bytes(value))} bytes>"
    if isinstance(value, datetime):  # pandas Timestamp is a datetime
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(item) for item in value]
    if hasattr(value, "item"):  # numpy scalars
        return to_jsonable(value.item())
    return str(value)


def shorten(value: Any) -> Any:
    """Long lists (value sets of referential checks) as their first values and a count."""
    if isinstance(value, list) and len(value) > MAX_LISTED_VALUES:
        return [*value[:MAX_LISTED_VALUES], f"... {len(value) - MAX_LISTED_VALUES} more"]
    if isinstance(value, str) and len(value) > MAX_TEXT_CHARS:
        return value[:MAX_TEXT_CHARS] + "..."
    if isinstance(value, dict):
        return {key: shorten(item) for key, item in value.items()}
    return value


def trim_details(details: Mapping[str, Any]) -> dict[str, Any]:
    """The GX result dict without bulk: parent key sets and tracebacks shortened, renderings dropped."""
    trimmed = shorten(to_jsonable(details))
    trimmed.pop("rendered_content", None)
    config = trimmed.get("expectation_config") or {}
    config.pop("rendered_content", None)
    return trimmed


def count_outcomes(frame: pd.DataFrame, outcomes: Sequence[ExpectationOutcome]) -> TableCounts:
    """Counts of one table's outcomes."""
    return TableCounts(
        n_rows=len(frame),
        n_expectations=len(outcomes),
        n_failed=sum(not outcome.success for outcome in outcomes),
        n_critical_failed=sum(not outcome.success and outcome.critical for outcome in outcomes),
    )


def log_table_summary(table: str, counts: TableCounts) -> None:
    """One line per table."""
    log.log(
        logging.ERROR if counts.n_critical_failed else logging.WARNING if counts.n_failed else logging.INFO,
        "Data quality %s: %d rows, %d expectations, %d failed (%d critical)",
        table, counts.n_rows, counts.n_expectations, counts.n_failed, counts.n_critical_failed,
    )


def build_docs(context: EphemeralDataContext, docs_dir: Path) -> Path | None:
    """Render the GX data docs site into ``docs_dir``; a rendering problem must not hide the results."""
    try:
        context.build_data_docs(site_names=[DOCS_SITE_NAME])
    except Exception:
        log.exception("Building the GX data docs in %s failed; the results are still recorded", docs_dir)
        return None
    index = docs_dir / "index.html"
    log.info("GX data docs: %s", index)
    return index


def results_frame(ds: date, run_id: str, outcomes: Sequence[ExpectationOutcome]) -> pl.DataFrame:
    """The data_quality_results rows of one run."""
    created_at = datetime.now(UTC).replace(tzinfo=None)
    rows = [
        {
            "run_id": run_id,
            "ds": ds,
            "table_name": outcome.table,
            "column_name": outcome.column,
            "expectation": outcome.expectation,
            "critical": outcome.critical,
            "success": outcome.success,
            "element_count": outcome.element_count,
            "unexpected_count": outcome.unexpected_count,
            "sample_values": json.dumps(outcome.sample_values),
            "details_json": json.dumps(outcome.details, default=str),
            "created_at": created_at,
        }
        for outcome in outcomes
    ]
    return pl.DataFrame(rows, schema=TABLE_SCHEMAS[RESULTS_TABLE], orient="row")


def write_results(warehouse_url: str, ds: date, run_id: str, outcomes: Sequence[ExpectationOutcome]) -> int:
    """Replace the (ds, run_id) rows of data_quality_results in one transaction (retries stay idempotent)."""
    frame = results_frame(ds, run_id, outcomes)
    engine = create_warehouse_engine(warehouse_url)
    try:
        create_tables(engine, areas=["ops"])
        with engine.begin() as conn:
            ds_param = ds.isoformat() if conn.dialect.name == "sqlite" else ds
            written = replace_rows(
                conn, RESULTS_TABLE, frame, "ds = :ds AND run_id = :run_id", {"ds": ds_param, "run_id": run_id}
            )
    finally:
        engine.dispose()
    log.info("Recorded %d expectation results in %s for ds=%s run_id=%s", written, RESULTS_TABLE, ds, run_id)
    return written


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
