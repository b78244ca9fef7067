-- One product photo per item, PNG or JPEG bytes. BYTEA is PostgreSQL's binary type, and SQLite stores
-- the bytes unchanged under any declared type, so one file serves both.
CREATE TABLE IF NOT EXISTS item_images (
    item_id    BIGINT PRIMARY KEY,
    image      BYTEA NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_item_images_updated_at ON item_images (updated_at);
