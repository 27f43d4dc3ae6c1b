-- The top_products figures per product category in [start, end) (category null: events without one).
-- Parameters: start, end (timestamptz), include_bots (boolean).
SELECT context_product_category AS category,
       count(DISTINCT context_product_id) AS products,
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
GROUP BY context_product_category
ORDER BY revenue DESC, views DESC, category NULLS LAST;
