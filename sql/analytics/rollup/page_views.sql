-- page_views.sql from rollup_hourly_pages (start and end on whole UTC hours).
SELECT page_path, sum(page_views)::bigint AS page_views
FROM rollup_hourly_pages
WHERE hour >= %(start)s::timestamptz AND hour < %(end)s::timestamptz
  AND (%(include_bots)s::boolean OR NOT is_bot)
GROUP BY page_path
ORDER BY page_views DESC, page_path NULLS LAST;
