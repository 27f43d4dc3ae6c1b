-- peak_activity.sql from rollup_hourly_events (a time zone whose offsets are whole hours: each UTC hour is
-- one local hour).
SELECT (extract(isodow FROM hour AT TIME ZONE %(tz)s::text) - 1)::integer AS dow,
       extract(hour FROM hour AT TIME ZONE %(tz)s::text)::integer AS hour,
       sum(events)::bigint AS events
FROM rollup_hourly_events
WHERE hour >= %(start)s::timestamptz AND hour < %(end)s::timestamptz
  AND (%(include_bots)s::boolean OR NOT is_bot)
GROUP BY 1, 2
ORDER BY dow, hour;
