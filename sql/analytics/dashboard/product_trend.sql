-- One product's views, add_to_cart, purchases and revenue per day of the range in the business time zone
-- (every day, zero when none; event-scoped).
-- Source: the UTC-hour rollups when dashboard_reads_rollups (migration 0007) says they answer exactly, else the
-- events table (the other branch's scan is skipped: a one-time filter on the parameters).
-- Parameters: start, end (timestamptz), tz (IANA zone name), login_state (all | signed_in | anonymous), device
-- (all | desktop | mobile | tablet), include_bots (boolean), product_id (text).
WITH source AS (
    SELECT dashboard_reads_rollups(%(start)s::timestamptz, %(end)s::timestamptz, %(tz)s::text) AS rollup
), days AS (
    SELECT d::date AS day
    FROM generate_series((%(start)s::timestamptz AT TIME ZONE %(tz)s::text)::date,
                         ((%(end)s::timestamptz AT TIME ZONE %(tz)s::text) - interval '1 day')::date,
                         interval '1 day') AS d
), counts AS (
    SELECT (hour AT TIME ZONE %(tz)s::text)::date AS day, sum(views) AS views, sum(add_to_cart) AS add_to_cart,
           sum(purchases) AS purchases, sum(revenue) AS revenue
    FROM rollup_hourly_products
    WHERE (SELECT rollup FROM source) AND product_id = %(product_id)s::text
      AND hour >= %(start)s::timestamptz AND hour < %(end)s::timestamptz
      AND (%(include_bots)s::boolean OR NOT is_bot)
      AND (%(device)s::text = 'all' OR device_category = %(device)s::text)
      AND (%(login_state)s::text = 'all' OR signed_in = (%(login_state)s::text = 'signed_in'))
    GROUP BY 1
    UNION ALL
    SELECT (event_timestamp AT TIME ZONE %(tz)s::text)::date,
           count(*) FILTER (WHERE event_name = 'product_view'),
           count(*) FILTER (WHERE event_name = 'add_to_cart'),
           count(*) FILTER (WHERE event_name = 'purchase'),
           coalesce(sum(value) FILTER (WHERE event_name = 'purchase'), 0)
    FROM clickstream_events
    WHERE NOT (SELECT rollup FROM source)
      AND event_name IN ('product_view', 'add_to_cart', 'purchase') AND context_product_id = %(product_id)s::text
      AND event_timestamp >= %(start)s::timestamptz AND event_timestamp < %(end)s::timestamptz
      AND (%(include_bots)s::boolean OR NOT is_bot)
      AND (%(device)s::text = 'all' OR device_category = %(device)s::text)
      AND (%(login_state)s::text = 'all' OR (user_id IS NOT NULL) = (%(login_state)s::text = 'signed_in'))
    GROUP BY 1
)
SELECT days.day, coalesce(c.views, 0)::bigint AS views, coalesce(c.add_to_cart, 0)::bigint AS add_to_cart,
       coalesce(c.purchases, 0)::bigint AS purchases, coalesce(c.revenue, 0) AS revenue
FROM days LEFT JOIN counts AS c USING (day)
ORDER BY days.day;
