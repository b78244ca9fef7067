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
