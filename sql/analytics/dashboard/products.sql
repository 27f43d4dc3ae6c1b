-- Per product in [start, end) (event-scoped): views (product_view), add_to_cart, purchases (purchase events),
-- conversion = purchases / views (null without views), revenue (sum of the purchases' value); name and
-- category: the least value the product's events carry. Best revenue first.
-- Parameters: start, end (timestamptz), login_state (all | signed_in | anonymous), device (all | desktop |
-- mobile | tablet), include_bots (boolean).
SELECT context_product_id AS product_id,
       min(context_product_name) AS product_name,
       min(context_product_category) AS category,
       count(*) FILTER (WHERE event_name = 'product_view') AS views,
       count(*) FILTER (WHERE event_name = 'add_to_cart') AS add_to_cart,
       count(*) FILTER (WHERE event_name = 'purchase') AS purchases,
       (count(*) FILTER (WHERE event_name = 'purchase'))::float8
           / nullif(count(*) FILTER (WHERE event_name = 'product_view'), 0) AS conversion,
       coalesce(sum(value) FILTER (WHERE event_name = 'purchase'), 0) AS revenue
FROM clickstream_events
WHERE event_name IN ('product_view', 'add_to_cart', 'purchase') AND context_product_id IS NOT NULL
  AND event_timestamp >= %(start)s::timestamptz AND event_timestamp < %(end)s::timestamptz
  AND (%(include_bots)s::boolean OR NOT is_bot)
  AND (%(device)s::text = 'all' OR device_category = %(device)s::text)
  AND (%(login_state)s::text = 'all' OR (user_id IS NOT NULL) = (%(login_state)s::text = 'signed_in'))
GROUP BY context_product_id
ORDER BY revenue DESC, purchases DESC, views DESC, product_id;
