-- Partition of clicks for one day: the events of [day_start, day_end), by event_id.
SELECT event_id, event_time, user_id, item_id, session_id, event_type, position, scenario
FROM clicks WHERE event_time >= :day_start AND event_time < :day_end
ORDER BY event_id
