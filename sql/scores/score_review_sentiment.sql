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
