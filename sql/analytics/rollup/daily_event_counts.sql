-- daily_event_counts.sql from rollup_hourly_events (a time zone whose offsets are whole hours).
SELECT (hour AT TIME ZONE %(tz)s::text)::date AS day, event_name, sum(events)::bigint AS events
FROM rollup_hourly_events
WHERE hour >= %(start)s::timestamptz AND hour < %(end)s::timestamptz
  AND (%(include_bots)s::boolean OR NOT is_bot)
GROUP BY 1, 2
ORDER BY day, event_name;
