-- Events (event-scoped) and sessions (DW sessions by the hour or day of their start, filtered by their first
-- event) per bucket of the range: every local hour or day in the business time zone, zero when none. bucket
-- is a local timestamp (without time zone) in tz.
-- Source: the UTC-hour rollups when dashboard_reads_rollups (migration 0007) says they answer exactly, else the
-- events table (the other branch's scan is skipped: a one-time filter on the parameters). Sessions when the
-- rollups are fresh but the range is not on whole UTC hours (Asia/Kolkata): rollup_sessions, exact starts.
-- Parameters: start, end (timestamptz), tz (IANA zone name), login_state (all | signed_in | anonymous), device
-- (all | desktop | mobile | tablet), include_bots (boolean), grain (hour | day).
WITH source AS (
    SELECT dashboard_reads_rollups(%(start)s::timestamptz, %(end)s::timestamptz, %(tz)s::text) AS rollup,
           NOT EXISTS (SELECT FROM rollup_pending
                       WHERE day >= (%(start)s::timestamptz AT TIME ZONE 'UTC')::date - 1) AS fresh
), exact_sessions AS (
    SELECT session_start, is_bot, device_category, first_signed_in
    FROM rollup_sessions
    WHERE (SELECT fresh AND NOT rollup FROM source)
      AND session_start >= %(start)s::timestamptz AND session_start < %(end)s::timestamptz
    UNION ALL
    SELECT session_start, is_bot, device_category, first_signed_in
    FROM clickstream_sessions(%(start)s::timestamptz - interval '30 minutes', %(end)s::timestamptz)
    WHERE NOT (SELECT fresh FROM source)
      AND session_start >= %(start)s::timestamptz AND session_start < %(end)s::timestamptz
), buckets AS (
    SELECT generate_series(%(start)s::timestamptz AT TIME ZONE %(tz)s::text,
                           (%(end)s::timestamptz AT TIME ZONE %(tz)s::text) - ('1 ' || %(grain)s::text)::interval,
                           ('1 ' || %(grain)s::text)::interval) AS bucket
), events AS (
    SELECT date_trunc(%(grain)s::text, hour AT TIME ZONE %(tz)s::text) AS bucket, sum(events) AS events
    FROM rollup_hourly_events
    WHERE (SELECT rollup FROM source)
      AND hour >= %(start)s::timestamptz AND hour < %(end)s::timestamptz
      AND (%(include_bots)s::boolean OR NOT is_bot)
      AND (%(device)s::text = 'all' OR device_category = %(device)s::text)
      AND (%(login_state)s::text = 'all' OR signed_in = (%(login_state)s::text = 'signed_in'))
    GROUP BY 1
    UNION ALL
    SELECT date_trunc(%(grain)s::text, event_timestamp AT TIME ZONE %(tz)s::text), count(*)
    FROM clickstream_events
    WHERE NOT (SELECT rollup FROM source)
      AND event_timestamp >= %(start)s::timestamptz AND event_timestamp < %(end)s::timestamptz
      AND (%(include_bots)s::boolean OR NOT is_bot)
      AND (%(device)s::text = 'all' OR device_category = %(device)s::text)
      AND (%(login_state)s::text = 'all' OR (user_id IS NOT NULL) = (%(login_state)s::text = 'signed_in'))
    GROUP BY 1
), sessions AS (
    SELECT date_trunc(%(grain)s::text, hour AT TIME ZONE %(tz)s::text) AS bucket, sum(sessions) AS sessions
    FROM rollup_hourly_session_dims
    WHERE (SELECT rollup FROM source)
      AND hour >= %(start)s::timestamptz AND hour < %(end)s::timestamptz
      AND (%(include_bots)s::boolean OR NOT is_bot)
      AND (%(device)s::text = 'all' OR device_category = %(device)s::text)
      AND (%(login_state)s::text = 'all' OR first_signed_in = (%(login_state)s::text = 'signed_in'))
    GROUP BY 1
    UNION ALL
    SELECT date_trunc(%(grain)s::text, session_start AT TIME ZONE %(tz)s::text), count(*)
    FROM exact_sessions
    WHERE (%(include_bots)s::boolean OR NOT is_bot)
      AND (%(device)s::text = 'all' OR device_category = %(device)s::text)
      AND (%(login_state)s::text = 'all' OR first_signed_in = (%(login_state)s::text = 'signed_in'))
    GROUP BY 1
)
SELECT b.bucket, coalesce(e.events, 0)::bigint AS events, coalesce(s.sessions, 0)::bigint AS sessions
FROM buckets AS b LEFT JOIN events AS e USING (bucket) LEFT JOIN sessions AS s USING (bucket)
ORDER BY b.bucket;
