-- Fraud probability for every order placed on day ds, from the multi-task network and LightGBM.
CREATE TABLE IF NOT EXISTS score_order_fraud (
    ds            DATE NOT NULL,
    order_id      BIGINT NOT NULL,
    p_fraud_mtl   DOUBLE PRECISION NOT NULL,
    p_fraud_lgbm  DOUBLE PRECISION NOT NULL,
    model_version TEXT NOT NULL,
    PRIMARY KEY (ds, order_id)
);
CREATE INDEX IF NOT EXISTS ix_score_order_fraud_order ON score_order_fraud (order_id);
-- The flagged orders of v_fraud_review_queue (same threshold), without scanning every order.
CREATE INDEX IF NOT EXISTS ix_score_order_fraud_flagged ON score_order_fraud (ds) WHERE p_fraud_mtl > 0.5 OR p_fraud_lgbm > 0.5;
-- What each column means (PostgreSQL keeps them in its catalogue, see \d+ score_order_fraud in psql, and docs/data_dictionary.md).
COMMENT ON TABLE score_order_fraud IS 'Fraud probability of every order placed on day ds, from both models.';
COMMENT ON COLUMN score_order_fraud.ds IS 'The day the orders were placed (UTC).';
COMMENT ON COLUMN score_order_fraud.order_id IS 'The order (orders.order_id).';
COMMENT ON COLUMN score_order_fraud.p_fraud_mtl IS 'Fraud probability from the multi-task network.';
COMMENT ON COLUMN score_order_fraud.p_fraud_lgbm IS 'Fraud probability from the LightGBM baseline.';
COMMENT ON COLUMN score_order_fraud.model_version IS 'Both versions, the network''s then LightGBM''s, joined by a semicolon.';
