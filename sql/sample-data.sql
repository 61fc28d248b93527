-- A small bookstore for the demo (ecom-db). Re-runnable: keyed on isbn.
INSERT INTO books (isbn, title, author, price, published_on, tags, attributes) VALUES
  ('978-0441172719', 'Dune', 'Frank Herbert', 9.99, '1965-08-01', '{sf,classic}', '{"pages": 412}'),
  ('978-0141439587', 'Emma', 'Jane Austen', 7.50, '1815-12-23', '{classic}', '{"pages": 474}'),
  ('978-0547928227', 'The Hobbit', 'J. R. R. Tolkien', 12.00, '1937-09-21', '{fantasy}', '{"pages": 300}'),
  ('978-0262033848', 'Introduction to Algorithms', 'Cormen et al.', 89.00, '2009-07-31', '{cs}', '{"pages": 1312}')
ON CONFLICT (isbn) DO NOTHING;

INSERT INTO orders (customer_id, status, total_amount, created_at)
SELECT c, s, 0, timestamptz '2024-03-01 10:00+00' + (c || ' hours')::interval
FROM (VALUES (1, 'paid'), (2, 'shipped'), (3, 'pending'), (4, 'cancelled'), (5, 'delivered')) v(c, s)
WHERE NOT EXISTS (SELECT 1 FROM orders);

INSERT INTO order_items (order_id, book_id, quantity, unit_price)
SELECT o.id, b.id, 1 + (o.id + b.id) % 3, b.price
FROM orders o JOIN books b ON (o.id + b.id) % 2 = 0
WHERE NOT EXISTS (SELECT 1 FROM order_items);

UPDATE orders o SET total_amount = s.total
FROM (SELECT order_id, sum(quantity * unit_price) AS total FROM order_items GROUP BY 1) s
WHERE s.order_id = o.id AND o.total_amount = 0;
