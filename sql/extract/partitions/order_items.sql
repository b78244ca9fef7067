-- Partition of order_items for one day: the lines of the orders created in [day_start, day_end), by order and item.
SELECT oi.order_id, oi.item_id, oi.quantity, oi.unit_price
FROM order_items oi JOIN orders o ON o.order_id = oi.order_id
WHERE o.created_at >= :day_start AND o.created_at < :day_end
ORDER BY oi.order_id, oi.item_id
