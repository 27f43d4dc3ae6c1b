-- Events per business-time-zone day and event name in [start, end).
-- Parameters: start, end (timestamptz), tz (IANA zone name), include_bots (boolean).
SELECT (event_timestamp AT TIME ZONE %(tz)s::text)::date AS day, event_name, count(*) AS events
FROM clickstream_events
WHERE event_timestamp >= %(start)s::timestamptz AND event_timestamp < %(end)s::timestamptz
  AND (%(include_bots)s::boolean OR NOT is_bot)
GROUP BY 1, 2
ORDER BY day, event_name;
