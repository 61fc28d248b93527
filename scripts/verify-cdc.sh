#!/usr/bin/env bash
# End-to-end check of a running pipeline: writes uniquely tagged rows in the source databases and
# waits for each change to show in analytics. Exit 0 only if every step held.
#   ECOM_DB_URL, INVENTORY_DB_URL, ANALYTICS_DB_URL   libpq connection URLs
#   --timeout SECONDS   how long each step may take (default 5)
set -uo pipefail

timeout_s=5
while [ $# -gt 0 ]; do
  case "$1" in
    --timeout) timeout_s="$2"; shift 2 ;;
    --timeout=*) timeout_s="${1#*=}"; shift ;;
    -h|--help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "verify-cdc: unknown argument $1" >&2; exit 64 ;;
  esac
done
for v in ECOM_DB_URL INVENTORY_DB_URL ANALYTICS_DB_URL; do
  [ -n "${!v:-}" ] || { echo "verify-cdc: $v is not set" >&2; exit 64; }
done

q() { psql "$1" -XAtq -v ON_ERROR_STOP=1 -c "$2"; }
now_ms() { date +%s%3N; }
tag=$(( -( $(date +%s) % 100000000 ) * 100 - RANDOM % 100 ))   # a negative id no application uses
order_id=""
failed=0

cleanup() {
  [ -n "$order_id" ] && q "$ECOM_DB_URL" "DELETE FROM orders WHERE id = $order_id" >/dev/null 2>&1
  q "$INVENTORY_DB_URL" "DELETE FROM inventory WHERE book_id = $tag" >/dev/null 2>&1
}
trap cleanup EXIT

# step NAME SQL-ON-ANALYTICS EXPECTED: polls until the analytics query prints EXPECTED
step() {
  local name="$1" sql="$2" want="$3" start got
  start=$(now_ms)
  local deadline=$(( start + timeout_s * 1000 ))
  while :; do
    got=$(q "$ANALYTICS_DB_URL" "$sql" 2>&1)
    if [ "$got" = "$want" ]; then
      printf 'ok    %-40s %6d ms\n' "$name" $(( $(now_ms) - start ))
      return 0
    fi
    if [ "$(now_ms)" -ge "$deadline" ]; then
      printf 'FAIL  %-40s not seen within %s s (analytics says: %s, expected: %s)\n' "$name" "$timeout_s" "${got:-nothing}" "$want"
      failed=$((failed + 1))
      return 1
    fi
    sleep 0.05
  done
}

order_id=$(q "$ECOM_DB_URL" "INSERT INTO orders (customer_id, status, total_amount) VALUES ($tag, 'pending', 12.34) RETURNING id") \
  || { echo "FAIL  cannot write to ecom-db"; exit 1; }
step "order insert reaches fact_orders" "SELECT status || ' ' || total_amount FROM fact_orders WHERE id = $order_id" "pending 12.34"
q "$ECOM_DB_URL" "UPDATE orders SET status = 'paid', total_amount = 43.21 WHERE id = $order_id" >/dev/null
step "order update reaches fact_orders" "SELECT status || ' ' || total_amount FROM fact_orders WHERE id = $order_id" "paid 43.21"
q "$ECOM_DB_URL" "DELETE FROM orders WHERE id = $order_id" >/dev/null
step "order delete reaches fact_orders" "SELECT count(*) FROM fact_orders WHERE id = $order_id AND _cdc_deleted_at IS NULL" "0"
order_id=""

q "$INVENTORY_DB_URL" "INSERT INTO inventory (book_id, quantity) VALUES ($tag, 5)" >/dev/null \
  || { echo "FAIL  cannot write to inventory-db"; exit 1; }
step "inventory insert reaches fact_inventory" "SELECT quantity FROM fact_inventory WHERE book_id = $tag" "5"
q "$INVENTORY_DB_URL" "UPDATE inventory SET quantity = 3 WHERE book_id = $tag" >/dev/null
step "inventory update reaches fact_inventory" "SELECT quantity FROM fact_inventory WHERE book_id = $tag" "3"
q "$INVENTORY_DB_URL" "DELETE FROM inventory WHERE book_id = $tag" >/dev/null
step "inventory delete reaches fact_inventory" "SELECT count(*) FROM fact_inventory WHERE book_id = $tag AND _cdc_deleted_at IS NULL" "0"

if [ "$failed" -eq 0 ]; then echo "verify-cdc: every change reached analytics"; exit 0; fi
echo "verify-cdc: $failed step(s) failed"
exit 1
