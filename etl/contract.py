"""Names fixed by the warehouse contract, importable without heavy dependencies (DAG parse time)."""

SOURCE_TABLES = ("users", "items", "item_images", "clicks", "orders", "order_items", "fraud_labels", "reviews")
WAREHOUSE_CONN_ID = "shopmtl_warehouse"
