-- Compatibility schema for the original workshop's R dashboard (SBW-Cloudworks ClickSteam.RShiny): its SQL, run
-- with `SET search_path TO sbw, public` (the default of role sbw_reader), reads sbw.clickstream_events: the original
-- table's columns, with every event under the original tracker's name, so its checkout rate
-- (checkout_complete / add_to_cart_click) counts the new tracker's events too.
CREATE SCHEMA IF NOT EXISTS sbw;

-- The contract's mappings as rows: each original eventName with the v1 event_name it maps to
-- (contract.LEGACY_EVENT_NAMES), and `for_v1_events` on the one a new-tracker event is shown under
-- (contract.ORIGINAL_EVENT_NAMES). Literal rows rather than rows migrate() writes from Python: the schema stays
-- plain SQL, an applied migration never changes behind its checksum, and tests/integration/test_sbw.py fails as
-- soon as these rows and the contract disagree (changing the mapping is then a new migration, like any change).
CREATE VIEW sbw.event_names (original_name, event_name, for_v1_events) AS VALUES
    ('page_view', 'page_view', false),
    ('home_view', 'page_view', false),
    ('category_view', 'product_list_view', true),
    ('product_view', 'product_view', false),
    ('add_to_cart_click', 'add_to_cart', true),
    ('remove_from_cart_click', 'remove_from_cart', true),
    ('wishlist_toggle', 'add_to_wishlist', true),
    ('share_click', 'share', true),
    ('login_open', 'click', false),
    ('login_success', 'login', true),
    ('logout', 'logout', false),
    ('checkout_start', 'begin_checkout', true),
    ('checkout_complete', 'purchase', true),
    ('click', 'click', false);

-- A legacy row keeps its own name in properties.legacy.event_name; it is shown only when it maps to the row's
-- event_name (a v1 event's free-form properties cannot rename it). Other names are shown as they are.
CREATE VIEW sbw.clickstream_events AS
SELECT e.event_id,
       e.event_timestamp,
       coalesce(legacy.original_name, renamed.original_name, e.event_name) AS event_name,
       e.user_id,
       e.user_login_state,
       e.identity_source,
       e.client_id,
       e.session_id,
       e.is_first_visit,
       e.context_product_id,
       e.context_product_name,
       e.context_product_category,
       e.context_product_brand,
       e.context_product_price,
       e.context_product_discount_price,
       e.context_product_url_path
FROM public.clickstream_events e
LEFT JOIN sbw.event_names legacy
       ON legacy.original_name = e.properties -> 'legacy' ->> 'event_name' AND legacy.event_name = e.event_name
LEFT JOIN sbw.event_names renamed
       ON renamed.event_name = e.event_name AND renamed.for_v1_events;

COMMENT ON SCHEMA sbw IS
    'The original workshop''s dashboard: SET search_path TO sbw, public (role sbw_reader) runs its SQL unchanged.';
COMMENT ON VIEW sbw.clickstream_events IS
    'public.clickstream_events with the original table''s columns and the original tracker''s event names.';
