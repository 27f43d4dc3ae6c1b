-- Events (or whole raw objects) the ETL could not load, each with its reason: nothing is dropped silently.
-- event_index is the event's position in its raw object; null when the whole object was quarantined
-- (not JSON, or not a raw object), in which case payload is the object's text as a JSON string.
CREATE TABLE IF NOT EXISTS clickstream_rejected (
    source_key  text NOT NULL,
    event_index integer,
    reason      text NOT NULL,
    payload     jsonb,
    rejected_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT clickstream_rejected_key UNIQUE NULLS NOT DISTINCT (source_key, event_index)
);
COMMENT ON TABLE clickstream_rejected IS
    'Rejected events and quarantined raw objects; replaced when their object is loaded again.';

-- One row per raw object loaded, written in the same transaction as the object's rows.
-- An object whose key and etag are here is skipped by later runs; a changed etag loads it again.
CREATE TABLE IF NOT EXISTS etl_load_log (
    key           text PRIMARY KEY,
    etag          text NOT NULL,
    rows_inserted integer NOT NULL,
    duplicates    integer NOT NULL,
    rejected      integer NOT NULL,
    loaded_at     timestamptz NOT NULL DEFAULT now()
);
COMMENT ON COLUMN etl_load_log.duplicates IS
    'Valid events of the object that were not inserted because their event_id was already loaded.';
COMMENT ON COLUMN etl_load_log.rejected IS 'Rows this object has in clickstream_rejected.';
