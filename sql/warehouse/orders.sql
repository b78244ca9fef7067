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
