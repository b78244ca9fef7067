-- Generator truth: probability that the review is negative (rating <= 2).
CREATE TABLE IF NOT EXISTS truth_reviews (
    review_id  BIGINT PRIMARY KEY,
    p_negative DOUBLE PRECISION NOT NULL
);
