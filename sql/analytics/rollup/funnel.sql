-- funnel.sql from the session rollups. A range that starts and ends on whole UTC hours and spans at most
-- 840 hours (35 days; any business time zone whose offsets are whole hours) reads rollup_hourly_sessions,
-- a few thousand rows; any other range (Asia/Kolkata, or longer) reads rollup_sessions, one row per session
-- with its exact start. The other branch's scan is skipped (a one-time filter on the parameters).
WITH steps (step_index, step) AS (
    VALUES (1, 'product_view'), (2, 'add_to_cart'), (3, 'begin_checkout'), (4, 'purchase')
), hourly_range AS (
    SELECT date_trunc('hour', %(start)s::timestamptz, 'UTC') = %(start)s::timestamptz
           AND date_trunc('hour', %(end)s::timestamptz, 'UTC') = %(end)s::timestamptz
           AND %(end)s::timestamptz - %(start)s::timestamptz <= interval '840 hours' AS yes
), hourly AS (
    SELECT sum(product_view) AS s1, sum(add_to_cart) AS s2, sum(begin_checkout) AS s3, sum(purchase) AS s4
    FROM rollup_hourly_sessions
    WHERE (SELECT yes FROM hourly_range)
      AND hour >= %(start)s::timestamptz AND hour < %(end)s::timestamptz
      AND (%(include_bots)s::boolean OR NOT is_bot)
), sessions AS (
    SELECT count(*) FILTER (WHERE funnel_step >= 1) AS s1, count(*) FILTER (WHERE funnel_step >= 2) AS s2,
           count(*) FILTER (WHERE funnel_step >= 3) AS s3, count(*) FILTER (WHERE funnel_step >= 4) AS s4
    FROM rollup_sessions
    WHERE NOT (SELECT yes FROM hourly_range)
      AND session_start >= %(start)s::timestamptz AND session_start < %(end)s::timestamptz
      AND (%(include_bots)s::boolean OR NOT is_bot)
), reached AS (
    SELECT steps.step_index, steps.step,
           (coalesce(CASE steps.step_index WHEN 1 THEN h.s1 WHEN 2 THEN h.s2 WHEN 3 THEN h.s3 ELSE h.s4 END, 0)
            + CASE steps.step_index WHEN 1 THEN s.s1 WHEN 2 THEN s.s2 WHEN 3 THEN s.s3 ELSE s.s4 END)::bigint
               AS sessions
    FROM steps CROSS JOIN hourly AS h CROSS JOIN sessions AS s
)
SELECT step_index, step, sessions,
       sessions::float8 / nullif(lag(sessions) OVER (ORDER BY step_index), 0) AS conversion,
       lag(sessions) OVER (ORDER BY step_index) - sessions AS drop_off
FROM reached
ORDER BY step_index;
