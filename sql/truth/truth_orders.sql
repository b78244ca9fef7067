-- Generator truth: probability that the order is fraud.
CREATE TABLE IF NOT EXISTS truth_orders (
    order_id BIGINT PRIMARY KEY,
    p_fraud  DOUBLE PRECISION NOT NULL
);
