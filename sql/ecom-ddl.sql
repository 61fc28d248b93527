-- ecom-db (ecom-service): source schema for local development. Re-runnable.
-- REPLICA IDENTITY DEFAULT (the primary key) is what the pipeline needs: deletes carry the key,
-- updates carry the new row; cdc-sink never reads row data from `before`.
CREATE TABLE IF NOT EXISTS books (
  id            bigserial PRIMARY KEY,
  isbn          text NOT NULL UNIQUE,
  title         text NOT NULL,
  author        text NOT NULL,
  price         numeric(12,2) NOT NULL CHECK (price >= 0),
  published_on  date,
  tags          text[] NOT NULL DEFAULT '{}',
  attributes    jsonb NOT NULL DEFAULT '{}',
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS orders (
  id            bigserial PRIMARY KEY,
  customer_id   bigint NOT NULL,
  status        text NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'paid', 'shipped', 'delivered', 'cancelled', 'refunded')),
  total_amount  numeric(12,2) NOT NULL DEFAULT 0,
  currency      text NOT NULL DEFAULT 'EUR',
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS order_items (
  id            bigserial PRIMARY KEY,
  order_id      bigint NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
  book_id       bigint NOT NULL REFERENCES books (id),
  quantity      integer NOT NULL CHECK (quantity > 0),
  unit_price    numeric(12,2) NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE books REPLICA IDENTITY DEFAULT;
ALTER TABLE orders REPLICA IDENTITY DEFAULT;
ALTER TABLE order_items REPLICA IDENTITY DEFAULT;
