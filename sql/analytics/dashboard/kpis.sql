-- The KPIs of [start, end): events and revenue (sum of the purchase events' value) are event-scoped (each event's
-- own device_category and signed-in state); sessions, visitors (distinct client_id of those sessions),
-- product_view_sessions and purchase_sessions (sessions reaching those funnel steps in order) and conversion
-- (purchase_sessions / product_view_sessions, null without product views) are session-scoped (DW sessions
-- starting in the range, filtered by their first event).
-- Source: the UTC-hour rollups when dashboard_reads_rollups (migration 0007) says they answer exactly, else the
-- events table (the other branch's scan is skipped: a one-time filter on the parameters). Sessions when the
-- rollups are fresh but the range is not on whole UTC hours (Asia/Kolkata): rollup_sessions, exact starts.
-- Visitors on the rollups: rollup_hourly_visitors for ranges of at most 840 hours, else rollup_sessions.
-- Parameters: start, end (timestamptz), tz (IANA zone name), login_state (all | signed_in | anonymous), device
-- (all | desktop | mobile | tablet), include_bots (boolean).
WITH source AS (
    SELECT dashboard_reads_rollups(%(start)s::timestamptz, %(end)s::timestamptz, %(tz)s::text) AS rollup,
           NOT EXISTS (SELECT FROM rollup_pending
                       WHERE day >= (%(start)s::timestamptz AT TIME ZONE 'UTC')::date - 1) AS fresh
), events AS (
    SELECT sum(events) AS events, sum(value) FILTER (WHERE event_name = 'purchase') AS revenue
    FROM rollup_hourly_events
    WHERE (SELECT rollup FROM source)
      AND hour >= %(start)s::timestamptz AND hour < %(end)s::timestamptz
      AND (%(include_bots)s::boolean OR NOT is_bot)
      AND (%(device)s::text = 'all' OR device_category = %(device)s::text)
      AND (%(login_state)s::text = 'all' OR signed_in = (%(login_state)s::text = 'signed_in'))
    UNION ALL
    SELECT count(*), sum(value) FILTER (WHERE event_name = 'purchase')
    FROM clickstream_events
    WHERE NOT (SELECT rollup FROM source)
      AND event_timestamp >= %(start)s::timestamptz AND event_timestamp < %(end)s::timestamptz
      AND (%(include_bots)s::boolean OR NOT is_bot)
      AND (%(device)s::text = 'all' OR device_category = %(device)s::text)
      AND (%(login_state)s::text = 'all' OR (user_id IS NOT NULL) = (%(login_state)s::text = 'signed_in'))
), exact_sessions AS (
    SELECT client_id, is_bot, device_category, first_signed_in, funnel_step
    FROM rollup_sessions
    WHERE (SELECT fresh AND NOT rollup FROM source)
      AND session_start >= %(start)s::timestamptz AND session_start < %(end)s::timestamptz
    UNION ALL
    SELECT client_id, is_bot, device_category, first_signed_in, funnel_step
    FROM clickstream_sessions(%(start)s::timestamptz - interval '30 minutes', 'infinity')
    WHERE NOT (SELECT fresh FROM source)
      AND session_start >= %(start)s::timestamptz AND session_start < %(end)s::timestamptz
), kept_sessions AS (
    SELECT client_id, funnel_step
    FROM exact_sessions
    WHERE (%(include_bots)s::boolean OR NOT is_bot)
      AND (%(device)s::text = 'all' OR device_category = %(device)s::text)
      AND (%(login_state)s::text = 'all' OR first_signed_in = (%(login_state)s::text = 'signed_in'))
), sessions AS (
    SELECT sum(sessions) AS sessions, sum(product_view) AS product_view_sessions, sum(purchase) AS purchase_sessions
    FROM rollup_hourly_session_dims
    WHERE (SELECT rollup FROM source)
      AND hour >= %(start)s::timestamptz AND hour < %(end)s::timestamptz
      AND (%(include_bots)s::boolean OR NOT is_bot)
      AND (%(device)s::text = 'all' OR device_category = %(device)s::text)
      AND (%(login_state)s::text = 'all' OR first_signed_in = (%(login_state)s::text = 'signed_in'))
    UNION ALL
    SELECT count(*), count(*) FILTER (WHERE funnel_step >= 1), count(*) FILTER (WHERE funnel_step >= 4)
    FROM kept_sessions
), visitors AS (
    SELECT sum(sessions) AS visitors
    FROM rollup_hourly_visitors
    WHERE (SELECT rollup FROM source) AND %(end)s::timestamptz - %(start)s::timestamptz <= interval '840 hours'
      AND hour >= %(start)s::timestamptz AND hour < %(end)s::timestamptz AND prev_hour < %(start)s::timestamptz
      AND scope = CASE WHEN %(include_bots)s::boolean THEN 1 ELSE 0 END
                  + CASE WHEN %(device)s::text = 'all' THEN 0 ELSE 2 END
                  + CASE WHEN %(login_state)s::text = 'all' THEN 0 ELSE 4 END
      AND (%(device)s::text = 'all' OR device_category = %(device)s::text)
      AND (%(login_state)s::text = 'all' OR first_signed_in = (%(login_state)s::text = 'signed_in'))
    UNION ALL
    SELECT count(DISTINCT client_id)
    FROM rollup_sessions
    WHERE (SELECT rollup FROM source) AND %(end)s::timestamptz - %(start)s::timestamptz > interval '840 hours'
      AND session_start >= %(start)s::timestamptz AND session_start < %(end)s::timestamptz
      AND (%(include_bots)s::boolean OR NOT is_bot)
      AND (%(device)s::text = 'all' OR device_category = %(device)s::text)
      AND (%(login_state)s::text = 'all' OR first_signed_in = (%(login_state)s::text = 'signed_in'))
    UNION ALL
    SELECT count(DISTINCT client_id) FROM kept_sessions
), totals AS (
    SELECT (SELECT coalesce(sum(events), 0)::bigint FROM events) AS events,
           (SELECT coalesce(sum(revenue), 0) FROM events) AS revenue,
           (SELECT coalesce(sum(sessions), 0)::bigint FROM sessions) AS sessions,
           (SELECT coalesce(sum(visitors), 0)::bigint FROM visitors) AS visitors,
           (SELECT coalesce(sum(product_view_sessions), 0)::bigint FROM sessions) AS product_view_sessions,
           (SELECT coalesce(sum(purchase_sessions), 0)::bigint FROM sessions) AS purchase_sessions
)
SELECT events, sessions, visitors, product_view_sessions, purchase_sessions,
       purchase_sessions::float8 / nullif(product_view_sessions, 0) AS conversion, revenue
FROM totals;
