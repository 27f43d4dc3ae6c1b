-- Events (event-scoped) per day of week (0 = Monday .. 6) and hour of day (0-23) in the business time zone,
-- in [start, end): all 168 cells, zero when none.
-- Source: the UTC-hour rollups when dashboard_reads_rollups (migration 0007) says they answer exactly, else the
-- events table (the other branch's scan is skipped: a one-time filter on the parameters).
-- Parameters: start, end (timestamptz), tz (IANA zone name), login_state (all | signed_in | anonymous), device
-- (all | desktop | mobile | tablet), include_bots (boolean).
WITH source AS (
    SELECT dashboard_reads_rollups(%(start)s::timestamptz, %(end)s::timestamptz, %(tz)s::text) AS rollup
), cells AS (
    SELECT dow, hour FROM generate_series(0, 6) AS dow CROSS JOIN generate_series(0, 23) AS hour
), counts AS (
    SELECT (extract(isodow FROM hour AT TIME ZONE %(tz)s::text) - 1)::integer AS dow,
           extract(hour FROM hour AT TIME ZONE %(tz)s::text)::integer AS hour,
           sum(events) AS events
    FROM rollup_hourly_events
    WHERE (SELECT rollup FROM source)
      AND hour >= %(start)s::timestamptz AND hour < %(end)s::timestamptz
      AND (%(include_bots)s::boolean OR NOT is_bot)
      AND (%(device)s::text = 'all' OR device_category = %(device)s::text)
      AND (%(login_state)s::text = 'all' OR signed_in = (%(login_state)s::text = 'signed_in'))
    GROUP BY 1, 2
    UNION ALL
    SELECT (extract(isodow FROM event_timestamp AT TIME ZONE %(tz)s::text) - 1)::integer,
           extract(hour FROM event_timestamp AT TIME ZONE %(tz)s::text)::integer,
           count(*)
    FROM clickstream_events
    WHERE NOT (SELECT rollup FROM source)
      AND event_timestamp >= %(start)s::timestamptz AND event_timestamp < %(end)s::timestamptz
      AND (%(include_bots)s::boolean OR NOT is_bot)
      AND (%(device)s::text = 'all' OR device_category = %(device)s::text)
      AND (%(login_state)s::text = 'all' OR (user_id IS NOT NULL) = (%(login_state)s::text = 'signed_in'))
    GROUP BY 1, 2
)
SELECT cells.dow, cells.hour, coalesce(c.events, 0)::bigint AS events
FROM cells LEFT JOIN counts AS c USING (dow, hour)
ORDER BY cells.dow, cells.hour;
