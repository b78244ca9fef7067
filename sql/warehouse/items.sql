-- Catalogue items as listed by sellers (category may be wrong: that is what the image task checks).
CREATE TABLE IF NOT EXISTS items (
    item_id    BIGINT PRIMARY KEY,
    category   TEXT NOT NULL,
    price      NUMERIC(12,2) NOT NULL,
    seller_id  BIGINT NOT NULL,
    title      TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);
-- What each column means (PostgreSQL keeps them in its catalogue, see \d+ items in psql, and docs/data_dictionary.md).
COMMENT ON TABLE items IS 'Catalogue items as listed by sellers (a source).';
COMMENT ON COLUMN items.item_id IS 'The item''s id.';
COMMENT ON COLUMN items.category IS 'The category the seller listed the item under (may be wrong: score_item_category checks it).';
COMMENT ON COLUMN items.price IS 'List price in the shop currency, from 0 up to SHOPMTL_MONEY_CEILING.';
COMMENT ON COLUMN items.seller_id IS 'The seller''s id.';
COMMENT ON COLUMN items.title IS 'The listing''s title.';
COMMENT ON COLUMN items.created_at IS 'When the item was listed (UTC).';
