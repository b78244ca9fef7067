"""Names fixed by the warehouse contract, importable without heavy dependencies (DAG parse time)."""

SOURCE_TABLES = ("users", "items", "item_images", "clicks", "orders", "order_items", "fraud_labels", "reviews")
WAREHOUSE_CONN_ID = "shopmtl_warehouse"

# The sources each learning task needs. A deployment configures which sources it has
# (SHOPMTL_SOURCES); it trains and publishes the tasks those sources allow and says which it skipped.
TASK_SOURCES: dict[str, frozenset[str]] = {
    "click": frozenset({"clicks", "items"}),
    "purchase": frozenset({"clicks", "items", "orders", "order_items"}),
    "review": frozenset({"reviews", "items"}),
    "category": frozenset({"items", "item_images"}),
    "fraud": frozenset({"orders", "order_items", "users", "fraud_labels"}),
}
TASKS = tuple(TASK_SOURCES)


def available_tasks(sources: tuple[str, ...] | list[str]) -> list[str]:
    """The tasks whose every required source is configured, in the canonical task order."""
    configured = set(sources)
    return [task for task, needed in TASK_SOURCES.items() if needed <= configured]
