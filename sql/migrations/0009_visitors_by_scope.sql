-- rollup_hourly_visitors read by scope, then hour: the index the KPIs' visitor count needs.
--
-- The KPI query (sql/analytics/dashboard/kpis.sql) sums one scope's rows of the range whose previous session
-- started before the range. The table's key leads with the hour, so over a range that covers most of the table
-- PostgreSQL read every row of all eight scopes to keep one scope's few (at 10M events: 268k rows read, 168
-- kept, 18 ms of the query's 22). Led by the scope, a range is one slice of this index, which also carries the
-- columns the query reads.

CREATE INDEX rollup_hourly_visitors_by_scope ON rollup_hourly_visitors (scope, hour)
    INCLUDE (prev_hour, device_category, first_signed_in, sessions);
