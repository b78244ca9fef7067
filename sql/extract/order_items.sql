-- Extract of order_items: the lines of the orders created in the training window, by order and item.
SELECT oi.order_id, oi.item_id, oi.quantity, oi.unit_price
FROM order_items oi JOIN orders o ON o.order_id = oi.order_id
WHERE o.created_at >= :window_start AND o.created_at < :window_end
ORDER BY oi.order_id, oi.item_id
