-- Top-20 recommendations per user active on day ds and scenario (the surface: home_feed, search, ...)
-- the user was shown items on that day; a user active without a named scenario gets one list under
-- scenario 'any' (etl.contract.ANY_SCENARIO). p_purchase = p(click) * p(convert | click), both
-- predicted for that scenario.
CREATE TABLE IF NOT EXISTS score_user_item (
    ds            DATE NOT NULL,
    user_id       BIGINT NOT NULL,
    scenario      TEXT NOT NULL,
    item_id       BIGINT NOT NULL,
    p_click       DOUBLE PRECISION NOT NULL,
    p_purchase    DOUBLE PRECISION NOT NULL,
    rank          INT NOT NULL,
    model_version TEXT NOT NULL,
    PRIMARY KEY (ds, user_id, scenario, item_id)
);
CREATE INDEX IF NOT EXISTS ix_score_user_item_user ON score_user_item (user_id, ds);
CREATE INDEX IF NOT EXISTS ix_score_user_item_item ON score_user_item (item_id, ds);
