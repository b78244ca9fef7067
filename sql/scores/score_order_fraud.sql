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
