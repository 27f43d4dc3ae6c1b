-- The warehouse's fact table: one row per event, keyed by the client's event id (exactly-once loads).
-- Column names of the original workshop are kept (event_timestamp, user_login_state, identity_source,
-- is_first_visit, context_product_*) so its queries and dashboards run unchanged.
CREATE TABLE IF NOT EXISTS clickstream_events (
    event_id                       uuid PRIMARY KEY,
    event_timestamp                timestamptz NOT NULL,
    event_name                     text NOT NULL,
    user_id                        text,
    user_login_state               text,
    identity_source                text NOT NULL CHECK (identity_source IN ('user_id', 'client_id')),
    client_id                      text NOT NULL,
    session_id                     text NOT NULL,
    is_first_visit                 boolean,
    context_product_id             text,
    context_product_name           text,
    context_product_category       text,
    context_product_brand          text,
    context_product_price          numeric(12, 2),
    context_product_discount_price numeric(12, 2),
    context_product_url_path       text,
    client_ts                      timestamptz NOT NULL,
    received_at                    timestamptz NOT NULL,
    loaded_at                      timestamptz NOT NULL DEFAULT now(),
    page_url                       text,
    page_path                      text,
    page_type                      text,
    referrer                       text,
    utm_source                     text,
    utm_medium                     text,
    utm_campaign                   text,
    user_agent                     text,
    device_category                text CHECK (device_category IN ('desktop', 'mobile', 'tablet', 'bot')),
    is_bot                         boolean NOT NULL,
    quantity                       integer,
    cart_id                        text,
    order_id                       text,
    value                          numeric(12, 2),
    currency                       text,
    properties                     jsonb NOT NULL DEFAULT '{}',
    schema_version                 text NOT NULL,
    source_key                     text NOT NULL
);

COMMENT ON TABLE clickstream_events IS
    'One row per event, loaded by the ETL from the raw S3 objects (exactly once by event_id).';
COMMENT ON COLUMN clickstream_events.event_timestamp IS
    'When the interaction happened, on the server''s clock: received_at - (sent_ts - client_ts) when the '
    'event carries sent_ts and 0 <= sent_ts - client_ts <= 7 days (the browser''s own clock measures how long '
    'the event waited before it was sent, which cancels any skew of that clock); otherwise received_at. '
    'Never the load time.';
COMMENT ON COLUMN clickstream_events.client_ts IS 'The browser''s clock as sent (may be skewed).';
COMMENT ON COLUMN clickstream_events.received_at IS 'When the ingest API received the request (server clock).';
COMMENT ON COLUMN clickstream_events.loaded_at IS 'When the ETL committed the row.';
COMMENT ON COLUMN clickstream_events.identity_source IS 'user_id when the event has a user id, else client_id.';
COMMENT ON COLUMN clickstream_events.user_login_state IS
    'As sent: logged_in | anonymous | guest, or a legacy tracker''s own value.';
COMMENT ON COLUMN clickstream_events.device_category IS
    'desktop | mobile | tablet | bot from the user agent (crawlerdetect, user-agents); null when unknown.';
COMMENT ON COLUMN clickstream_events.properties IS
    'The event''s own properties, plus utm_term / utm_content and, for legacy tracker events, '
    'legacy = {event_name, event_id, event_id_source, client_ts_source, element}.';
COMMENT ON COLUMN clickstream_events.source_key IS 'The raw S3 object the row was loaded from.';

-- Range scans by time (rows arrive roughly in time order, which is what BRIN needs).
CREATE INDEX IF NOT EXISTS clickstream_events_event_timestamp_brin
    ON clickstream_events USING brin (event_timestamp);
-- Counts by event type and top products.
CREATE INDEX IF NOT EXISTS clickstream_events_event_name_product
    ON clickstream_events (event_name, context_product_id);
