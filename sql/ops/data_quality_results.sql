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
-- What each column means (PostgreSQL keeps them in its catalogue, see \d+ data_quality_results in psql, and docs/data_dictionary.md).
COMMENT ON TABLE data_quality_results IS 'One row per data-quality rule checked in one run, a failed critical rule stops the run.';
COMMENT ON COLUMN data_quality_results.run_id IS 'The Airflow run that checked it.';
COMMENT ON COLUMN data_quality_results.ds IS 'The day validated (UTC).';
COMMENT ON COLUMN data_quality_results.table_name IS 'The source table checked.';
COMMENT ON COLUMN data_quality_results.column_name IS 'The column checked (several for schema drift), NULL for table-level rules.';
COMMENT ON COLUMN data_quality_results.expectation IS 'The rule, named like its Great Expectations expectation.';
COMMENT ON COLUMN data_quality_results.critical IS 'True when a failure stops the run, false for a warning.';
COMMENT ON COLUMN data_quality_results.success IS 'True when the rule held.';
COMMENT ON COLUMN data_quality_results.element_count IS 'Rows the rule looked at.';
COMMENT ON COLUMN data_quality_results.unexpected_count IS 'Rows that broke it.';
COMMENT ON COLUMN data_quality_results.sample_values IS 'A few of the offending values, as JSON.';
COMMENT ON COLUMN data_quality_results.details_json IS 'The whole result, shaped like a GX validation result, as JSON.';
COMMENT ON COLUMN data_quality_results.created_at IS 'When the row was written (UTC).';
