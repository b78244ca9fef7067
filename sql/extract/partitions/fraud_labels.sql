-- Partition of fraud_labels for one day: the labels that became known in [day_start, day_end) (labeled_at),
-- with their order's created_at so that a window keeps only the labels of its own orders, by order_id.
SELECT fl.order_id, fl.is_fraud, fl.labeled_at, o.created_at AS order_created_at
FROM fraud_labels fl JOIN orders o ON o.order_id = fl.order_id
WHERE fl.labeled_at >= :day_start AND fl.labeled_at < :day_end
ORDER BY fl.order_id
