-- Stock for the demo books (inventory-db), book ids 1..4 as created by sample-data.sql.
INSERT INTO inventory (book_id, quantity, reserved, warehouse) VALUES
  (1, 25, 2, 'main'), (2, 8, 0, 'main'), (3, 40, 5, 'north'), (4, 3, 1, 'main')
ON CONFLICT (book_id) DO NOTHING;
