-- Model quality over time: one row per task, metric, scenario ('all' = every evaluation row; click and
-- purchase also per scenario), evaluation day and model (model_runs), with the version's status in
-- model_registry NOW, for that task: 'champion' (the version serving it), 'challenger' (served it before), 'rejected'
-- (failed the gate), NULL (not in the registry).
CREATE VIEW v_model_performance AS
SELECT
    r.task,
    r.metric,
    r.scenario,
    r.ds,
    r.model_name,
    r.model_version,
    r.value,
    r.n_rows,
    m.status,
    m.trained_ds,
    r.run_id
FROM model_runs AS r
LEFT JOIN model_registry AS m
    ON m.model_name = r.model_name AND m.model_version = r.model_version AND m.objective = r.task
ORDER BY r.task, r.metric, r.scenario, r.ds, r.model_name;
