-- products.sql per category (a product's category: the least one its events carry; null: none).
-- Source: the UTC-hour rollups when dashboard_reads_rollups (migration 0007) says they answer exactly, else the
-- events table (the other branch's scan is skipped: a one-time filter on the parameters).
-- Parameters: start, end (timestamptz), tz (IANA zone name), login_state (all | signed_in | anonymous), device
-- (all | desktop | mobile | tablet), include_bots (boolean).
WITH source AS (
    SELECT dashboard_reads_rollups(%(start)s::timestamptz, %(end)s::timestamptz, %(tz)s::text) AS rollup
), products AS (
    SELECT product_id, min(product_name) AS product_name, min(category) AS category, sum(views) AS views,
           sum(add_to_cart) AS add_to_cart, sum(purchases) AS purchases, sum(revenue) AS revenue
    FROM rollup_hourly_products
    WHERE (SELECT rollup FROM source)
      AND hour >= %(start)s::timestamptz AND hour < %(end)s::timestamptz
      AND (%(include_bots)s::boolean OR NOT is_bot)
      AND (%(device)s::text = 'all' OR device_category = %(device)s::text)
      AND (%(login_state)s::text = 'all' OR signed_in = (%(login_state)s::text = 'signed_in'))
    GROUP BY product_id
    UNION ALL
    SELECT context_product_id, min(context_product_name), min(context_product_category),
           count(*) FILTER (WHERE event_name = 'product_view'),
           count(*) FILTER (WHERE event_name = 'add_to_cart'),
           count(*) FILTER (WHERE event_name = 'purchase'),
           coalesce(sum(value) FILTER (WHERE event_name = 'purchase'), 0)
    FROM clickstream_events
    WHERE NOT (SELECT rollup FROM source)
      AND event_name IN ('product_view', 'add_to_cart', 'purchase') AND context_product_id IS NOT NULL
      AND event_timestamp >= %(start)s::timestamptz AND event_timestamp < %(end)s::timestamptz
      AND (%(include_bots)s::boolean OR NOT is_bot)
      AND (%(device)s::text = 'all' OR device_category = %(device)s::text)
      AND (%(login_state)s::text = 'all' OR (user_id IS NOT NULL) = (%(login_state)s::text = 'signed_in'))
    GROUP BY context_product_id
)
SELECT category, sum(views)::bigint AS views, sum(add_to_cart)::bigint AS add_to_cart,
       sum(purchases)::bigint AS purchases, sum(purchases)::float8 / nullif(sum(views), 0) AS conversion,
       sum(revenue) AS revenue
FROM products
GROUP BY category
ORDER BY revenue DESC, views DESC, category NULLS LAST;
