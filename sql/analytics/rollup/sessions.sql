-- sessions.sql from the session rollups, with the same two branches as rollup/funnel.sql. On
-- rollup_hourly_sessions a client is counted once, by its first session in the range: the one whose previous
-- session (prev_hour; prev_any_hour when bots are included) started before the range (see migration 0004).
WITH hourly_range AS (
    SELECT date_trunc('hour', %(start)s::timestamptz, 'UTC') = %(start)s::timestamptz
           AND date_trunc('hour', %(end)s::timestamptz, 'UTC') = %(end)s::timestamptz
           AND %(end)s::timestamptz - %(start)s::timestamptz <= interval '840 hours' AS yes
), hourly AS (
    SELECT coalesce(sum(sessions), 0) AS sessions,
           coalesce(sum(sessions) FILTER (WHERE CASE WHEN %(include_bots)s::boolean THEN prev_any_hour
                                                     ELSE prev_hour END < %(start)s::timestamptz), 0) AS visitors,
           coalesce(sum(bounces), 0) AS bounces,
           coalesce(sum(signed_in), 0) AS signed_in_sessions,
           coalesce(sum(events), 0) AS events
    FROM rollup_hourly_sessions
    WHERE (SELECT yes FROM hourly_range)
      AND hour >= %(start)s::timestamptz AND hour < %(end)s::timestamptz
      AND (%(include_bots)s::boolean OR NOT is_bot)
), sessions AS (
    SELECT count(*) AS sessions,
           count(DISTINCT client_id) AS visitors,
           count(*) FILTER (WHERE events = 1) AS bounces,
           count(*) FILTER (WHERE signed_in) AS signed_in_sessions,
           coalesce(sum(events), 0) AS events
    FROM rollup_sessions
    WHERE NOT (SELECT yes FROM hourly_range)
      AND session_start >= %(start)s::timestamptz AND session_start < %(end)s::timestamptz
      AND (%(include_bots)s::boolean OR NOT is_bot)
), total AS (
    SELECT (h.sessions + s.sessions)::bigint AS sessions, (h.visitors + s.visitors)::bigint AS visitors,
           (h.bounces + s.bounces)::bigint AS bounces,
           (h.signed_in_sessions + s.signed_in_sessions)::bigint AS signed_in_sessions,
           (h.events + s.events)::bigint AS events
    FROM hourly AS h CROSS JOIN sessions AS s
)
SELECT sessions, visitors, bounces, signed_in_sessions, events,
       bounces::float8 / nullif(sessions, 0) AS bounce_rate,
       sessions::float8 / nullif(visitors, 0) AS sessions_per_visitor,
       signed_in_sessions::float8 / nullif(sessions, 0) AS signed_in_share
FROM total;
