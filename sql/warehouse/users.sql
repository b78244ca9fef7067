-- Registered customers. signup_at is UTC.
CREATE TABLE IF NOT EXISTS users (
    user_id    BIGINT PRIMARY KEY,
    signup_at  TIMESTAMP NOT NULL,
    country    TEXT NOT NULL,
    birth_year INT NULL
);
-- What each column means (PostgreSQL keeps them in its catalogue, see \d+ users in psql, and docs/data_dictionary.md).
COMMENT ON TABLE users IS 'Registered customers (a source: written by the platform, read by the nightly extract).';
COMMENT ON COLUMN users.user_id IS 'The customer''s id.';
COMMENT ON COLUMN users.signup_at IS 'When the customer signed up (UTC).';
COMMENT ON COLUMN users.country IS 'The customer''s country code (2 or 3 letters).';
COMMENT ON COLUMN users.birth_year IS 'Year of birth, NULL when not given.';
