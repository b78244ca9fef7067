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
-- What each column means (PostgreSQL keeps them in its catalogue, see \d+ score_item_category in psql, and docs/data_dictionary.md).
COMMENT ON TABLE score_item_category IS 'The category each item''s image looks like, next to the category it is listed under.';
COMMENT ON COLUMN score_item_category.ds IS 'The day scored (UTC).';
COMMENT ON COLUMN score_item_category.item_id IS 'The item (items.item_id).';
COMMENT ON COLUMN score_item_category.listed_category IS 'The category the seller listed it under (items.category on ds).';
COMMENT ON COLUMN score_item_category.predicted_category IS 'The category its image looks like.';
COMMENT ON COLUMN score_item_category.confidence IS 'The predicted category''s probability.';
COMMENT ON COLUMN score_item_category.model_version IS 'The network version that produced the row.';
