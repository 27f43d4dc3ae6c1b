-- One product's views, add_to_cart, purchases and revenue per day of the range in the business time zone
-- (every day, zero when none; event-scoped).
-- Parameters: start, end (timestamptz), tz (IANA zone name), login_state (all | signed_in | anonymous), device
-- (all | desktop | mobile | tablet), include_bots (boolean), product_id (text).
WITH days AS (
    SELECT d::date AS day
    FROM generate_series((%(start)s::timestamptz AT TIME ZONE %(tz)s::text)::date,
                         ((%(end)s::timestamptz AT TIME ZONE %(tz)s::text) - interval '1 day')::date,
                         interval '1 day') AS d
), counts AS (
    SELECT (event_timestamp AT TIME ZONE %(tz)s::text)::date AS day,
           count(*) FILTER (WHERE event_name = 'product_view') AS views,
           count(*) FILTER (WHERE event_name = 'add_to_cart') AS add_to_cart,
           count(*) FILTER (WHERE event_name = 'purchase') AS purchases,
           coalesce(sum(value) FILTER (WHERE event_name = 'purchase'), 0) AS revenue
    FROM clickstream_events
    WHERE event_name IN ('product_view', 'add_to_cart', 'purchase') AND context_product_id = %(product_id)s::text
      AND event_timestamp >= %(start)s::timestamptz AND event_timestamp < %(end)s::timestamptz
      AND (%(include_bots)s::boolean OR NOT is_bot)
      AND (%(device)s::text = 'all' OR device_category = %(device)s::text)
      AND (%(login_state)s::text = 'all' OR (user_id IS NOT NULL) = (%(login_state)s::text = 'signed_in'))
    GROUP BY 1
)
SELECT days.day, coalesce(c.views, 0) AS views, coalesce(c.add_to_cart, 0) AS add_to_cart,
       coalesce(c.purchases, 0) AS purchases, coalesce(c.revenue, 0) AS revenue
FROM days LEFT JOIN counts AS c USING (day)
ORDER BY days.day;
