-- The first and last day (in the business time zone) with events: from the hourly rollup, and from the events of
-- the UTC days whose rollups are pending (not refreshed yet); both null when the warehouse is empty.
-- Parameters: tz (IANA zone name).
WITH pending AS (
    SELECT min(day)::timestamp AT TIME ZONE 'UTC' AS lo, (max(day) + 1)::timestamp AT TIME ZONE 'UTC' AS hi
    FROM rollup_pending
)
SELECT (min(lo) AT TIME ZONE %(tz)s::text)::date AS first, (max(hi) AT TIME ZONE %(tz)s::text)::date AS last
FROM (SELECT min(hour) AS lo, max(hour) + interval '59 minutes 59.999999 seconds' AS hi
      FROM rollup_hourly_events
      UNION ALL
      SELECT min(event_timestamp), max(event_timestamp)
      FROM clickstream_events, pending
      WHERE event_timestamp >= pending.lo AND event_timestamp < pending.hi) AS bounds;
