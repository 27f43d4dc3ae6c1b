-- sessions.sql from rollup_sessions (any time zone: sessions keep their exact start).
WITH sessions AS (
    SELECT client_id, events, signed_in
    FROM rollup_sessions
    WHERE session_start >= %(start)s::timestamptz AND session_start < %(end)s::timestamptz
      AND (%(include_bots)s::boolean OR NOT is_bot)
)
SELECT count(*) AS sessions,
       count(DISTINCT client_id) AS visitors,
       count(*) FILTER (WHERE events = 1) AS bounces,
       count(*) FILTER (WHERE signed_in) AS signed_in_sessions,
       coalesce(sum(events), 0) AS events,
       (count(*) FILTER (WHERE events = 1))::float8 / nullif(count(*), 0) AS bounce_rate,
       count(*)::float8 / nullif(count(DISTINCT client_id), 0) AS sessions_per_visitor,
       (count(*) FILTER (WHERE signed_in))::float8 / nullif(count(*), 0) AS signed_in_share
FROM sessions;
