#!/usr/bin/env bash
# Quick figures with wrk against a fresh embedded server on loopback:
#   cargo build --release && bash bench/wrk.sh
# Starts target/release/shop on 127.0.0.1:8080 with a new database in a temp dir,
# seeds it (bench/seed.py: the users' tokens go to $dir/tokens for bench/order.lua),
# runs each workload for DURATION seconds, stops the server. The admin token is
# SHOP_ADMIN_TOKEN when set (the server and seed.py both take it from the environment);
# otherwise the server generates one beside its database and seed.py reads it there.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
export USERS=${USERS:-2000} PRODUCTS=${PRODUCTS:-1000}
dir=$(mktemp -d)
export SHOP_DATABASE_URL="sqlite://$dir/shop.db" TOKENS="$dir/tokens"
RUST_LOG=warn SHOP_DEMO_DATA=false target/release/shop --listen 127.0.0.1:8080 &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 50); do curl -sf http://127.0.0.1:8080/health/ready >/dev/null && break; sleep 0.1; done
python3 bench/seed.py
run() {
    echo "== $1"
    shift
    wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency "$@" | grep -E "Requests/sec|^ +(50|99)%|Non-2xx"
}
run "product detail" http://127.0.0.1:8080/api/v1/products/1
run "top-5 (cached)" http://127.0.0.1:8080/api/v1/products/popular
run "order + pay, spread over $PRODUCTS products and $USERS users" -s bench/order.lua http://127.0.0.1:8080
HOT=1 run "order + pay, one hot product" -s bench/order.lua http://127.0.0.1:8080
