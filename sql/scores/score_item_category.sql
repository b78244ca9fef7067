-- The category each item's image looks like, next to the category it is listed under; a confident
-- disagreement suggests a mis-categorised listing.
CREATE TABLE IF NOT EXISTS score_item_category (
    ds                 DATE NOT NULL,
    item_id            BIGINT NOT NULL,
    listed_category    TEXT NOT NULL,
    predicted_category TEXT NOT NULL,
    confidence         DOUBLE PRECISION NOT NULL,
    model_version      TEXT NOT NULL,
    PRIMARY KEY (ds, item_id)
);
CREATE INDEX IF NOT EXISTS ix_score_item_category_item ON score_item_category (item_id);
