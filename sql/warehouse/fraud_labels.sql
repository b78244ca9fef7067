-- Fraud decisions (chargebacks, confirmed fraud, cleared disputes) that arrive days after the order.
-- A label may be used only once labeled_at has passed.
CREATE TABLE IF NOT EXISTS fraud_labels (
    order_id   BIGINT PRIMARY KEY,
    is_fraud   BOOLEAN NOT NULL,
    labeled_at TIMESTAMP NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_fraud_labels_labeled_at ON fraud_labels (labeled_at);
