-- One row per trained model version and objective, and what the champion/challenger gate decided
-- for that objective. status: 'champion' (serves the objective now; at most one per model_name and
-- objective), 'challenger' (served it before a newer champion) or 'rejected' (not promoted for it;
-- reasons_json says why, evidence_json holds the paired comparison: both metric values on the same
-- rows, their difference and its confidence interval). The network's objectives are decided one by
-- one, so a night's network can serve click while an older one keeps serving category.
CREATE TABLE IF NOT EXISTS model_registry (
    model_name            TEXT NOT NULL,
    model_version         TEXT NOT NULL,
    objective             TEXT NOT NULL,
    trained_ds            DATE NOT NULL,
    artifact_path         TEXT NOT NULL,
    status                TEXT NOT NULL CHECK (status IN ('champion', 'challenger', 'rejected')),
    metrics_json          TEXT NOT NULL,
    created_at            TIMESTAMP NOT NULL,
    reasons_json          TEXT NULL,
    compared_with         TEXT NULL,
    compared_metrics_json TEXT NULL,
    evidence_json         TEXT NULL,
    PRIMARY KEY (model_name, model_version, objective)
);
-- The gate's invariant, enforced by the database too: two concurrent promotions cannot both win.
CREATE UNIQUE INDEX IF NOT EXISTS ux_model_registry_champion ON model_registry (model_name, objective) WHERE status = 'champion';
-- What each column means (PostgreSQL keeps them in its catalogue, see \d+ model_registry in psql, and docs/data_dictionary.md).
COMMENT ON TABLE model_registry IS 'Every trained model version and objective, and what the champion/challenger gate decided.';
COMMENT ON COLUMN model_registry.model_name IS 'multitask or fraud_lgbm.';
COMMENT ON COLUMN model_registry.model_version IS 'The version: <model name>-<trained day>-<hash of its inputs and code>.';
COMMENT ON COLUMN model_registry.objective IS 'The objective decided on: click, purchase, review, category or fraud.';
COMMENT ON COLUMN model_registry.trained_ds IS 'The day it was trained for.';
COMMENT ON COLUMN model_registry.artifact_path IS 'The directory holding its files (no other version ever writes there).';
COMMENT ON COLUMN model_registry.status IS 'champion (serves the objective now), challenger (served it before) or rejected (not promoted).';
COMMENT ON COLUMN model_registry.metrics_json IS 'Its metrics on the day it was trained for, as JSON.';
COMMENT ON COLUMN model_registry.created_at IS 'When the decision took effect (UTC): the publish of its day.';
COMMENT ON COLUMN model_registry.reasons_json IS 'Why it was or was not promoted, as JSON.';
COMMENT ON COLUMN model_registry.compared_with IS 'The champion it was compared with, if any.';
COMMENT ON COLUMN model_registry.compared_metrics_json IS 'That champion''s metrics on the same rows, as JSON.';
COMMENT ON COLUMN model_registry.evidence_json IS 'The paired comparison: both values, the difference and its 95% confidence interval, as JSON.';
