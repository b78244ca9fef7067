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
-- What each column means (PostgreSQL keeps them in its catalogue, see \d+ score_user_item in psql, and docs/data_dictionary.md).
COMMENT ON TABLE score_user_item IS 'Top 20 recommendations per user active on day ds and scenario, published by the nightly run.';
COMMENT ON COLUMN score_user_item.ds IS 'The day scored (UTC): the users active on it get lists.';
COMMENT ON COLUMN score_user_item.user_id IS 'The user (users.user_id).';
COMMENT ON COLUMN score_user_item.scenario IS 'The surface the list is for (a scenario the user was shown items on during ds), or any.';
COMMENT ON COLUMN score_user_item.item_id IS 'The recommended item (items.item_id).';
COMMENT ON COLUMN score_user_item.p_click IS 'Predicted probability that the user clicks the item on this surface.';
COMMENT ON COLUMN score_user_item.p_purchase IS 'Predicted probability that the user buys it: p_click times p(convert | click) (ESMM).';
COMMENT ON COLUMN score_user_item.rank IS '1 = best, by p_purchase, within the user and scenario.';
COMMENT ON COLUMN score_user_item.model_version IS 'The network version that produced the row (model_registry.model_version).';
