-- page_view events per page path in [start, end) (page_path is null when the event had no page_url).
-- Parameters: start, end (timestamptz), include_bots (boolean).
SELECT page_path, count(*) AS page_views
FROM clickstream_events
WHERE event_name = 'page_view'
  AND event_timestamp >= %(start)s::timestamptz AND event_timestamp < %(end)s::timestamptz
  AND (%(include_bots)s::boolean OR NOT is_bot)
GROUP BY page_path
ORDER BY page_views DESC, page_path NULLS LAST;
