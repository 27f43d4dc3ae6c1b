-- Events per day of week (0 = Monday) and hour of day in the business time zone, in [start, end);
-- only the cells that have events.
-- Parameters: start, end (timestamptz), tz (IANA zone name), include_bots (boolean).
SELECT (extract(isodow FROM event_timestamp AT TIME ZONE %(tz)s::text) - 1)::integer AS dow,
       extract(hour FROM event_timestamp AT TIME ZONE %(tz)s::text)::integer AS hour,
       count(*) AS events
FROM clickstream_events
WHERE event_timestamp >= %(start)s::timestamptz AND event_timestamp < %(end)s::timestamptz
  AND (%(include_bots)s::boolean OR NOT is_bot)
GROUP BY 1, 2
ORDER BY dow, hour;
