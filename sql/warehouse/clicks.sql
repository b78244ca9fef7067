-- Behavioural events: event_type is 'impression' | 'click' | 'add_to_cart'. position is the slot
-- of an impression on the page (NULL for other events). scenario is the surface the event happened
-- on (the demo's: 'home_feed' | 'search' | 'product_page' | 'cart'; a platform's own names; NULL
-- when unknown).
CREATE TABLE IF NOT EXISTS clicks (
    event_id   BIGINT PRIMARY KEY,
    event_time TIMESTAMP NOT NULL,
    user_id    BIGINT NOT NULL,
    item_id    BIGINT NOT NULL,
    session_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    position   INT NULL,
    scenario   TEXT NULL
);
CREATE INDEX IF NOT EXISTS ix_clicks_event_time ON clicks (event_time);
