-- Extract of fraud_labels: labels of the window's orders known before window_end (labeled_at), by order_id.
SELECT fl.order_id, fl.is_fraud, fl.labeled_at
FROM fraud_labels fl JOIN orders o ON o.order_id = fl.order_id
WHERE o.created_at >= :window_start AND o.created_at < :window_end
  AND fl.labeled_at < :window_end
ORDER BY fl.order_id
