-- The funnel product_view -> add_to_cart -> begin_checkout -> purchase of the DW sessions starting in
-- [start, end), per segment of the breakdown: none ('all'), device (the first event's device_category,
-- '(unknown)' when null), login_state (signed_in when the first event has a user_id, else anonymous),
-- traffic_source (the first event's utm_source, '(direct)' when null). sessions = sessions that reached the
-- step in order; conversion = sessions / the previous step's; drop_off = the previous step's minus these.
-- Source: the UTC-hour rollups when dashboard_reads_rollups (migration 0007) says they answer exactly, else the
-- events table (the other branch's scan is skipped: a one-time filter on the parameters). Sessions when the
-- rollups are fresh but the range is not on whole UTC hours (Asia/Kolkata): rollup_sessions, exact starts.
-- Parameters: start, end (timestamptz), tz (IANA zone name), login_state (all | signed_in | anonymous), device
-- (all | desktop | mobile | tablet), include_bots (boolean), breakdown (none | device | login_state |
-- traffic_source).
WITH source AS (
    SELECT dashboard_reads_rollups(%(start)s::timestamptz, %(end)s::timestamptz, %(tz)s::text) AS rollup,
           NOT EXISTS (SELECT FROM rollup_pending
                       WHERE day >= (%(start)s::timestamptz AT TIME ZONE 'UTC')::date - 1) AS fresh
), steps (step_index, step) AS (
    VALUES (1, 'product_view'), (2, 'add_to_cart'), (3, 'begin_checkout'), (4, 'purchase')
), exact_sessions AS (
    SELECT is_bot, device_category, first_signed_in, traffic_source, funnel_step
    FROM rollup_sessions
    WHERE (SELECT fresh AND NOT rollup FROM source)
      AND session_start >= %(start)s::timestamptz AND session_start < %(end)s::timestamptz
    UNION ALL
    SELECT is_bot, device_category, first_signed_in, traffic_source, funnel_step
    FROM clickstream_sessions(%(start)s::timestamptz - interval '30 minutes', 'infinity')
    WHERE NOT (SELECT fresh FROM source)
      AND session_start >= %(start)s::timestamptz AND session_start < %(end)s::timestamptz
), segments AS (
    SELECT CASE %(breakdown)s::text
               WHEN 'device' THEN coalesce(device_category, '(unknown)')
               WHEN 'login_state' THEN CASE WHEN first_signed_in THEN 'signed_in' ELSE 'anonymous' END
               WHEN 'traffic_source' THEN coalesce(traffic_source, '(direct)')
               ELSE 'all' END AS segment,
           sum(product_view) AS s1, sum(add_to_cart) AS s2, sum(begin_checkout) AS s3, sum(purchase) AS s4
    FROM rollup_hourly_session_dims
    WHERE (SELECT rollup FROM source)
      AND hour >= %(start)s::timestamptz AND hour < %(end)s::timestamptz
      AND (%(include_bots)s::boolean OR NOT is_bot)
      AND (%(device)s::text = 'all' OR device_category = %(device)s::text)
      AND (%(login_state)s::text = 'all' OR first_signed_in = (%(login_state)s::text = 'signed_in'))
    GROUP BY 1
    UNION ALL
    SELECT CASE %(breakdown)s::text
               WHEN 'device' THEN coalesce(device_category, '(unknown)')
               WHEN 'login_state' THEN CASE WHEN first_signed_in THEN 'signed_in' ELSE 'anonymous' END
               WHEN 'traffic_source' THEN coalesce(traffic_source, '(direct)')
               ELSE 'all' END,
           count(*) FILTER (WHERE funnel_step >= 1), count(*) FILTER (WHERE funnel_step >= 2),
           count(*) FILTER (WHERE funnel_step >= 3), count(*) FILTER (WHERE funnel_step >= 4)
    FROM exact_sessions
    WHERE (%(include_bots)s::boolean OR NOT is_bot)
      AND (%(device)s::text = 'all' OR device_category = %(device)s::text)
      AND (%(login_state)s::text = 'all' OR first_signed_in = (%(login_state)s::text = 'signed_in'))
    GROUP BY 1
    UNION ALL
    SELECT 'all', 0, 0, 0, 0 WHERE %(breakdown)s::text = 'none'
), reached AS (
    SELECT g.segment, steps.step_index, steps.step,
           sum(CASE steps.step_index WHEN 1 THEN g.s1 WHEN 2 THEN g.s2 WHEN 3 THEN g.s3 ELSE g.s4 END)::bigint
               AS sessions
    FROM segments AS g CROSS JOIN steps
    GROUP BY 1, 2, 3
)
SELECT segment, step_index, step, sessions,
       sessions::float8 / nullif(lag(sessions) OVER w, 0) AS conversion,
       lag(sessions) OVER w - sessions AS drop_off
FROM reached
WINDOW w AS (PARTITION BY segment ORDER BY step_index)
ORDER BY segment, step_index;
