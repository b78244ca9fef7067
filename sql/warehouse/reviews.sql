-- Product reviews; rating 1..5; a review is negative when rating <= 2.
CREATE TABLE IF NOT EXISTS reviews (
    review_id  BIGINT PRIMARY KEY,
    order_id   BIGINT NULL,
    user_id    BIGINT NOT NULL,
    item_id    BIGINT NOT NULL,
    rating     SMALLINT NOT NULL,
    title      TEXT NULL,
    body       TEXT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_reviews_created_at ON reviews (created_at);
