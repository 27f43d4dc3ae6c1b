-- Events (event-scoped) and sessions (DW sessions by the hour or day of their start, filtered by their first
-- event) per bucket of the range: every local hour or day in the business time zone, zero when none. bucket
-- is a local timestamp (without time zone) in tz.
-- Parameters: start, end (timestamptz), tz (IANA zone name), login_state (all | signed_in | anonymous), device
-- (all | desktop | mobile | tablet), include_bots (boolean), grain (hour | day).
WITH buckets AS (
    SELECT generate_series(%(start)s::timestamptz AT TIME ZONE %(tz)s::text,
                           (%(end)s::timestamptz AT TIME ZONE %(tz)s::text) - ('1 ' || %(grain)s::text)::interval,
                           ('1 ' || %(grain)s::text)::interval) AS bucket
), events AS (
    SELECT date_trunc(%(grain)s::text, event_timestamp AT TIME ZONE %(tz)s::text) AS bucket, count(*) AS events
    FROM clickstream_events
    WHERE event_timestamp >= %(start)s::timestamptz AND event_timestamp < %(end)s::timestamptz
      AND (%(include_bots)s::boolean OR NOT is_bot)
      AND (%(device)s::text = 'all' OR device_category = %(device)s::text)
      AND (%(login_state)s::text = 'all' OR (user_id IS NOT NULL) = (%(login_state)s::text = 'signed_in'))
    GROUP BY 1
), ordered AS (
    SELECT event_timestamp, device_category, user_id,
           event_timestamp - lag(event_timestamp) OVER (PARTITION BY client_id, is_bot
                                                        ORDER BY event_timestamp, event_id)
               <= interval '30 minutes' AS continues
    FROM clickstream_events
    WHERE event_timestamp >= %(start)s::timestamptz - interval '30 minutes'
      AND event_timestamp < %(end)s::timestamptz
      AND (%(include_bots)s::boolean OR NOT is_bot)
), sessions AS (
    SELECT date_trunc(%(grain)s::text, event_timestamp AT TIME ZONE %(tz)s::text) AS bucket, count(*) AS sessions
    FROM ordered
    WHERE continues IS NOT TRUE AND event_timestamp >= %(start)s::timestamptz
      AND (%(device)s::text = 'all' OR device_category = %(device)s::text)
      AND (%(login_state)s::text = 'all' OR (user_id IS NOT NULL) = (%(login_state)s::text = 'signed_in'))
    GROUP BY 1
)
SELECT b.bucket, coalesce(e.events, 0) AS events, coalesce(s.sessions, 0) AS sessions
FROM buckets AS b LEFT JOIN events AS e USING (bucket) LEFT JOIN sessions AS s USING (bucket)
ORDER BY b.bucket;
