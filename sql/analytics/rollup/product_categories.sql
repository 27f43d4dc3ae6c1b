-- product_categories.sql from rollup_hourly_products (start and end on whole UTC hours). A product's
-- category is the least one its events carry, as in the raw query when a product keeps its category.
WITH products AS (
    SELECT product_id, min(category) AS category, sum(views) AS views, sum(add_to_cart) AS add_to_cart,
           sum(purchases) AS purchases, sum(revenue) AS revenue
    FROM rollup_hourly_products
    WHERE hour >= %(start)s::timestamptz AND hour < %(end)s::timestamptz
      AND (%(include_bots)s::boolean OR NOT is_bot)
    GROUP BY product_id
)
SELECT category,
       count(*) AS products,
       sum(views)::bigint AS views,
       sum(add_to_cart)::bigint AS add_to_cart,
       sum(purchases)::bigint AS purchases,
       sum(revenue) AS revenue,
       sum(purchases)::float8 / nullif(sum(views), 0) AS view_to_purchase
FROM products
GROUP BY category
ORDER BY revenue DESC, views DESC, category NULLS LAST;
