-- Catalogue items as listed by sellers (category may be wrong: that is what the image task checks).
CREATE TABLE IF NOT EXISTS items (
    item_id    BIGINT PRIMARY KEY,
    category   TEXT NOT NULL,
    price      NUMERIC(12,2) NOT NULL,
    seller_id  BIGINT NOT NULL,
    title      TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);
