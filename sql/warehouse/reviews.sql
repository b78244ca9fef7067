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
-- What each column means (PostgreSQL keeps them in its catalogue, see \d+ reviews in psql, and docs/data_dictionary.md).
COMMENT ON TABLE reviews IS 'Product reviews (a source).';
COMMENT ON COLUMN reviews.review_id IS 'The review''s id.';
COMMENT ON COLUMN reviews.order_id IS 'The order the review is about (orders.order_id), NULL for a review without an order.';
COMMENT ON COLUMN reviews.user_id IS 'The reviewer (users.user_id).';
COMMENT ON COLUMN reviews.item_id IS 'The item reviewed (items.item_id).';
COMMENT ON COLUMN reviews.rating IS '1 to 5 stars, a review is negative when rating <= 2.';
COMMENT ON COLUMN reviews.title IS 'The review''s title, may be NULL.';
COMMENT ON COLUMN reviews.body IS 'The review''s text, may be NULL.';
COMMENT ON COLUMN reviews.created_at IS 'When the review was written (UTC).';
