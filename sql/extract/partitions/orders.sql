-- Partition of orders for one day: the orders created in [day_start, day_end), by order_id.
SELECT order_id, user_id, created_at, amount, payment_method, device_id, ip_address, channel,
       ship_country, status
FROM orders WHERE created_at >= :day_start AND created_at < :day_end
ORDER BY order_id
