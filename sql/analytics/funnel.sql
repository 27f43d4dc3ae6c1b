-- The funnel product_view -> add_to_cart -> begin_checkout -> purchase over the DW sessions that start in
-- [start, end) (a session is attributed to the range by its first event; its later events count even past
-- end). sessions = sessions that reached the step with the steps in order; conversion = sessions / sessions
-- of the previous step; drop_off = sessions of the previous step that did not reach this one.
-- The window starts 30 minutes before start so a session already running at start is not taken for a new
-- one, and has no end so a session started in range is read to its last event.
-- Parameters: start, end (timestamptz), include_bots (boolean).
WITH steps (step_index, step) AS (
    VALUES (1, 'product_view'), (2, 'add_to_cart'), (3, 'begin_checkout'), (4, 'purchase')
), sessions AS (
    SELECT s.funnel_step
    FROM clickstream_sessions(%(start)s::timestamptz - interval '30 minutes', 'infinity') s
    WHERE s.session_start >= %(start)s::timestamptz AND s.session_start < %(end)s::timestamptz
      AND (%(include_bots)s::boolean OR NOT s.is_bot)
), reached AS (
    SELECT steps.step_index, steps.step, count(sessions.funnel_step) AS sessions
    FROM steps LEFT JOIN sessions ON sessions.funnel_step >= steps.step_index
    GROUP BY steps.step_index, steps.step
)
SELECT step_index, step, sessions,
       sessions::float8 / nullif(lag(sessions) OVER (ORDER BY step_index), 0) AS conversion,
       lag(sessions) OVER (ORDER BY step_index) - sessions AS drop_off
FROM reached
ORDER BY step_index;
