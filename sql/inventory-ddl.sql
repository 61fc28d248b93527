-- inventory-db (inventory-service): source schema for local development. Re-runnable.
CREATE TABLE IF NOT EXISTS inventory (
  book_id     bigint PRIMARY KEY,
  quantity    integer NOT NULL DEFAULT 0 CHECK (quantity >= 0),
  reserved    integer NOT NULL DEFAULT 0 CHECK (reserved >= 0),
  warehouse   text NOT NULL DEFAULT 'main',
  updated_at  timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE inventory REPLICA IDENTITY DEFAULT;
