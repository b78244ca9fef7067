-- One product photo per item, PNG or JPEG bytes. BYTEA is PostgreSQL's binary type, and SQLite stores
-- the bytes unchanged under any declared type, so one file serves both.
CREATE TABLE IF NOT EXISTS item_images (
    item_id    BIGINT PRIMARY KEY,
    image      BYTEA NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_item_images_updated_at ON item_images (updated_at);
-- What each column means (PostgreSQL keeps them in its catalogue, see \d+ item_images in psql, and docs/data_dictionary.md).
COMMENT ON TABLE item_images IS 'One product photo per item, PNG or JPEG bytes (a source).';
COMMENT ON COLUMN item_images.item_id IS 'The item the photo shows (items.item_id).';
COMMENT ON COLUMN item_images.image IS 'The photo''s bytes, PNG or JPEG, 8 to 10,000 pixels a side, at most 20 MB.';
COMMENT ON COLUMN item_images.updated_at IS 'When the photo was last replaced (UTC).';
