-- Partition of reviews for one day: the reviews written in [day_start, day_end), by review_id.
SELECT review_id, order_id, user_id, item_id, rating, title, body, created_at
FROM reviews WHERE created_at >= :day_start AND created_at < :day_end
ORDER BY review_id
