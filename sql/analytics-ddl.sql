-- Analytics schema fed by cdc-sink. Re-runnable. No foreign keys: change events of different
-- tables arrive in no guaranteed order.
-- Bookkeeping columns on every table (written by cdc-sink, never by hand):
--   _cdc_commit_lsn, _cdc_lsn  source position of the change the row reflects; upserts and deletes
--                              only apply when newer, so replays and stale events never regress a row
--   _cdc_synced_at             when cdc-sink wrote the row
--   _cdc_deleted_at            set instead of deleting when a mapping uses delete_mode = "soft"

CREATE TABLE IF NOT EXISTS fact_orders (
  id               bigint PRIMARY KEY,
  customer_id      bigint,
  status           text,
  total_amount     numeric(12,2),
  currency         text,
  created_at       timestamptz,
  updated_at       timestamptz,
  _cdc_commit_lsn  numeric(20,0),
  _cdc_lsn         numeric(20,0),
  _cdc_synced_at   timestamptz,
  _cdc_deleted_at  timestamptz
);

CREATE TABLE IF NOT EXISTS fact_order_items (
  id               bigint PRIMARY KEY,
  order_id         bigint,
  book_id          bigint,
  quantity         integer,
  unit_price       numeric(12,2),
  created_at       timestamptz,
  _cdc_commit_lsn  numeric(20,0),
  _cdc_lsn         numeric(20,0),
  _cdc_synced_at   timestamptz,
  _cdc_deleted_at  timestamptz
);
CREATE INDEX IF NOT EXISTS fact_order_items_order_id ON fact_order_items (order_id);
CREATE INDEX IF NOT EXISTS fact_order_items_book_id ON fact_order_items (book_id);

CREATE TABLE IF NOT EXISTS dim_books (
  id               bigint PRIMARY KEY,
  isbn             text,
  title            text,
  author           text,
  price            numeric(12,2),
  published_on     date,
  tags             text[],
  attributes       jsonb,
  created_at       timestamptz,
  updated_at       timestamptz,
  _cdc_commit_lsn  numeric(20,0),
  _cdc_lsn         numeric(20,0),
  _cdc_synced_at   timestamptz,
  _cdc_deleted_at  timestamptz
);

CREATE TABLE IF NOT EXISTS fact_inventory (
  book_id          bigint PRIMARY KEY,
  quantity         integer,
  reserved         integer,
  warehouse        text,
  updated_at       timestamptz,
  _cdc_commit_lsn  numeric(20,0),
  _cdc_lsn         numeric(20,0),
  _cdc_synced_at   timestamptz,
  _cdc_deleted_at  timestamptz
);

-- A sale is an order that was paid for and not taken back: status paid, shipped or delivered.
-- pending (not paid yet), cancelled and refunded orders are not sales. Soft-deleted rows are excluded.
CREATE OR REPLACE VIEW vw_product_sales_volume AS
SELECT b.id AS book_id,
       b.title,
       COALESCE(sum(i.quantity), 0)::bigint AS units_sold,
       COALESCE(sum(i.quantity * i.unit_price), 0)::numeric(14,2) AS revenue
FROM dim_books b
LEFT JOIN fact_order_items i ON i.book_id = b.id AND i._cdc_deleted_at IS NULL
  AND EXISTS (SELECT 1 FROM fact_orders o WHERE o.id = i.order_id AND o._cdc_deleted_at IS NULL
              AND o.status IN ('paid', 'shipped', 'delivered'))
WHERE b._cdc_deleted_at IS NULL
GROUP BY b.id, b.title;

-- Revenue per UTC day of order creation, same definition of a sale.
CREATE OR REPLACE VIEW vw_sales_over_time AS
SELECT (o.created_at AT TIME ZONE 'UTC')::date AS day,
       count(*)::bigint AS orders,
       sum(o.total_amount)::numeric(14,2) AS revenue
FROM fact_orders o
WHERE o._cdc_deleted_at IS NULL AND o.status IN ('paid', 'shipped', 'delivered')
GROUP BY 1;
