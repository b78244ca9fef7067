-- Each user's recommendations from the newest day that has recommendations for that user: one row
-- per (user, recommended item), rank 1 = best. ds says which day's list it is (a user inactive
-- since keeps the list of the last day they were active).
CREATE VIEW v_latest_recommendations AS
SELECT s.ds, s.user_id, s.rank, s.item_id, s.p_click, s.p_purchase, s.model_version
FROM score_user_item AS s
JOIN (SELECT user_id, MAX(ds) AS ds FROM score_user_item GROUP BY user_id) AS latest
    ON latest.user_id = s.user_id AND latest.ds = s.ds;
