-- Probability that each review written on day ds is negative (rating <= 2), from its text and the
-- shared user/item representations of the multi-task network.
CREATE TABLE IF NOT EXISTS score_review_sentiment (
    ds            DATE NOT NULL,
    review_id     BIGINT NOT NULL,
    p_negative    DOUBLE PRECISION NOT NULL,
    model_version TEXT NOT NULL,
    PRIMARY KEY (ds, review_id)
);
CREATE INDEX IF NOT EXISTS ix_score_review_sentiment_review ON score_review_sentiment (review_id);
-- What each column means (PostgreSQL keeps them in its catalogue, see \d+ score_review_sentiment in psql, and docs/data_dictionary.md).
COMMENT ON TABLE score_review_sentiment IS 'Probability that each review written on day ds is negative.';
COMMENT ON COLUMN score_review_sentiment.ds IS 'The day the reviews were written (UTC).';
COMMENT ON COLUMN score_review_sentiment.review_id IS 'The review (reviews.review_id).';
COMMENT ON COLUMN score_review_sentiment.p_negative IS 'Predicted probability that the rating is 2 or less, from the text and the shared user/item representations.';
COMMENT ON COLUMN score_review_sentiment.model_version IS 'The network version that produced the row.';
