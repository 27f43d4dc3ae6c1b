-- event_counts.sql from rollup_hourly_events (start and end on whole UTC hours).
SELECT event_name, sum(events)::bigint AS events
FROM rollup_hourly_events
WHERE hour >= %(start)s::timestamptz AND hour < %(end)s::timestamptz
  AND (%(include_bots)s::boolean OR NOT is_bot)
GROUP BY event_name
ORDER BY events DESC, event_name;
