"""The data-quality contract of every source table: what is checked, on which rows, and how hard.

Each night validates only what is new that night (earlier days were validated on their own nights;
a backfill validates its own day). Three kinds of rules, each declared here and run elsewhere:

- the day suites (one GX Core 1.x ExpectationSuite per table, run by ``validation.validate`` on the
  table's rows of day D, ``validation.day_rows``): schema, nulls, domains, in-window /
  before-window-end timestamps, a non-empty day D for the sources that must have one, warnings;
- ``WINDOW_CHECKS`` (run by ``validation.window_checks`` on the whole window extract, with Polars):
  key uniqueness, which a single day cannot see (a key of day D may repeat one of an earlier day),
  and non-empty extracts;
- ``REFERENCE_CHECKS`` (run by ``validation.references`` in the warehouse, as SQL anti-joins on
  indexed keys): day D's foreign keys must name a parent that existed before window_end;
- ``TEMPORAL_CHECKS`` (also in the warehouse): a fraud label or a review no earlier than its order.

Every rule carries ``critical``:

- critical: the data would make training or publishing wrong (schema, nulls in ids or required
  fields, duplicate ids, orphan references, rows from the future, an empty day D, values outside
  their domain in money, quantity, rating, event type or fraud label). A critical failure stops the
  run after the results are recorded.
- non-critical: a warning worth a look (plausibility ranges, tolerant ``mostly`` thresholds,
  descriptive text columns, optional tables that are empty).

In the GX suites ``meta={"critical": bool}`` and the ``severity`` field (``critical`` / ``warning``)
carry the flag, so the data docs show it too.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

# GX logs ~25 INFO lines while it imports; keep task logs readable unless GX logging is configured.
if logging.getLogger("great_expectations").level == logging.NOTSET:
    logging.getLogger("great_expectations").setLevel(logging.WARNING)

import great_expectations as gx  # noqa: E402
import great_expectations.expectations as gxe  # noqa: E402
import polars as pl  # noqa: E402
from great_expectations.expectations.row_conditions import Column  # noqa: E402

from etl.config import DEFAULT_MONEY_CEILING  # noqa: E402
from etl.warehouse import TABLE_SCHEMAS  # noqa: E402

# Plausible birth years: nobody born before 1900 or younger than 13 at the end of the window.
BIRTH_YEAR_MIN = 1900
MIN_CUSTOMER_AGE_YEARS = 13
EVENT_TYPES = ("impression", "click", "add_to_cart")


@dataclass(frozen=True)
class ValidationWindow:
    """The training window [window_start, window_end) and the start of day D, its last day."""

    window_start: datetime
    window_end: datetime
    day_start: datetime

    def __post_init__(self) -> None:
        if not self.window_start <= self.day_start < self.window_end:
            raise ValueError(
                f"Inconsistent window: need window_start <= day_start < window_end, got "
                f"[{self.window_start}, {self.window_end}) with day D starting {self.day_start}"
            )


@dataclass(frozen=True)
class ValidationLimits:
    """Deployment-specific bounds of the rules (``Settings.money_ceiling``: ``SHOPMTL_MONEY_CEILING``)."""

    # Prices and amounts at or above this are data errors, not sales: a misplaced decimal, cents
    # booked as euros, a sentinel such as 1e308, or Infinity (which passes every ">= 0" rule).
    money_ceiling: float = DEFAULT_MONEY_CEILING


REPLACEMENT_CHARACTER = "\ufffd"  # what undecodable bytes of free text become

# The time column that says on which day a row arrived. order_items have none: a line belongs to the
# day of its order. Fraud labels belong to the day they were labelled, not to their order's day: a
# label arrives days after its order, so "labels of day D's orders" would almost always be empty and a
# label arriving on D+5 for an order of D would never be validated. Users and items are new on the
# day they signed up / were listed; ``validation.day_rows`` adds the users active on D and the items
# D's rows refer to, the rows that day D's training data brings along.
DAY_COLUMNS: dict[str, str] = {
    "users": "signup_at",
    "items": "created_at",
    "item_images": "updated_at",
    "clicks": "event_time",
    "orders": "created_at",
    "fraud_labels": "labeled_at",
    "reviews": "created_at",
}


@dataclass(frozen=True)
class ReferenceCheck:
    """Day D's ``table.column`` values must be keys of ``parent.parent_column`` that existed before
    window_end (``parent.parent_time_column`` < window_end: a parent from the future does not count)."""

    table: str
    column: str
    parent: str
    parent_column: str
    parent_time_column: str


# Every referential check in one place: validation.references runs exactly these, in the warehouse.
REFERENCE_CHECKS: tuple[ReferenceCheck, ...] = (
    ReferenceCheck("item_images", "item_id", "items", "item_id", "created_at"),
    ReferenceCheck("clicks", "user_id", "users", "user_id", "signup_at"),
    ReferenceCheck("clicks", "item_id", "items", "item_id", "created_at"),
    ReferenceCheck("orders", "user_id", "users", "user_id", "signup_at"),
    # holds by construction for lines found through their order; kept so every foreign key has its row
    ReferenceCheck("order_items", "order_id", "orders", "order_id", "created_at"),
    ReferenceCheck("order_items", "item_id", "items", "item_id", "created_at"),
    ReferenceCheck("fraud_labels", "order_id", "orders", "order_id", "created_at"),
    ReferenceCheck("reviews", "user_id", "users", "user_id", "signup_at"),
    ReferenceCheck("reviews", "item_id", "items", "item_id", "created_at"),
    ReferenceCheck("reviews", "order_id", "orders", "order_id", "created_at"),  # NULL: a review without an order
)


@dataclass(frozen=True)
class TemporalCheck:
    """Day D's ``table.column`` must not be earlier than ``parent.parent_column`` of the row it names
    (joined on ``key``): a fraud label before its order, or a review before its purchase, is a broken
    feed or clock, and would put a label's time before the event it labels."""

    table: str
    column: str
    key: str
    parent: str
    parent_column: str


TEMPORAL_CHECKS: tuple[TemporalCheck, ...] = (
    TemporalCheck("fraud_labels", "labeled_at", "order_id", "orders", "created_at"),
    TemporalCheck("reviews", "created_at", "order_id", "orders", "created_at"),
)


@dataclass(frozen=True)
class WindowCheck:
    """Rules on a table's whole window extract: ``key`` unique; at least one row when ``non_empty`` is
    set (True: critical, False: a warning; None: no count, the day suite requires rows on day D)."""

    key: tuple[str, ...]
    non_empty: bool | None


# Keys must be unique across the window, not only within day D: a key of day D that repeats one of
# an earlier day would make the features' joins fan out. One Polars pass over the key columns.
WINDOW_CHECKS: dict[str, WindowCheck] = {
    "users": WindowCheck(("user_id",), non_empty=True),
    "items": WindowCheck(("item_id",), non_empty=True),
    "item_images": WindowCheck(("item_id",), non_empty=False),
    "clicks": WindowCheck(("event_id",), non_empty=None),
    "orders": WindowCheck(("order_id",), non_empty=None),
    "order_items": WindowCheck(("order_id", "item_id"), non_empty=True),
    "fraud_labels": WindowCheck(("order_id",), non_empty=False),
    "reviews": WindowCheck(("review_id",), non_empty=None),
}


# How a contract dtype looks once the Parquet file is read with pandas' nullable dtypes
# (``dtype_backend="numpy_nullable"``), which keeps integer ids integer even when one is null.
PANDAS_DTYPES: dict[type[pl.DataType], str] = {
    pl.Int64: "Int64",
    pl.Int32: "Int32",
    pl.Int16: "Int16",
    pl.Float64: "Float64",
    pl.String: "string",
    pl.Boolean: "boolean",
    pl.Binary: "object",
}


def pandas_dtype(dtype: pl.DataType) -> str:
    """The pandas dtype name a contract column has after a nullable-dtype Parquet read."""
    if isinstance(dtype, pl.Datetime):
        return f"datetime64[{dtype.time_unit}]"
    try:
        return PANDAS_DTYPES[dtype.base_type()]
    except KeyError:
        raise ValueError(f"No pandas dtype mapping for contract dtype {dtype}") from None


def critical(expectation: gxe.Expectation) -> gxe.Expectation:
    """Mark an expectation whose failure stops the run."""
    expectation.meta = {**(expectation.meta or {}), "critical": True}
    expectation.severity = "critical"
    return expectation


def warning(expectation: gxe.Expectation) -> gxe.Expectation:
    """Mark an expectation whose failure is only logged as a warning."""
    expectation.meta = {**(expectation.meta or {}), "critical": False}
    expectation.severity = "warning"
    return expectation


def is_critical(meta: dict | None) -> bool:
    """Whether an expectation's meta marks it critical (unmarked expectations count as critical)."""
    return bool((meta or {}).get("critical", True))


def format_timestamp(value: datetime) -> str:
    """Timestamp text for a pandas row condition (pandas parses it against datetime64 columns)."""
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


def schema_expectations(table: str) -> list[gxe.Expectation]:
    """Exactly the contract's columns, each with the contract's type (all critical)."""
    schema = TABLE_SCHEMAS[table]
    expectations: list[gxe.Expectation] = [
        critical(gxe.ExpectTableColumnsToMatchSet(column_set=list(schema), exact_match=True))
    ]
    for column, dtype in schema.items():
        expectations.append(critical(gxe.ExpectColumnTypeToBe(column=column, type_=pandas_dtype(dtype))))
    return expectations


def money(column: str, limits: ValidationLimits) -> gxe.Expectation:
    """A price or amount: finite, from 0 up to (not including) the deployment's ceiling (critical)."""
    return critical(
        gxe.ExpectColumnValuesToBeBetween(column=column, min_value=0, max_value=limits.money_ceiling, strict_max=True)
    )


def decodable_text(*columns: str) -> list[gxe.Expectation]:
    """Free text the warehouse held as invalid UTF-8 arrives with U+FFFD replacement characters
    (``etl.warehouse.decode_text``): kept, counted by this warning rule, never fatal."""
    return [warning(gxe.ExpectColumnValuesToNotMatchRegex(column=column, regex=REPLACEMENT_CHARACTER)) for column in columns]


def not_null(*columns: str) -> list[gxe.Expectation]:
    """Required columns: no nulls (critical)."""
    return [critical(gxe.ExpectColumnValuesToNotBeNull(column=column)) for column in columns]


def not_null_warning(*columns: str) -> list[gxe.Expectation]:
    """Descriptive columns: nulls are worth a warning, not a stop."""
    return [warning(gxe.ExpectColumnValuesToNotBeNull(column=column)) for column in columns]


def in_window(column: str, window: ValidationWindow) -> gxe.Expectation:
    """Event timestamps inside [window_start, window_end) (critical: no future or stale rows)."""
    return critical(
        gxe.ExpectColumnValuesToBeBetween(
            column=column, min_value=window.window_start, max_value=window.window_end, strict_max=True
        )
    )


def before_window_end(column: str, window: ValidationWindow) -> gxe.Expectation:
    """Dimension/label timestamps strictly before window_end (critical: no future rows)."""
    return critical(
        gxe.ExpectColumnValuesToBeBetween(column=column, max_value=window.window_end, strict_max=True)
    )


def rows_on_day(column: str, window: ValidationWindow) -> gxe.Expectation:
    """At least one row on day D itself: a configured source that is empty for the day is a failure."""
    day_condition = (Column(column) >= format_timestamp(window.day_start)) & (
        Column(column) < format_timestamp(window.window_end)
    )
    return critical(
        gxe.ExpectTableRowCountToBeBetween(
            min_value=1,
            row_condition=day_condition,
            meta={"day_column": column, "day": window.day_start.date().isoformat()},
        )
    )


def build_users_suite(window: ValidationWindow, limits: ValidationLimits) -> gx.ExpectationSuite:
    """Users of day D (signed up or active on D): signed up before window_end, plausible birth years."""
    latest_birth_year = (window.window_end - timedelta(days=1)).year - MIN_CUSTOMER_AGE_YEARS
    return make_suite(
        "users",
        schema_expectations("users"),
        not_null("user_id", "signup_at"),
        not_null_warning("country"),
        [
            before_window_end("signup_at", window),
            warning(
                gxe.ExpectColumnValuesToBeBetween(
                    column="birth_year", min_value=BIRTH_YEAR_MIN, max_value=latest_birth_year, mostly=0.99
                )
            ),
            warning(gxe.ExpectColumnValueLengthsToBeBetween(column="country", min_value=2, max_value=3)),
        ],
    )


def build_items_suite(window: ValidationWindow, limits: ValidationLimits) -> gx.ExpectationSuite:
    """Items of day D (listed on D or named by D's rows): prices within [0, ceiling), none from the future."""
    return make_suite(
        "items",
        schema_expectations("items"),
        not_null("item_id", "price", "created_at"),
        not_null_warning("category", "seller_id", "title"),
        decodable_text("title"),
        [
            money("price", limits),
            before_window_end("created_at", window),
        ],
    )


def build_item_images_suite(window: ValidationWindow, limits: ValidationLimits) -> gx.ExpectationSuite:
    """Images updated on day D: complete, updated before window_end."""
    return make_suite(
        "item_images",
        schema_expectations("item_images"),
        not_null("item_id", "image", "updated_at"),
        [before_window_end("updated_at", window)],
    )


def build_clicks_suite(window: ValidationWindow, limits: ValidationLimits) -> gx.ExpectationSuite:
    """Behavioural events of day D: known event types, inside the window, rows on day D."""
    return make_suite(
        "clicks",
        schema_expectations("clicks"),
        not_null("event_id", "event_time", "user_id", "item_id", "event_type"),
        not_null_warning("session_id"),
        [
            critical(gxe.ExpectColumnValuesToBeInSet(column="event_type", value_set=list(EVENT_TYPES))),
            in_window("event_time", window),
            # position is the impression's slot on the page (NULL for other events; nulls are skipped)
            warning(gxe.ExpectColumnValuesToBeBetween(column="position", min_value=0)),
            warning(
                gxe.ExpectColumnValuesToNotBeNull(
                    column="position", row_condition=Column("event_type") == "impression", mostly=0.99
                )
            ),
            # scenario names the surface (the platform's own words; NULL when unknown): a name, not a document
            warning(gxe.ExpectColumnValueLengthsToBeBetween(column="scenario", min_value=1, max_value=64)),
            rows_on_day("event_time", window),
        ],
    )


def build_orders_suite(window: ValidationWindow, limits: ValidationLimits) -> gx.ExpectationSuite:
    """Orders of day D: amounts within [0, ceiling), inside the window, rows on day D."""
    return make_suite(
        "orders",
        schema_expectations("orders"),
        not_null("order_id", "user_id", "created_at", "amount"),
        not_null_warning("payment_method", "device_id", "ip_address", "channel", "ship_country", "status"),
        [
            money("amount", limits),
            in_window("created_at", window),
            rows_on_day("created_at", window),
        ],
    )


def build_order_items_suite(window: ValidationWindow, limits: ValidationLimits) -> gx.ExpectationSuite:
    """Lines of day D's orders: positive quantities, unit prices within [0, ceiling)."""
    return make_suite(
        "order_items",
        schema_expectations("order_items"),
        not_null("order_id", "item_id", "quantity", "unit_price"),
        [
            critical(gxe.ExpectColumnValuesToBeBetween(column="quantity", min_value=1)),
            money("unit_price", limits),
        ],
    )


def build_fraud_labels_suite(window: ValidationWindow, limits: ValidationLimits) -> gx.ExpectationSuite:
    """Fraud labels labelled on day D: a boolean label, known before window_end."""
    return make_suite(
        "fraud_labels",
        schema_expectations("fraud_labels"),
        not_null("order_id", "is_fraud", "labeled_at"),
        [
            critical(gxe.ExpectColumnValuesToBeInSet(column="is_fraud", value_set=[True, False])),
            # a label from the future would leak the answer into training
            before_window_end("labeled_at", window),
        ],
    )


def build_reviews_suite(window: ValidationWindow, limits: ValidationLimits) -> gx.ExpectationSuite:
    """Reviews of day D: ratings 1..5, inside the window, rows on day D."""
    return make_suite(
        "reviews",
        schema_expectations("reviews"),
        not_null("review_id", "user_id", "item_id", "rating", "created_at"),
        [
            critical(gxe.ExpectColumnValuesToBeBetween(column="rating", min_value=1, max_value=5)),
            in_window("created_at", window),
            # most reviews have some text; a sudden wave of empty ones is worth a look
            warning(gxe.ExpectColumnValuesToNotBeNull(column="body", mostly=0.5)),
            *decodable_text("title", "body"),
            # a deployment that configures reviews gets them every day; none on day D means a broken feed
            rows_on_day("created_at", window),
        ],
    )


SUITE_BUILDERS: dict[str, Callable[[ValidationWindow, ValidationLimits], gx.ExpectationSuite]] = {
    "users": build_users_suite,
    "items": build_items_suite,
    "item_images": build_item_images_suite,
    "clicks": build_clicks_suite,
    "orders": build_orders_suite,
    "order_items": build_order_items_suite,
    "fraud_labels": build_fraud_labels_suite,
    "reviews": build_reviews_suite,
}


def make_suite(table: str, *groups: list[gxe.Expectation]) -> gx.ExpectationSuite:
    """An ExpectationSuite named after ``table`` holding the given expectations, in order.

    Built through the constructor rather than ``add_expectation``, which consults the current GX
    context: the suite is plain data until ``validation.validate`` adds it to its own context.
    """
    expectations = [expectation for group in groups for expectation in group]
    return gx.ExpectationSuite(name=table, expectations=expectations, meta={"table": table})


def build_suite(table: str, window: ValidationWindow, limits: ValidationLimits = ValidationLimits()) -> gx.ExpectationSuite:
    """The suite of one source table."""
    try:
        builder = SUITE_BUILDERS[table]
    except KeyError:
        raise ValueError(f"No expectation suite for table {table!r}; known: {sorted(SUITE_BUILDERS)}") from None
    return builder(window, limits)
