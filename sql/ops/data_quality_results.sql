-- One row per GX expectation per validation run. critical expectations stop the run when they fail.
CREATE TABLE IF NOT EXISTS data_quality_results (
    run_id           TEXT NOT NULL,
    ds               DATE NOT NULL,
    table_name       TEXT NOT NULL,
    column_name      TEXT NULL,
    expectation      TEXT NOT NULL,
    critical         BOOLEAN NOT NULL,
    success          BOOLEAN NOT NULL,
    element_count    BIGINT NULL,
    unexpected_count BIGINT NULL,
    sample_values    TEXT NULL,
    details_json     TEXT NULL,
    created_at       TIMESTAMP NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_data_quality_results_ds ON data_quality_results (ds, run_id);
