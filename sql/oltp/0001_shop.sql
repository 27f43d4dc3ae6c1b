-- The shop's OLTP schema (database shop_oltp, owned by shop_app). Money is numeric(12,2).
-- Applied by `clickstream up` as shop_app; the analytics side never reads this database.

CREATE TABLE products (
    product_id      text PRIMARY KEY CHECK (product_id ~ '^[A-Z]{3}-[0-9]{3}$'),
    name            text NOT NULL CHECK (name <> ''),
    category        text NOT NULL CHECK (category IN ('laptop', 'monitor', 'accessory')),
    brand           text NOT NULL CHECK (brand <> ''),
    price           numeric(12,2) NOT NULL CHECK (price > 0),
    discount_price  numeric(12,2) CHECK (discount_price > 0 AND discount_price < price),
    url_path        text NOT NULL UNIQUE CHECK (url_path LIKE '/products/%'),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX products_category_idx ON products (category);

CREATE TABLE customers (
    customer_id  text PRIMARY KEY CHECK (customer_id ~ '^cust-[0-9]{5}$'),
    email        text NOT NULL UNIQUE CHECK (position('@' IN email) > 1),
    full_name    text NOT NULL,
    country      char(2) NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE carts (
    cart_id      text PRIMARY KEY,
    customer_id  text REFERENCES customers,
    client_id    text,
    status       text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'ordered', 'abandoned')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CHECK (customer_id IS NOT NULL OR client_id IS NOT NULL)
);
CREATE INDEX carts_customer_idx ON carts (customer_id);

CREATE TABLE cart_items (
    cart_id     text NOT NULL REFERENCES carts ON DELETE CASCADE,
    product_id  text NOT NULL REFERENCES products,
    quantity    integer NOT NULL CHECK (quantity BETWEEN 1 AND 100),
    unit_price  numeric(12,2) NOT NULL CHECK (unit_price >= 0),
    added_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (cart_id, product_id)
);

CREATE TABLE orders (
    order_id     text PRIMARY KEY,
    customer_id  text REFERENCES customers,
    cart_id      text UNIQUE REFERENCES carts,
    status       text NOT NULL DEFAULT 'placed' CHECK (status IN ('placed', 'paid', 'shipped', 'cancelled')),
    currency     char(3) NOT NULL DEFAULT 'USD' CHECK (currency ~ '^[A-Z]{3}$'),
    total        numeric(12,2) NOT NULL CHECK (total >= 0),
    placed_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_customer_idx ON orders (customer_id, placed_at);

CREATE TABLE order_items (
    order_id    text NOT NULL REFERENCES orders ON DELETE CASCADE,
    product_id  text NOT NULL REFERENCES products,
    quantity    integer NOT NULL CHECK (quantity BETWEEN 1 AND 100),
    unit_price  numeric(12,2) NOT NULL CHECK (unit_price >= 0),
    PRIMARY KEY (order_id, product_id)
);
CREATE INDEX order_items_product_idx ON order_items (product_id);
