-- The KPIs of [start, end): events and revenue (sum of the purchase events' value) are event-scoped (each event's
-- own device_category and signed-in state); sessions, visitors (distinct client_id of those sessions),
-- product_view_sessions and purchase_sessions (sessions reaching those funnel steps in order) and conversion
-- (purchase_sessions / product_view_sessions, null without product views) are session-scoped (DW sessions
-- starting in the range, filtered by their first event).
-- Parameters: start, end (timestamptz), login_state (all | signed_in | anonymous), device (all | desktop |
-- mobile | tablet), include_bots (boolean).
WITH events AS (
    SELECT count(*) AS events, coalesce(sum(value) FILTER (WHERE event_name = 'purchase'), 0) AS revenue
    FROM clickstream_events
    WHERE event_timestamp >= %(start)s::timestamptz AND event_timestamp < %(end)s::timestamptz
      AND (%(include_bots)s::boolean OR NOT is_bot)
      AND (%(device)s::text = 'all' OR device_category = %(device)s::text)
      AND (%(login_state)s::text = 'all' OR (user_id IS NOT NULL) = (%(login_state)s::text = 'signed_in'))
), ordered AS (
    SELECT client_id, is_bot, event_timestamp, device_category, user_id,
           event_timestamp - lag(event_timestamp) OVER (PARTITION BY client_id, is_bot
                                                        ORDER BY event_timestamp, event_id)
               <= interval '30 minutes' AS continues
    FROM clickstream_events
    WHERE event_timestamp >= %(start)s::timestamptz - interval '30 minutes'
      AND event_timestamp < %(end)s::timestamptz
      AND (%(include_bots)s::boolean OR NOT is_bot)
), sessions AS (
    SELECT o.client_id, s.funnel_step
    FROM ordered AS o
    JOIN clickstream_sessions(%(start)s::timestamptz - interval '30 minutes', 'infinity') AS s
      ON s.client_id = o.client_id AND s.is_bot = o.is_bot AND s.session_start = o.event_timestamp
    WHERE o.continues IS NOT TRUE AND o.event_timestamp >= %(start)s::timestamptz
      AND (%(device)s::text = 'all' OR o.device_category = %(device)s::text)
      AND (%(login_state)s::text = 'all' OR (o.user_id IS NOT NULL) = (%(login_state)s::text = 'signed_in'))
), totals AS (
    SELECT count(*) AS sessions, count(DISTINCT client_id) AS visitors,
           count(*) FILTER (WHERE funnel_step >= 1) AS product_view_sessions,
           count(*) FILTER (WHERE funnel_step >= 4) AS purchase_sessions
    FROM sessions
)
SELECT e.events, t.sessions, t.visitors, t.product_view_sessions, t.purchase_sessions,
       t.purchase_sessions::float8 / nullif(t.product_view_sessions, 0) AS conversion, e.revenue
FROM events AS e CROSS JOIN totals AS t;
