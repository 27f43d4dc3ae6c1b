-- Incremental rollups (issue 11): a load appends what its new rows add to the rollups to the delta tables
-- below, in its own transaction; clickstream.analytics.rollups.refresh_pending folds them in. The tables are
-- append-only (no key, no update), so concurrent loads never wait on each other's rows there.

-- false: the day's changes are all in the delta tables (a load); true: recompute the day from its events
-- (rollups.mark_pending, for events changed some other way). Days pending before this migration keep true.
ALTER TABLE rollup_pending ADD COLUMN recompute boolean NOT NULL DEFAULT true;

-- What a load's inserted rows add to rollup_hourly_events, _pages and _products (same columns; products
-- keep one row per name, category and brand seen, the fold takes the least).
CREATE TABLE rollup_delta_events (LIKE rollup_hourly_events);
CREATE TABLE rollup_delta_pages (LIKE rollup_hourly_pages);
CREATE TABLE rollup_delta_products (LIKE rollup_hourly_products);

-- The (client_id, is_bot) with new events and the time span of those events: their sessions are computed
-- again around that span.
CREATE TABLE rollup_delta_clients (
    client_id text NOT NULL,
    is_bot    boolean NOT NULL,
    lo        timestamptz NOT NULL,
    hi        timestamptz NOT NULL
);

-- One client's events in time order: the refresh reads only the clients with new events.
CREATE INDEX IF NOT EXISTS clickstream_events_client_time ON clickstream_events (client_id, is_bot, event_timestamp);

CREATE TYPE rollup_span AS (client_id text, is_bot boolean, lo timestamptz, hi timestamptz);

-- The sessions of clickstream_sessions (same rules) of the events of each span's (client_id, is_bot) with
-- lo <= event_timestamp <= hi, read by client through the index above. Spans that start and end on a
-- session boundary (no event of the client within 30 minutes outside them) give whole sessions.
CREATE FUNCTION clickstream_span_sessions(spans rollup_span[])
RETURNS TABLE (
    client_id     text,
    is_bot        boolean,
    session_start timestamptz,
    session_end   timestamptz,
    events        integer,
    signed_in     boolean,
    funnel_step   smallint
)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    WITH ordered AS (
        SELECT e.client_id, e.is_bot, e.event_id, e.event_timestamp AS ts, e.event_name, e.user_id,
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
                ELSE 0 END::smallint
    FROM step3 c
    GROUP BY c.client_id, c.is_bot, c.session_no
$$;
COMMENT ON FUNCTION clickstream_span_sessions(rollup_span[]) IS
    'clickstream_sessions of the events of given clients in given time spans (read by client).';
