-- Generator truth: the category the image was drawn for (the listing may be wrong).
CREATE TABLE IF NOT EXISTS truth_items (
    item_id       BIGINT PRIMARY KEY,
    true_category TEXT NOT NULL
);
