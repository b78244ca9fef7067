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
