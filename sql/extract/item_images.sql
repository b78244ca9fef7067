-- Extract of item_images: every item image updated before window_end, by item_id.
SELECT item_id, image, updated_at FROM item_images WHERE updated_at < :window_end ORDER BY item_id
