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
-- What each column means (PostgreSQL keeps them in its catalogue, see \d+ clicks in psql, and docs/data_dictionary.md).
COMMENT ON TABLE clicks IS 'Behavioural events: impressions, clicks and add-to-carts (a source).';
COMMENT ON COLUMN clicks.event_id IS 'The event''s id.';
COMMENT ON COLUMN clicks.event_time IS 'When the event happened (UTC).';
COMMENT ON COLUMN clicks.user_id IS 'The user it happened to (users.user_id).';
COMMENT ON COLUMN clicks.item_id IS 'The item shown or clicked (items.item_id).';
COMMENT ON COLUMN clicks.session_id IS 'The browsing session, a click counts for an impression of the same session.';
COMMENT ON COLUMN clicks.event_type IS 'impression, click or add_to_cart.';
COMMENT ON COLUMN clicks.position IS 'The impression''s slot on the page (0 = first), NULL for other events.';
COMMENT ON COLUMN clicks.scenario IS 'The surface the event happened on (home_feed, search, product_page, cart, or the platform''s own names), NULL when unknown.';
