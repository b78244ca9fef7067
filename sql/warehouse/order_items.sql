-- Lines of an order.
CREATE TABLE IF NOT EXISTS order_items (
    order_id   BIGINT NOT NULL,
    item_id    BIGINT NOT NULL,
    quantity   INT NOT NULL,
    unit_price NUMERIC(12,2) NOT NULL,
    PRIMARY KEY (order_id, item_id)
);
