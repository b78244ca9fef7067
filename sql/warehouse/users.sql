-- Registered customers. signup_at is UTC.
CREATE TABLE IF NOT EXISTS users (
    user_id    BIGINT PRIMARY KEY,
    signup_at  TIMESTAMP NOT NULL,
    country    TEXT NOT NULL,
    birth_year INT NULL
);
