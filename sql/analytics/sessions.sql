-- The DW sessions that start in [start, end): how many, by how many visitors (client_id), bounces
-- (sessions of exactly one event), sessions with a signed-in event (any non-null user_id), and the rates.
-- Window as in funnel.sql.
-- Parameters: start, end (timestamptz), include_bots (boolean).
WITH sessions AS (
    SELECT s.client_id, s.events, s.signed_in
    FROM clickstream_sessions(%(start)s::timestamptz - interval '30 minutes', 'infinity') s
    WHERE s.session_start >= %(start)s::timestamptz AND s.session_start < %(end)s::timestamptz
      AND (%(include_bots)s::boolean OR NOT s.is_bot)
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
