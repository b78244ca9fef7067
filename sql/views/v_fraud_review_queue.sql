-- Fraud review queue: one row per scored order that either model finds more likely fraud than not
-- (p_fraud_mtl > 0.5 OR p_fraud_lgbm > 0.5; the threshold is fixed here, filter p_fraud_max for a
-- stricter queue). flagged_by: 'both', 'multitask' or 'fraud_lgbm'. Order context comes from
-- orders (no device_id / ip_address); NULL when the order row is gone. Highest risk first per day.
CREATE VIEW v_fraud_review_queue AS
SELECT
    f.ds,
    f.order_id,
    CASE WHEN f.p_fraud_mtl >= f.p_fraud_lgbm THEN f.p_fraud_mtl ELSE f.p_fraud_lgbm END AS p_fraud_max,
    f.p_fraud_mtl,
    f.p_fraud_lgbm,
    CASE
        WHEN f.p_fraud_mtl > 0.5 AND f.p_fraud_lgbm > 0.5 THEN 'both'
        WHEN f.p_fraud_mtl > 0.5 THEN 'multitask'
        ELSE 'fraud_lgbm'
    END AS flagged_by,
    o.user_id,
    o.created_at AS order_created_at,
    o.amount,
    o.payment_method,
    o.channel,
    o.ship_country,
    o.status AS order_status,
    f.model_version
FROM score_order_fraud AS f
LEFT JOIN orders AS o ON o.order_id = f.order_id
WHERE f.p_fraud_mtl > 0.5 OR f.p_fraud_lgbm > 0.5
ORDER BY f.ds DESC, p_fraud_max DESC, f.order_id;
