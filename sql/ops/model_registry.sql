-- One row per trained model version and what the champion/challenger gate decided about it.
-- status: 'champion' (scores tonight; at most one per model_name), 'challenger' (a former champion,
-- kept as history) or 'rejected' (worse than the champion on the same rows; reasons_json says why).
CREATE TABLE IF NOT EXISTS model_registry (
    model_name            TEXT NOT NULL,
    model_version         TEXT NOT NULL,
    trained_ds            DATE NOT NULL,
    artifact_path         TEXT NOT NULL,
    status                TEXT NOT NULL CHECK (status IN ('champion', 'challenger', 'rejected')),
    metrics_json          TEXT NOT NULL,
    created_at            TIMESTAMP NOT NULL,
    reasons_json          TEXT NULL,
    compared_with         TEXT NULL,
    compared_metrics_json TEXT NULL,
    PRIMARY KEY (model_name, model_version)
);
-- The gate's invariant, enforced by the database too: two concurrent promotions cannot both win.
CREATE UNIQUE INDEX IF NOT EXISTS ux_model_registry_champion ON model_registry (model_name) WHERE status = 'champion';
