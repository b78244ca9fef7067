-- Each user's recommendations from the newest day that has recommendations for that user: one row
-- per (user, scenario, recommended item), rank 1 = best within the scenario. ds says which day's
-- lists they are (a user inactive since keeps the lists of the last day they were active).
CREATE VIEW v_latest_recommendations AS
SELECT s.ds, s.user_id, s.scenario, s.rank, s.item_id, s.p_click, s.p_purchase, s.model_version
FROM score_user_item AS s
JOIN (SELECT user_id, MAX(ds) AS ds FROM score_user_item GROUP BY user_id) AS latest
    ON latest.user_id = s.user_id AND latest.ds = s.ds;
