-- products.sql per category (a product's category: the least one its events carry; null: none).
-- Parameters: start, end (timestamptz), login_state (all | signed_in | anonymous), device (all | desktop |
-- mobile | tablet), include_bots (boolean).
WITH products AS (
    SELECT min(context_product_category) AS category,
           count(*) FILTER (WHERE event_name = 'product_view') AS views,
           count(*) FILTER (WHERE event_name = 'add_to_cart') AS add_to_cart,
           count(*) FILTER (WHERE event_name = 'purchase') AS purchases,
           coalesce(sum(value) FILTER (WHERE event_name = 'purchase'), 0) AS revenue
    FROM clickstream_events
    WHERE event_name IN ('product_view', 'add_to_cart', 'purchase') AND context_product_id IS NOT NULL
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
