-- Extract of items: every item listed before window_end, by item_id.
SELECT item_id, category, price, seller_id, title, created_at FROM items
WHERE created_at < :window_end ORDER BY item_id
