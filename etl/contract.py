"""The one vocabulary: names several modules need, importable without heavy dependencies (DAG parse time).

Words used the same way everywhere:

- **objective**: what a model learns (click, purchase, review, category, fraud). A warehouse column
  or metric row that holds an objective is named ``task`` (``model_runs.task``): the column names
  are the warehouse contract and stay as they are.
- **task**: an Airflow task (``extract``, ``train_multitask``, ...), nothing else.
- **model name**: ``multitask`` or ``fraud_lgbm``, the same word for the model's module in
  ``training/``, its run directory (``runs/<D>/models/<model name>``), ``model_registry.model_name``
  and ``model_runs.model_name``, and the prefix of its model versions.
"""

DAG_ID = "nightly_retrain"
WAREHOUSE_CONN_ID = "shopmtl_warehouse"
# Endpoint and credentials of SHOPMTL_ARTIFACTS_URL (etl.artifacts), when not from the AWS_* variables.
ARTIFACTS_CONN_ID = "shopmtl_artifacts"

SOURCE_TABLES = ("users", "items", "item_images", "clicks", "orders", "order_items", "fraud_labels", "reviews")

# The sources each objective needs. A deployment configures which sources it has (SHOPMTL_SOURCES);
# it trains and publishes the objectives those sources allow and says which it skipped.
OBJECTIVE_SOURCES: dict[str, frozenset[str]] = {
    "click": frozenset({"clicks", "items"}),
    "purchase": frozenset({"clicks", "items", "orders", "order_items"}),
    "review": frozenset({"reviews", "items"}),
    "category": frozenset({"items", "item_images"}),
    "fraud": frozenset({"orders", "order_items", "users", "fraud_labels"}),
}
OBJECTIVES = tuple(OBJECTIVE_SOURCES)
# The batch kind (the shape of input) each objective trains on. Objectives of one kind are chosen
# (training/loop.py) and promoted (training/promotion.py) together: click and purchase share the
# impressions, and p_purchase = p_click * p_cvr must come from one network.
OBJECTIVE_KIND = {"click": "impression", "purchase": "impression", "review": "review", "category": "item", "fraud": "order"}
# Objectives with a 0/1 label and a probability (everything but the image category, a K-way class).
BINARY_OBJECTIVES = ("click", "purchase", "review", "fraud")
# The metric an objective is judged by first (reports, the ablation table, the oracle comparison).
MAIN_METRIC = {"click": "auc", "purchase": "auc", "review": "auc", "category": "accuracy", "fraud": "auc"}

# Trailing features look back this many days before an event's day (etl.features.TRAILING_DAYS ends
# with it), so the extract keeps this many days of event partitions before the window (etl.extract).
FEATURE_HISTORY_DAYS = 28

# Scenarios (clicks.scenario: the surface an impression was shown on, e.g. home_feed or search) are
# the deployment's own names. Recommendations are scored per scenario the user was shown items on
# that day; a user active without a named scenario (orders only, or a null scenario) gets one list
# under ANY_SCENARIO, scored by the network's scenario-agnostic row. model_runs rows over all of a
# day's rows say ALL_SCENARIOS; per-scenario metric rows name the scenario.
ANY_SCENARIO = "any"
ALL_SCENARIOS = "all"

MULTITASK = "multitask"  # the multi-task network (training/multitask.py)
FRAUD_LGBM = "fraud_lgbm"  # the LightGBM fraud baseline (training/fraud_lgbm.py)
MODEL_NAMES = (MULTITASK, FRAUD_LGBM)

# Score tables published per day, and the objectives each needs; a deployment whose sources lack
# them skips the table (model_runs, the metrics of the night, is always published).
SCORE_TABLE_OBJECTIVES: dict[str, tuple[str, ...]] = {
    "score_user_item": ("click", "purchase"),
    "score_order_fraud": ("fraud",),
    "score_review_sentiment": ("review",),
    "score_item_category": ("category",),
}
SCORE_TABLES = tuple(SCORE_TABLE_OBJECTIVES)
PUBLISHED_TABLES = (*SCORE_TABLES, "model_runs")
# Each published table is an Airflow Asset (outlets of the DAG's publish task), so a downstream DAG
# can be scheduled on "day D of score_order_fraud was published". ``x-`` marks a scheme of our own.
ASSET_GROUP = "shopmtl"


def table_asset_uri(table: str) -> str:
    """The Asset URI of a published table (``x-shopmtl://warehouse/<table>``)."""
    if table not in PUBLISHED_TABLES:
        raise ValueError(f"{table!r} is not a published table; published: {list(PUBLISHED_TABLES)}")
    return f"x-{ASSET_GROUP}://warehouse/{table}"


def available_objectives(sources: tuple[str, ...] | list[str]) -> list[str]:
    """The objectives whose every required source is configured, in the canonical order."""
    configured = set(sources)
    return [objective for objective, needed in OBJECTIVE_SOURCES.items() if needed <= configured]
