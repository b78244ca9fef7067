"""Expectation results: each GX expectation result (``outcome_from_result``) and each rule checked
outside GX (``rule_outcome``: window-wide key uniqueness and row counts, referential checks in SQL)
becomes an ``ExpectationOutcome``, one row of ``data_quality_results`` and, when it failed, one line
of a log or ``DataQualityError`` message. Both kinds read alike: table, column, the rule under its GX
name, unexpected count of how many rows, sample values.

The rows are JSON-safe and small: values GX or pandas hand back (numpy scalars, NA, timestamps, bytes)
become plain JSON; the key sets of referential checks and long texts are shortened; renderings are
dropped. ``write_results`` replaces a run's rows in one transaction, so retries stay idempotent.
"""
from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd
import polars as pl

from etl.casting import ValueTypeError
from etl.warehouse import TABLE_SCHEMAS, create_tables, create_warehouse_engine, replace_rows
from validation.suites import is_critical

if TYPE_CHECKING:
    from etl.drift import SchemaDriftError
    from great_expectations.core.expectation_validation_result import ExpectationValidationResult

log = logging.getLogger(__name__)

RESULTS_TABLE = "data_quality_results"
SAMPLE_SIZE = 5
MAX_LISTED_VALUES = 20
MAX_TEXT_CHARS = 2000


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


def rule_outcome(
    table: str,
    column: str | None,
    expectation: str,
    *,
    critical: bool,
    kwargs: Mapping[str, Any],
    element_count: int | None,
    unexpected_count: int | None = None,
    unexpected_values: Sequence[Any] = (),
    observed_value: Any = None,
    success: bool | None = None,
    exception: str | None = None,
    evaluated_on: str,
) -> ExpectationOutcome:
    """The outcome of a rule evaluated outside GX, with details shaped like a GX result."""
    if success is None:
        success = exception is None and not unexpected_count
    result: dict[str, Any] = {"element_count": element_count, "evaluated_on": evaluated_on}
    if unexpected_count is not None:
        result |= {"unexpected_count": unexpected_count, "partial_unexpected_list": list(unexpected_values)}
    if observed_value is not None:
        result["observed_value"] = observed_value
    details = {
        "success": success,
        "expectation_config": {"type": expectation, "kwargs": dict(kwargs), "meta": {"critical": critical}},
        "result": result,
        "exception_info": {"raised_exception": exception is not None, "exception_message": exception},
    }
    return ExpectationOutcome(
        table=table,
        column=column,
        expectation=expectation,
        critical=critical,
        success=success,
        element_count=element_count,
        unexpected_count=unexpected_count,
        sample_values=sample_values(result),
        observed_value=observed_value,
        expected=describe_expected(kwargs),
        scope=None,
        exception_message=exception[:MAX_TEXT_CHARS] if exception else None,
        details=trim_details(details),
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


def schema_drift_outcome(table: str, expected: Sequence[str], found: Sequence[str]) -> ExpectationOutcome:
    """The outcome of a source table whose columns are not the contract's (a critical failure read
    like GX's ``expect_table_columns_to_match_set``, naming the missing and the unexpected columns)."""
    missing = [column for column in expected if column not in found]
    extra = [column for column in found if column not in expected]
    return rule_outcome(
        table, ",".join(missing) or None, "expect_table_columns_to_match_set", critical=True,
        kwargs={"column_set": list(expected), "exact_match": False}, element_count=None,
        observed_value={"found": list(found), "missing": missing, "unexpected": extra},
        unexpected_count=len(missing), unexpected_values=missing, evaluated_on="warehouse",
    )  # fmt: skip


def unreadable_values_outcome(table: str, column: str, dtype: str, count: int, samples: Sequence[Any]) -> ExpectationOutcome:
    """The outcome of source values that do not read as their column's contract type (critical)."""
    return rule_outcome(
        table, column, "expect_column_values_to_be_of_type", critical=True, kwargs={"column": column, "type_": dtype},
        element_count=None, unexpected_count=count, unexpected_values=list(samples), evaluated_on="warehouse",
    )


def retyped_column_outcome(table: str, column: str, sql_type: str, contract_type: str) -> ExpectationOutcome:
    """The outcome of a source column retyped so that the extract cannot read it (critical), read like
    GX's ``expect_column_values_to_be_in_type_list``."""
    return rule_outcome(
        table, column, "expect_column_values_to_be_in_type_list", critical=True,
        kwargs={"column": column, "type_list": [contract_type]}, element_count=None,
        observed_value=sql_type, success=False, evaluated_on="warehouse",
    )  # fmt: skip


def source_failure_outcomes(error: SchemaDriftError | ValueTypeError) -> list[ExpectationOutcome]:
    """The data-quality outcomes of an extract that stopped on its source: schema drift (missing or
    retyped columns) or values that do not read as their type."""
    if isinstance(error, ValueTypeError):
        return [unreadable_values_outcome(error.table, error.column, str(error.dtype), error.count, error.samples)]
    if error.retyped:
        contract = TABLE_SCHEMAS[error.table]
        return [
            retyped_column_outcome(error.table, column, sql_type, str(contract[column]))
            for column, sql_type in error.retyped.items()
        ]
    return [schema_drift_outcome(error.table, error.expected, error.found)]


def write_results(
    warehouse_url: str, ds: date, run_id: str, outcomes: Sequence[ExpectationOutcome], table: str | None = None
) -> int:
    """Replace the (ds, run_id) rows of data_quality_results in one transaction (retries stay idempotent);
    with ``table``, only that source table's rows (a mapped extract task records its own table's)."""
    frame = results_frame(ds, run_id, outcomes)
    engine = create_warehouse_engine(warehouse_url)
    try:
        create_tables(engine, areas=["ops"])
        with engine.begin() as conn:
            ds_param = ds.isoformat() if conn.dialect.name == "sqlite" else ds
            where, params = "ds = :ds AND run_id = :run_id", {"ds": ds_param, "run_id": run_id}
            if table is not None:
                where, params = where + " AND table_name = :table", {**params, "table": table}
            written = replace_rows(conn, RESULTS_TABLE, frame, where, params)
    finally:
        engine.dispose()
    log.info("Recorded %d expectation results in %s for ds=%s run_id=%s", written, RESULTS_TABLE, ds, run_id)
    return written


__all__ = [
    "RESULTS_TABLE", "ExpectationOutcome", "outcome_from_result", "results_frame", "rule_outcome",
    "schema_drift_outcome", "to_jsonable", "unreadable_values_outcome", "write_results",
]
