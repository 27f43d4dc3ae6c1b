-- top_products.sql from rollup_hourly_products (start and end on whole UTC hours).
SELECT product_id,
       min(product_name) AS product_name,
       min(category) AS category,
       min(brand) AS brand,
       sum(views)::bigint AS views,
       sum(add_to_cart)::bigint AS add_to_cart,
       sum(purchases)::bigint AS purchases,
       sum(revenue) AS revenue,
       sum(purchases)::float8 / nullif(sum(views), 0) AS view_to_purchase
FROM rollup_hourly_products
WHERE hour >= %(start)s::timestamptz AND hour < %(end)s::timestamptz
  AND (%(include_bots)s::boolean OR NOT is_bot)
GROUP BY product_id
ORDER BY revenue DESC, purchases DESC, views DESC, product_id
LIMIT %(limit)s::integer;
