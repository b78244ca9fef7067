-- Generator truth (demo warehouse only; the pipeline never reads truth_*).
-- p_click: probability the impression is clicked; p_convert: probability of an order within 24 h
-- given a click, so p_click * p_convert is the oracle purchase probability.
CREATE TABLE IF NOT EXISTS truth_impressions (
    event_id  BIGINT PRIMARY KEY,
    p_click   DOUBLE PRECISION NOT NULL,
    p_convert DOUBLE PRECISION NOT NULL
);
