-- Extract of orders: the orders created in the training window [window_start, window_end), by order_id.
SELECT order_id, user_id, created_at, amount, payment_method, device_id, ip_address, channel,
       ship_country, status
FROM orders WHERE created_at >= :window_start AND created_at < :window_end
ORDER BY order_id
