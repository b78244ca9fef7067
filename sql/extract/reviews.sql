-- Extract of reviews: the reviews written in the training window [window_start, window_end), by review_id.
SELECT review_id, order_id, user_id, item_id, rating, title, body, created_at
FROM reviews WHERE created_at >= :window_start AND created_at < :window_end
ORDER BY review_id
