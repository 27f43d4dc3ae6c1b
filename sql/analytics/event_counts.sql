-- Events per event name in [start, end).
-- Parameters: start, end (timestamptz), include_bots (boolean).
SELECT event_name, count(*) AS events
FROM clickstream_events
WHERE event_timestamp >= %(start)s::timestamptz AND event_timestamp < %(end)s::timestamptz
  AND (%(include_bots)s::boolean OR NOT is_bot)
GROUP BY event_name
ORDER BY events DESC, event_name;
