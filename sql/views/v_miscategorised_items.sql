-- Likely mis-categorised listings: items of the newest day of score_item_category whose image looks
-- like another category than the one they are listed under, most confident first. title and
-- seller_id come from items (NULL when the item row is gone).
CREATE VIEW v_miscategorised_items AS
SELECT
    c.ds,
    c.item_id,
    c.listed_category,
    c.predicted_category,
    c.confidence,
    i.title,
    i.seller_id,
    c.model_version
FROM score_item_category AS c
LEFT JOIN items AS i ON i.item_id = c.item_id
WHERE c.ds = (SELECT MAX(ds) FROM score_item_category)
    AND c.predicted_category <> c.listed_category
ORDER BY c.confidence DESC, c.item_id;
