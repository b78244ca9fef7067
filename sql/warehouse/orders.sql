-- Orders as placed. amount is the order total in the shop currency.
CREATE TABLE IF NOT EXISTS orders (
    order_id       BIGINT PRIMARY KEY,
    user_id        BIGINT NOT NULL,
    created_at     TIMESTAMP NOT NULL,
    amount         NUMERIC(12,2) NOT NULL,
    payment_method TEXT NOT NULL,
    device_id      TEXT NOT NULL,
    ip_address     TEXT NOT NULL,
    channel        TEXT NOT NULL,
    ship_country   TEXT NOT NULL,
    status         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_orders_created_at ON orders (created_at);
-- What each column means (PostgreSQL keeps them in its catalogue, see \d+ orders in psql, and docs/data_dictionary.md).
COMMENT ON TABLE orders IS 'Orders as placed (a source).';
COMMENT ON COLUMN orders.order_id IS 'The order''s id.';
COMMENT ON COLUMN orders.user_id IS 'The customer who placed it (users.user_id).';
COMMENT ON COLUMN orders.created_at IS 'When the order was placed (UTC).';
COMMENT ON COLUMN orders.amount IS 'The order total in the shop currency, from 0 up to SHOPMTL_MONEY_CEILING.';
COMMENT ON COLUMN orders.payment_method IS 'How it was paid (card, voucher, ...).';
COMMENT ON COLUMN orders.device_id IS 'The device it was placed from.';
COMMENT ON COLUMN orders.ip_address IS 'The IP address it was placed from.';
COMMENT ON COLUMN orders.channel IS 'web or app.';
COMMENT ON COLUMN orders.ship_country IS 'The country it ships to.';
COMMENT ON COLUMN orders.status IS 'The order''s status (placed, shipped, ...).';
