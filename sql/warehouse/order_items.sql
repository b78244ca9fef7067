-- Lines of an order.
CREATE TABLE IF NOT EXISTS order_items (
    order_id   BIGINT NOT NULL,
    item_id    BIGINT NOT NULL,
    quantity   INT NOT NULL,
    unit_price NUMERIC(12,2) NOT NULL,
    PRIMARY KEY (order_id, item_id)
);
-- What each column means (PostgreSQL keeps them in its catalogue, see \d+ order_items in psql, and docs/data_dictionary.md).
COMMENT ON TABLE order_items IS 'Lines of an order (a source).';
COMMENT ON COLUMN order_items.order_id IS 'The order (orders.order_id).';
COMMENT ON COLUMN order_items.item_id IS 'The item bought (items.item_id).';
COMMENT ON COLUMN order_items.quantity IS 'Units bought, at least 1.';
COMMENT ON COLUMN order_items.unit_price IS 'Price of one unit in the shop currency, from 0 up to SHOPMTL_MONEY_CEILING.';
