"""Running shopmtl on one machine without Docker (``make airflow``)."""
