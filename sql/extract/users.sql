-- Extract of users: users signed up before window_end and active (click, order or review) in the window, by user_id.
SELECT user_id, signup_at, country, birth_year FROM users
WHERE signup_at < :window_end AND user_id IN (
    SELECT user_id FROM clicks WHERE event_time >= :window_start AND event_time < :window_end
    UNION SELECT user_id FROM orders WHERE created_at >= :window_start AND created_at < :window_end
    UNION SELECT user_id FROM reviews WHERE created_at >= :window_start AND created_at < :window_end)
ORDER BY user_id
