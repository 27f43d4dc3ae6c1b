-- Per product in [start, end): views (product_view), add_to_cart, purchases (purchase events) and revenue
-- (sum of the purchase events' value, exact), view -> purchase conversion = purchases / views (null
-- without views). Name, category and brand: the least value the product's events carry.
-- Parameters: start, end (timestamptz), include_bots (boolean), limit (integer, null for every product).
SELECT context_product_id AS product_id,
       min(context_product_name) AS product_name,
       min(context_product_category) AS category,
       min(context_product_brand) AS brand,
       count(*) FILTER (WHERE event_name = 'product_view') AS views,
       count(*) FILTER (WHERE event_name = 'add_to_cart') AS add_to_cart,
       count(*) FILTER (WHERE event_name = 'purchase') AS purchases,
       coalesce(sum(value) FILTER (WHERE event_name = 'purchase'), 0) AS revenue,
       (count(*) FILTER (WHERE event_name = 'purchase'))::float8
           / nullif(count(*) FILTER (WHERE event_name = 'product_view'), 0) AS view_to_purchase
FROM clickstream_events
WHERE event_name IN ('product_view', 'add_to_cart', 'purchase') AND context_product_id IS NOT NULL
  AND event_timestamp >= %(start)s::timestamptz AND event_timestamp < %(end)s::timestamptz
  AND (%(include_bots)s::boolean OR NOT is_bot)
GROUP BY context_product_id
ORDER BY revenue DESC, purchases DESC, views DESC, product_id
LIMIT %(limit)s::integer;
