-- Rollups for the dashboard queries (sql/analytics/rollup/*.sql), kept up to date by
-- clickstream.analytics.rollups.refresh_pending() after each load. Hours are UTC hours (date_trunc in 'UTC'), so
-- they serve any business time zone whose offset is a whole number of hours.

-- DW sessions: the events of one (client_id, is_bot), ordered by event_timestamp (then event_id), a new
-- session starting when the gap to the previous event is more than 30 minutes (exactly 30 minutes stays in
-- the session). Read from the events with lo <= event_timestamp <= hi: a session whose events reach outside
-- that window comes out cut, so callers take the window wider than the sessions they keep.
-- funnel_step: how far the session got along product_view -> add_to_cart -> begin_checkout -> purchase with
-- each step strictly later than the previous one (0: no product_view). The earliest match of each step
-- is the best one, so the step times t1 < t2 < t3 below decide it.
CREATE FUNCTION clickstream_sessions(lo timestamptz, hi timestamptz)
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
                ELSE 0 END::smallint
    FROM step3 c
    GROUP BY c.client_id, c.is_bot, c.session_no
$$;
COMMENT ON FUNCTION clickstream_sessions(timestamptz, timestamptz) IS
    'DW sessions (30 minutes of inactivity per client_id and is_bot) of the events in [lo, hi], '
    'with event count, signed-in flag and the furthest in-order funnel step (0-4).';

-- Events per UTC hour, event name and bot flag.
CREATE TABLE rollup_hourly_events (
    hour       timestamptz NOT NULL,
    event_name text NOT NULL,
    is_bot     boolean NOT NULL,
    events     bigint NOT NULL,
    PRIMARY KEY (hour, event_name, is_bot)
);

-- page_view events per UTC hour, bot flag and page path (null when the event had no page_url).
CREATE TABLE rollup_hourly_pages (
    hour       timestamptz NOT NULL,
    is_bot     boolean NOT NULL,
    page_path  text,
    page_views bigint NOT NULL,
    CONSTRAINT rollup_hourly_pages_key UNIQUE NULLS NOT DISTINCT (hour, is_bot, page_path)
);

-- product_view / add_to_cart / purchase events per UTC hour, bot flag and product; name, category and
-- brand are the least value seen that hour (the same product always carries the same ones).
CREATE TABLE rollup_hourly_products (
    hour          timestamptz NOT NULL,
    is_bot        boolean NOT NULL,
    product_id    text NOT NULL,
    product_name  text,
    category      text,
    brand         text,
    views         bigint NOT NULL,
    add_to_cart   bigint NOT NULL,
    purchases     bigint NOT NULL,
    revenue       numeric NOT NULL,
    PRIMARY KEY (hour, is_bot, product_id)
);
COMMENT ON COLUMN rollup_hourly_products.revenue IS 'sum(value) of the purchase events (exact).';

-- One row per DW session (see clickstream_sessions).
CREATE TABLE rollup_sessions (
    client_id     text NOT NULL,
    is_bot        boolean NOT NULL,
    session_start timestamptz NOT NULL,
    session_end   timestamptz NOT NULL,
    events        integer NOT NULL,
    signed_in     boolean NOT NULL,
    funnel_step   smallint NOT NULL CHECK (funnel_step BETWEEN 0 AND 4),
    PRIMARY KEY (client_id, is_bot, session_start)
);
CREATE INDEX rollup_sessions_start ON rollup_sessions (session_start);
CREATE INDEX rollup_sessions_end ON rollup_sessions (session_end);

-- UTC days whose events changed since their rollups were computed. load_chunk adds the days of the rows it
-- inserts in its own transaction; refresh_pending recomputes them and deletes them in one transaction, so a
-- crash in between leaves them here for the next refresh.
CREATE TABLE rollup_pending (
    day       date PRIMARY KEY,
    marked_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO rollup_pending (day)
SELECT DISTINCT (event_timestamp AT TIME ZONE 'UTC')::date FROM clickstream_events;
