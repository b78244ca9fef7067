-- Fraud decisions (chargebacks, confirmed fraud, cleared disputes) that arrive days after the order.
-- A label may be used only once labeled_at has passed.
CREATE TABLE IF NOT EXISTS fraud_labels (
    order_id   BIGINT PRIMARY KEY,
    is_fraud   BOOLEAN NOT NULL,
    labeled_at TIMESTAMP NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_fraud_labels_labeled_at ON fraud_labels (labeled_at);
-- What each column means (PostgreSQL keeps them in its catalogue, see \d+ fraud_labels in psql, and docs/data_dictionary.md).
COMMENT ON TABLE fraud_labels IS 'Fraud decisions (chargebacks, confirmed fraud, cleared disputes) that arrive days after the order (a source).';
COMMENT ON COLUMN fraud_labels.order_id IS 'The order decided on (orders.order_id).';
COMMENT ON COLUMN fraud_labels.is_fraud IS 'True when the order was fraud.';
COMMENT ON COLUMN fraud_labels.labeled_at IS 'When the decision became known (UTC). A label is used only after it, and never before its order.';
