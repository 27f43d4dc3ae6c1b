-- The session functions of migration 0007, sorting client ids bytewise (COLLATE "C").
--
-- Their window partitions sort every event of the span by client_id. Under the database's collation
-- (C.UTF-8 locally, en_US.UTF-8 on many servers) PostgreSQL compares text with strcoll and without
-- abbreviated keys; "C" compares bytes, about three times faster on this sort, which was the largest step
-- of an ETL run's rollup refresh. Equal client ids are equal bytes under every deterministic collation, so
-- the sessions are the same; only the order rows are grouped in changes.

CREATE OR REPLACE FUNCTION clickstream_sessions(lo timestamptz, hi timestamptz)
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
        SELECT e.client_id COLLATE "C" AS client_id, e.is_bot, e.event_id, e.event_timestamp AS ts, e.event_name, e.user_id,
               e.device_category, e.utm_source,
               CASE WHEN e.event_timestamp - lag(e.event_timestamp) OVER w <= interval '30 minutes'
                    THEN 0 ELSE 1 END AS starts
        FROM clickstream_events e
        WHERE e.event_timestamp >= lo AND e.event_timestamp <= hi
        WINDOW w AS (PARTITION BY e.client_id COLLATE "C", e.is_bot ORDER BY e.event_timestamp, e.event_id)
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

CREATE OR REPLACE FUNCTION clickstream_span_sessions(spans rollup_span[])
RETURNS SETOF rollup_sessions
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    WITH ordered AS (
        SELECT e.client_id COLLATE "C" AS client_id, e.is_bot, e.event_id, e.event_timestamp AS ts, e.event_name, e.user_id,
               e.device_category, e.utm_source,
               CASE WHEN e.event_timestamp - lag(e.event_timestamp) OVER w <= interval '30 minutes'
                    THEN 0 ELSE 1 END AS starts
        FROM unnest(spans) AS s
        JOIN clickstream_events e ON e.client_id = s.client_id AND e.is_bot = s.is_bot
                                 AND e.event_timestamp >= s.lo AND e.event_timestamp <= s.hi
        WINDOW w AS (PARTITION BY e.client_id COLLATE "C", e.is_bot ORDER BY e.event_timestamp, e.event_id)
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
