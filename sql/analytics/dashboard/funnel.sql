-- The funnel product_view -> add_to_cart -> begin_checkout -> purchase of the DW sessions starting in
-- [start, end), per segment of the breakdown: none ('all'), device (the first event's device_category,
-- '(unknown)' when null), login_state (signed_in when the first event has a user_id, else anonymous),
-- traffic_source (the first event's utm_source, '(direct)' when null). sessions = sessions that reached the
-- step in order; conversion = sessions / the previous step's; drop_off = the previous step's minus these.
-- Parameters: start, end (timestamptz), login_state (all | signed_in | anonymous), device (all | desktop |
-- mobile | tablet), include_bots (boolean), breakdown (none | device | login_state | traffic_source).
WITH steps (step_index, step) AS (
    VALUES (1, 'product_view'), (2, 'add_to_cart'), (3, 'begin_checkout'), (4, 'purchase')
), ordered AS (
    SELECT client_id, is_bot, event_timestamp, device_category, user_id, utm_source,
           event_timestamp - lag(event_timestamp) OVER (PARTITION BY client_id, is_bot
                                                        ORDER BY event_timestamp, event_id)
               <= interval '30 minutes' AS continues
    FROM clickstream_events
    WHERE event_timestamp >= %(start)s::timestamptz - interval '30 minutes'
      AND event_timestamp < %(end)s::timestamptz
      AND (%(include_bots)s::boolean OR NOT is_bot)
), sessions AS (
    SELECT CASE %(breakdown)s::text
               WHEN 'device' THEN coalesce(o.device_category, '(unknown)')
               WHEN 'login_state' THEN CASE WHEN o.user_id IS NULL THEN 'anonymous' ELSE 'signed_in' END
               WHEN 'traffic_source' THEN coalesce(o.utm_source, '(direct)')
               ELSE 'all' END AS segment,
           s.funnel_step
    FROM ordered AS o
    JOIN clickstream_sessions(%(start)s::timestamptz - interval '30 minutes', 'infinity') AS s
      ON s.client_id = o.client_id AND s.is_bot = o.is_bot AND s.session_start = o.event_timestamp
    WHERE o.continues IS NOT TRUE AND o.event_timestamp >= %(start)s::timestamptz
      AND (%(device)s::text = 'all' OR o.device_category = %(device)s::text)
      AND (%(login_state)s::text = 'all' OR (o.user_id IS NOT NULL) = (%(login_state)s::text = 'signed_in'))
), segments AS (
    SELECT DISTINCT segment FROM sessions
    UNION
    SELECT 'all' WHERE %(breakdown)s::text = 'none'
), reached AS (
    SELECT g.segment, steps.step_index, steps.step,
           (SELECT count(*) FROM sessions AS s WHERE s.segment = g.segment AND s.funnel_step >= steps.step_index)
               AS sessions
    FROM segments AS g CROSS JOIN steps
)
SELECT segment, step_index, step, sessions,
       sessions::float8 / nullif(lag(sessions) OVER w, 0) AS conversion,
       lag(sessions) OVER w - sessions AS drop_off
FROM reached
WINDOW w AS (PARTITION BY segment ORDER BY step_index)
ORDER BY segment, step_index;
