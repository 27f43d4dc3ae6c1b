-- Sessions per UTC hour of their start, so the funnel and sessions questions read a few thousand rows
-- instead of one row per session (rollup_sessions holds ~1.2M rows at 10M events). Kept up to date by
-- clickstream.analytics.rollups.refresh_pending() from rollup_sessions; read by sql/analytics/rollup/funnel.sql and
-- sessions.sql when the range starts and ends on whole UTC hours and is at most 35 days long (840 hours),
-- else they read rollup_sessions.
--
-- Visitors (distinct client_id) are counted without a distinct: a client has a session in [start, end)
-- exactly when one of its sessions in the range has no earlier session at or after start, so
--     visitors = sessions in [start, end) whose previous session of the same client started before start.
-- prev_hour keeps the UTC hour of that previous session (comparing hours is exact when start is a whole
-- hour), or '-infinity' when there is none or it started more than 840 hours before `hour`: in a range of at
-- most 840 hours that session is before start anyway, and the table stays under ~841 rows per hour and bot
-- flag however long the history. prev_hour is over the sessions with the same is_bot (bots excluded);
-- prev_any_hour over both, ordered by (session_start, is_bot) (bots included; the same value unless a
-- client sent both bot and browser user agents).
CREATE TABLE rollup_hourly_sessions (
    hour           timestamptz NOT NULL,
    is_bot         boolean NOT NULL,
    prev_hour      timestamptz NOT NULL,
    prev_any_hour  timestamptz NOT NULL,
    sessions       bigint NOT NULL,
    bounces        bigint NOT NULL,
    signed_in      bigint NOT NULL,
    events         bigint NOT NULL,
    product_view   bigint NOT NULL,
    add_to_cart    bigint NOT NULL,
    begin_checkout bigint NOT NULL,
    purchase       bigint NOT NULL,
    PRIMARY KEY (hour, is_bot, prev_hour, prev_any_hour)
);
COMMENT ON TABLE rollup_hourly_sessions IS
    'rollup_sessions per UTC hour of session_start, bot flag and hour of the previous session (see 0004).';
COMMENT ON COLUMN rollup_hourly_sessions.product_view IS
    'Sessions that reached the funnel step product_view (funnel_step >= 1); the next columns likewise.';

-- The rows of rollup_hourly_sessions for the UTC hours `hours`, from rollup_sessions: every session of the
-- clients with a session in those hours, numbered in order with window functions (one sort, linear however
-- the planner estimates the freshly refreshed rollup_sessions), kept for the sessions in those hours.
CREATE FUNCTION clickstream_hourly_sessions(hours timestamptz[])
RETURNS SETOF rollup_hourly_sessions
LANGUAGE sql STABLE
AS $$
    WITH wanted AS (
        SELECT DISTINCT unnest(hours) AS hour
    ), clients AS (
        SELECT DISTINCT s.client_id
        FROM wanted AS h
        JOIN rollup_sessions AS s ON s.session_start >= h.hour AND s.session_start < h.hour + interval '1 hour'
    ), ordered AS (
        SELECT s.is_bot, s.events, s.signed_in, s.funnel_step,
               date_trunc('hour', s.session_start, 'UTC') AS hour,
               lag(s.session_start) OVER (PARTITION BY s.client_id, s.is_bot ORDER BY s.session_start) AS prev,
               lag(s.session_start) OVER (PARTITION BY s.client_id ORDER BY s.session_start, s.is_bot) AS prev_any
        FROM rollup_sessions AS s JOIN clients USING (client_id)
    )
    SELECT o.hour, o.is_bot,
           CASE WHEN o.prev IS NULL OR o.prev < o.hour - interval '840 hours' THEN '-infinity'
                ELSE date_trunc('hour', o.prev, 'UTC') END,
           CASE WHEN o.prev_any IS NULL OR o.prev_any < o.hour - interval '840 hours' THEN '-infinity'
                ELSE date_trunc('hour', o.prev_any, 'UTC') END,
           count(*), count(*) FILTER (WHERE o.events = 1), count(*) FILTER (WHERE o.signed_in), sum(o.events),
           count(*) FILTER (WHERE o.funnel_step >= 1), count(*) FILTER (WHERE o.funnel_step >= 2),
           count(*) FILTER (WHERE o.funnel_step >= 3), count(*) FILTER (WHERE o.funnel_step >= 4)
    FROM ordered AS o
    WHERE o.hour IN (SELECT hour FROM wanted)
    GROUP BY 1, 2, 3, 4
$$;

INSERT INTO rollup_hourly_sessions
SELECT * FROM clickstream_hourly_sessions(ARRAY(SELECT DISTINCT date_trunc('hour', session_start, 'UTC')
                                                FROM rollup_sessions));
