-- funnel.sql from rollup_sessions (any time zone: sessions keep their exact start).
WITH steps (step_index, step) AS (
    VALUES (1, 'product_view'), (2, 'add_to_cart'), (3, 'begin_checkout'), (4, 'purchase')
), sessions AS (
    SELECT funnel_step
    FROM rollup_sessions
    WHERE session_start >= %(start)s::timestamptz AND session_start < %(end)s::timestamptz
      AND (%(include_bots)s::boolean OR NOT is_bot)
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
