-- Extract of clicks: the impression and click events of the training window [window_start, window_end), by event_id.
SELECT event_id, event_time, user_id, item_id, session_id, event_type, position, scenario
FROM clicks WHERE event_time >= :window_start AND event_time < :window_end
ORDER BY event_id
