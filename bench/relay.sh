#!/usr/bin/env bash
# Outbox relay throughput and backlog drain after a NATS outage, on loopback:
#   cargo build --release && bash bench/relay.sh
# Starts a nats-server of its own (port 4333) and target/release/shop on a fresh
# PostgreSQL database (SHOP_BENCH_POSTGRES, default the local trust one) with that
# NATS; stops NATS, pays ORDERS orders (wrk, bounded) so their events pile up in the
# outbox, starts NATS again and times the drain. PostgreSQL needs an admin token: the
# server and bench/seed.py take SHOP_ADMIN_TOKEN (a random one unless set); the users'
# tokens go to $dir/tokens for bench/order.lua.
set -euo pipefail
cd "$(dirname "$0")/.."
PG=${SHOP_BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432}
DURATION=${DURATION:-20}
export USERS=${USERS:-2000} PRODUCTS=${PRODUCTS:-1000}
dir=$(mktemp -d)
export SHOP_ADMIN_TOKEN=${SHOP_ADMIN_TOKEN:-$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')}
export TOKENS="$dir/tokens"
db=shop_bench_relay_$$
psql "$PG/postgres" -qc "create database $db"
nats() { nats-server -a 127.0.0.1 -p 4333 -js -sd "$dir/nats" >/dev/null 2>&1 & echo $!; }
nats_pid=$(nats)
RUST_LOG=warn SHOP_DATABASE_URL="$PG/$db" SHOP_NATS_URL=nats://127.0.0.1:4333 \
    SHOP_OUTBOX_MAX_BACKOFF_MS=1000 target/release/shop --listen 127.0.0.1:8080 &
server=$!
trap 'kill $server $nats_pid 2>/dev/null; sleep 1; psql "$PG/postgres" -qc "drop database if exists $db with (force)"; rm -rf "$dir"' EXIT
for _ in $(seq 50); do curl -sf http://127.0.0.1:8080/health/ready >/dev/null && break; sleep 0.1; done
python3 bench/seed.py >/dev/null
kill "$nats_pid"; wait "$nats_pid" 2>/dev/null || true
echo "== NATS down: order + pay for ${DURATION}s"
wrk -t2 -c64 -d"${DURATION}s" --latency -s bench/order.lua http://127.0.0.1:8080 | grep -E "Requests/sec|^ +(50|99)%|Non-2xx"
backlog=$(psql "$PG/$db" -tAc "select count(*) from outbox_events where delivered_at is null")
echo "backlog: $backlog events"
nats_pid=$(nats)
start=$(date +%s.%N)
while [ "$(psql "$PG/$db" -tAc "select count(*) from outbox_events where delivered_at is null")" != 0 ]; do sleep 0.2; done
end=$(date +%s.%N)
python3 -c "d=$end-$start; print(f'drained {$backlog} events in {d:.1f} s after NATS came back: {$backlog/d:.0f} events/s')"
