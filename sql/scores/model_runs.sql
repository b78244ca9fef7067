-- One row per metric per task of each nightly evaluation (day ds). scenario 'all' (etl.contract.ALL_SCENARIOS):
-- over all of the day's evaluation rows; a scenario name (click and purchase only): over that
-- scenario's impressions alone.
CREATE TABLE IF NOT EXISTS model_runs (
    run_id        TEXT NOT NULL,
    ds            DATE NOT NULL,
    model_name    TEXT NOT NULL,
    model_version TEXT NOT NULL,
    task          TEXT NOT NULL,
    metric        TEXT NOT NULL,
    value         DOUBLE PRECISION NULL,
    created_at    TIMESTAMP NOT NULL,
    n_rows        BIGINT NULL,
    scenario      TEXT NOT NULL DEFAULT 'all',
    PRIMARY KEY (ds, model_name, task, metric, scenario)
);
-- v_model_performance reads it by task and metric over days.
CREATE INDEX IF NOT EXISTS ix_model_runs_task ON model_runs (task, metric, ds);
-- What each column means (PostgreSQL keeps them in its catalogue, see \d+ model_runs in psql, and docs/data_dictionary.md).
COMMENT ON TABLE model_runs IS 'One metric of one model on one task in the nightly evaluation of day ds.';
COMMENT ON COLUMN model_runs.run_id IS 'The Airflow run that published it.';
COMMENT ON COLUMN model_runs.ds IS 'The day evaluated (UTC).';
COMMENT ON COLUMN model_runs.model_name IS 'multitask or fraud_lgbm.';
COMMENT ON COLUMN model_runs.model_version IS 'The model version evaluated.';
COMMENT ON COLUMN model_runs.task IS 'The objective: click, purchase, review, category or fraud.';
COMMENT ON COLUMN model_runs.metric IS 'auc, pr_auc, log_loss or accuracy.';
COMMENT ON COLUMN model_runs.value IS 'The metric''s value, NULL when it is undefined on the rows (one class only).';
COMMENT ON COLUMN model_runs.created_at IS 'When the row was published (UTC).';
COMMENT ON COLUMN model_runs.n_rows IS 'Evaluation rows behind the value.';
COMMENT ON COLUMN model_runs.scenario IS 'all (every row of the day) or one scenario''s impressions (click and purchase).';
