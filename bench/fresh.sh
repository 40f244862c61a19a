#!/usr/bin/env bash
# bench/fresh.sh BACKEND SCENARIO [shop-load args...]: one shop-load run against a fresh
# release server on a fresh database (BACKEND sqlite, or postgres with Redis).
#   FLOOD=16   an anonymous wrk flood (bench/flood.lua, 16 connections) beside the run,
#              then the number of its keys stored (must be 0)
#   METRICS=1  keep the batch metrics in /tmp/metrics-BACKEND-SCENARIO.txt
# Build first: cargo build --release -p shop -p shop-load
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
backend=$1; scenario=$2; shift 2
port=$((20000 + RANDOM % 10000))
dir=$(mktemp -d)
if [ "$backend" = sqlite ]; then
  db="sqlite://$dir/shop.db"; extra=()
else
  name="bench_$RANDOM"; psql -h 127.0.0.1 -U postgres -qc "create database $name" >/dev/null
  db="postgres://postgres@127.0.0.1:5432/$name"; extra=(SHOP_REDIS_URL=redis://127.0.0.1:6379 SHOP_REDIS_PREFIX="$name:")
fi
env SHOP_ADMIN_TOKEN=benchadmin SHOP_LISTEN=127.0.0.1:$port SHOP_DATABASE_URL=$db SHOP_DEMO_DATA=false \
  SHOP_MAX_DAILY_CHARGE=100000000000 RUST_LOG=warn "${extra[@]}" "$ROOT/target/release/shop" > "$dir/server.log" 2>&1 &
pid=$!
for _ in $(seq 100); do curl -sf http://127.0.0.1:$port/health/live >/dev/null && break; sleep 0.1; done
if [ -n "${FLOOD:-}" ]; then
  wrk -t1 -c"$FLOOD" -d"${FLOOD_SECS:-25}"s -s "$ROOT/bench/flood.lua" http://127.0.0.1:$port > "$dir/flood.txt" 2>&1 &
  flood=$!
fi
"$ROOT/target/release/shop-load" "$scenario" --url http://127.0.0.1:$port --admin-token benchadmin --database-url "$db" "$@" || true
if [ -n "${FLOOD:-}" ]; then
  wait $flood 2>/dev/null || true
  echo "flood: $(grep -E 'Requests/sec|requests in' "$dir/flood.txt" | tr '\n' ' ')"
  q="select count(*) from idempotency_keys where idem_key like 'flood-%'"
  if [ "$backend" = sqlite ]; then echo "flood keys stored: $(sqlite3 "$dir/shop.db" "$q")";
  else echo "flood keys stored: $(psql -h 127.0.0.1 -U postgres -d "$name" -tAc "$q")"; fi
fi
if [ -n "${METRICS:-}" ]; then
  curl -s http://127.0.0.1:$port/metrics | grep -E '^shop_batch_(phase_seconds|size|seconds)_(sum|count)' > "/tmp/metrics-$backend-$scenario.txt"
fi
kill $pid; wait $pid 2>/dev/null || true
if [ "$backend" = postgres ]; then psql -h 127.0.0.1 -U postgres -qc "drop database $name" >/dev/null; fi
rm -rf "$dir"
