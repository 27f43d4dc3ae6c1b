-- Dimensions for the dashboards' filters (issue 14; sql/analytics/dashboard/*.sql, clickstream.analytics.dashboard),
-- kept incremental by clickstream.analytics.rollups like the rest.
--
-- Event-scoped: the hourly event and product rollups gain each event's device_category and signed-in state
-- (user_id is not null), and rollup_hourly_events the sum of the events' value (revenue of purchases).
-- Session-scoped: a session's device, signed-in state and traffic source (utm_source) are those of its first
-- event; rollup_sessions keeps them, rollup_hourly_session_dims counts sessions and funnel steps per UTC hour of
-- their start and those dimensions, and rollup_hourly_visitors counts visitors under every filter the way
-- rollup_hourly_sessions does without filters (see there and migration 0004).
--
-- The rollups are emptied and every day with events is marked to recompute: the next refresh (or
-- `clickstream rollups rebuild`, faster on a big warehouse) computes them again; until then the questions
-- read the events table.

-- Hourly events and products per device_category (null when unknown) and signed-in state too.
TRUNCATE rollup_hourly_events, rollup_hourly_pages, rollup_hourly_products, rollup_sessions, rollup_hourly_sessions,
    rollup_delta_events, rollup_delta_pages, rollup_delta_products, rollup_delta_clients;
ALTER TABLE rollup_hourly_events
    DROP CONSTRAINT rollup_hourly_events_pkey,
    ADD COLUMN device_category text,
    ADD COLUMN signed_in boolean NOT NULL,
    ADD COLUMN value numeric NOT NULL,
    ADD CONSTRAINT rollup_hourly_events_key UNIQUE NULLS NOT DISTINCT (hour, event_name, is_bot, device_category,
                                                                       signed_in);
COMMENT ON COLUMN rollup_hourly_events.value IS 'sum(value) of the events (0 when none has one; exact).';
ALTER TABLE rollup_hourly_products
    DROP CONSTRAINT rollup_hourly_products_pkey,
    ADD COLUMN device_category text,
    ADD COLUMN signed_in boolean NOT NULL,
    ADD CONSTRAINT rollup_hourly_products_key UNIQUE NULLS NOT DISTINCT (hour, is_bot, product_id, device_category,
                                                                         signed_in);
ALTER TABLE rollup_delta_events ADD COLUMN device_category text, ADD COLUMN signed_in boolean NOT NULL,
    ADD COLUMN value numeric NOT NULL;
ALTER TABLE rollup_delta_products ADD COLUMN device_category text, ADD COLUMN signed_in boolean NOT NULL;

ALTER TABLE rollup_sessions
    ADD COLUMN device_category text,
    ADD COLUMN first_signed_in boolean NOT NULL,
    ADD COLUMN traffic_source text;
COMMENT ON COLUMN rollup_sessions.traffic_source IS 'utm_source of the first event (null: direct).';

-- Sessions and the sessions that reached each funnel step, per UTC hour of their start and the first event's
-- dimensions.
CREATE TABLE rollup_hourly_session_dims (
    hour            timestamptz NOT NULL,
    is_bot          boolean NOT NULL,
    device_category text,
    first_signed_in boolean NOT NULL,
    traffic_source  text,
    sessions        bigint NOT NULL,
    product_view    bigint NOT NULL,
    add_to_cart     bigint NOT NULL,
    begin_checkout  bigint NOT NULL,
    purchase        bigint NOT NULL,
    CONSTRAINT rollup_hourly_session_dims_key UNIQUE NULLS NOT DISTINCT (hour, is_bot, device_category,
                                                                          first_signed_in, traffic_source)
);

-- Visitors under a filter, counted as rollup_hourly_sessions counts them (migration 0004): sessions in
-- [start, end) whose previous session of the same client AMONG THE SESSIONS THE FILTER KEEPS started before
-- start. scope says which sessions those are: bit 1 set, both bot flags (bots included; else only
-- browser sessions, and bot sessions have no rows of that scope); bit 2, the same device_category; bit 4,
-- the same first_signed_in. device_category and first_signed_in are null when their bit is not set.
-- prev_hour as in rollup_hourly_sessions ('-infinity': none within 840 hours).
CREATE TABLE rollup_hourly_visitors (
    hour            timestamptz NOT NULL,
    scope           smallint NOT NULL CHECK (scope BETWEEN 0 AND 7),
    device_category text,
    first_signed_in boolean,
    prev_hour       timestamptz NOT NULL,
    sessions        bigint NOT NULL,
    CONSTRAINT rollup_hourly_visitors_key UNIQUE NULLS NOT DISTINCT (hour, scope, device_category, first_signed_in,
                                                                      prev_hour)
);

DROP FUNCTION clickstream_span_sessions(rollup_span[]);
DROP FUNCTION clickstream_sessions(timestamptz, timestamptz);

-- As in migration 0003, plus the first event's device_category, whether it has a user_id, and its
-- utm_source (`starts` marks the first event of each session).
CREATE FUNCTION clickstream_sessions(lo timestamptz, hi timestamptz)
RETURNS TABLE (
    client_id       text,
    is_bot          boolean,
    session_start   timestamptz,
    session_end     timestamptz,
    events          integer,
    signed_in       boolean,
    funnel_step     smallint,
    device_category text,
    first_signed_in boolean,
    traffic_source  text
)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    WITH ordered AS (
        SELECT e.client_id, e.is_bot, e.event_id, e.event_timestamp AS ts, e.event_name, e.user_id,
               e.device_category, e.utm_source,
               CASE WHEN e.event_timestamp - lag(e.event_timestamp) OVER w <= interval '30 minutes'
                    THEN 0 ELSE 1 END AS starts
        FROM clickstream_events e
        WHERE e.event_timestamp >= lo AND e.event_timestamp <= hi
        WINDOW w AS (PARTITION BY e.client_id, e.is_bot ORDER BY e.event_timestamp, e.event_id)
    ), numbered AS (
        SELECT o.*, sum(o.starts) OVER (PARTITION BY o.client_id, o.is_bot ORDER BY o.ts, o.event_id
                                        ROWS UNBOUNDED PRECEDING) AS session_no
        FROM ordered o
    ), step1 AS (
        SELECT n.*, min(n.ts) FILTER (WHERE n.event_name = 'product_view') OVER s AS t1
        FROM numbered n WINDOW s AS (PARTITION BY n.client_id, n.is_bot, n.session_no)
    ), step2 AS (
        SELECT a.*, min(a.ts) FILTER (WHERE a.event_name = 'add_to_cart' AND a.ts > a.t1) OVER s AS t2
        FROM step1 a WINDOW s AS (PARTITION BY a.client_id, a.is_bot, a.session_no)
    ), step3 AS (
        SELECT b.*, min(b.ts) FILTER (WHERE b.event_name = 'begin_checkout' AND b.ts > b.t2) OVER s AS t3
        FROM step2 b WINDOW s AS (PARTITION BY b.client_id, b.is_bot, b.session_no)
    )
    SELECT c.client_id, c.is_bot, min(c.ts), max(c.ts), count(*)::integer, bool_or(c.user_id IS NOT NULL),
           CASE WHEN bool_or(c.event_name = 'purchase' AND c.ts > c.t3) THEN 4
                WHEN max(c.t3) IS NOT NULL THEN 3
                WHEN max(c.t2) IS NOT NULL THEN 2
                WHEN max(c.t1) IS NOT NULL THEN 1
                ELSE 0 END::smallint,
           min(c.device_category) FILTER (WHERE c.starts = 1),
           bool_or(c.user_id IS NOT NULL) FILTER (WHERE c.starts = 1),
           min(c.utm_source) FILTER (WHERE c.starts = 1)
    FROM step3 c
    GROUP BY c.client_id, c.is_bot, c.session_no
$$;
COMMENT ON FUNCTION clickstream_sessions(timestamptz, timestamptz) IS
    'DW sessions (30 minutes of inactivity per client_id and is_bot) of the events in [lo, hi], '
    'with event count, signed-in flag, the furthest in-order funnel step (0-4) and the first event''s '
    'device_category, signed-in state and utm_source.';

-- As in migration 0005, with the same columns as clickstream_sessions.
CREATE FUNCTION clickstream_span_sessions(spans rollup_span[])
RETURNS SETOF rollup_sessions
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    WITH ordered AS (
        SELECT e.client_id, e.is_bot, e.event_id, e.event_timestamp AS ts, e.event_name, e.user_id,
               e.device_category, e.utm_source,
               CASE WHEN e.event_timestamp - lag(e.event_timestamp) OVER w <= interval '30 minutes'
                    THEN 0 ELSE 1 END AS starts
        FROM unnest(spans) AS s
        JOIN clickstream_events e ON e.client_id = s.client_id AND e.is_bot = s.is_bot
                                 AND e.event_timestamp >= s.lo AND e.event_timestamp <= s.hi
        WINDOW w AS (PARTITION BY e.client_id, e.is_bot ORDER BY e.event_timestamp, e.event_id)
    ), numbered AS (
        SELECT o.*, sum(o.starts) OVER (PARTITION BY o.client_id, o.is_bot ORDER BY o.ts, o.event_id
                                        ROWS UNBOUNDED PRECEDING) AS session_no
        FROM ordered o
    ), step1 AS (
        SELECT n.*, min(n.ts) FILTER (WHERE n.event_name = 'product_view') OVER s AS t1
        FROM numbered n WINDOW s AS (PARTITION BY n.client_id, n.is_bot, n.session_no)
    ), step2 AS (
        SELECT a.*, min(a.ts) FILTER (WHERE a.event_name = 'add_to_cart' AND a.ts > a.t1) OVER s AS t2
        FROM step1 a WINDOW s AS (PARTITION BY a.client_id, a.is_bot, a.session_no)
    ), step3 AS (
        SELECT b.*, min(b.ts) FILTER (WHERE b.event_name = 'begin_checkout' AND b.ts > b.t2) OVER s AS t3
        FROM step2 b WINDOW s AS (PARTITION BY b.client_id, b.is_bot, b.session_no)
    )
    SELECT c.client_id, c.is_bot, min(c.ts), max(c.ts), count(*)::integer, bool_or(c.user_id IS NOT NULL),
           CASE WHEN bool_or(c.event_name = 'purchase' AND c.ts > c.t3) THEN 4
                WHEN max(c.t3) IS NOT NULL THEN 3
                WHEN max(c.t2) IS NOT NULL THEN 2
                WHEN max(c.t1) IS NOT NULL THEN 1
                ELSE 0 END::smallint,
           min(c.device_category) FILTER (WHERE c.starts = 1),
           bool_or(c.user_id IS NOT NULL) FILTER (WHERE c.starts = 1),
           min(c.utm_source) FILTER (WHERE c.starts = 1)
    FROM step3 c
    GROUP BY c.client_id, c.is_bot, c.session_no
$$;

-- Whether the dashboards' queries can read the UTC-hour rollups for [lo, hi) in business time zone tz
-- (questions.choose_source's rule): lo and hi are whole UTC hours, tz is a whole number of hours from UTC
-- all along, and no day from the day before lo (UTC) on waits for its refresh.
CREATE FUNCTION dashboard_reads_rollups(lo timestamptz, hi timestamptz, tz text)
RETURNS boolean
LANGUAGE sql STABLE
AS $$
    SELECT date_trunc('hour', lo, 'UTC') = lo AND date_trunc('hour', hi, 'UTC') = hi
       AND NOT EXISTS (SELECT FROM generate_series(lo, hi - interval '1 hour', interval '1 hour') AS h
                       WHERE date_trunc('hour', h AT TIME ZONE tz) <> h AT TIME ZONE tz)
       AND NOT EXISTS (SELECT FROM rollup_pending WHERE day >= (lo AT TIME ZONE 'UTC')::date - 1)
$$;

INSERT INTO rollup_pending (day, recompute)
SELECT DISTINCT (event_timestamp AT TIME ZONE 'UTC')::date, true FROM clickstream_events
ON CONFLICT (day) DO UPDATE SET recompute = true;
