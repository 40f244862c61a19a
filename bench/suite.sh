#!/usr/bin/env bash
# The figures of docs/BENCHMARKS.md: every shop-load scenario against a fresh server
# (fresh database) on loopback, embedded (SQLite) and PostgreSQL + Redis, order
# workloads with group commit and with one transaction per order.
#   cargo build --release -p shop -p shop-load && bash bench/suite.sh
# Env: BACKENDS ("sqlite postgres"), ONLY (scenario names to run), CONNS (64),
# SHOP_BIN / LOAD_BIN (release binaries), OUT (results dir, default bench/results).
# Each run is bounded by --requests and --duration and stops by itself; the JSON of
# each run is kept in $OUT, and a table is printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
SHOP_BIN=${SHOP_BIN:-target/release/shop}
LOAD_BIN=${LOAD_BIN:-target/release/shop-load}
BACKENDS=${BACKENDS:-sqlite postgres}
CONNS=${CONNS:-64}
OUT=${OUT:-bench/results}
PG=${PG:-postgres://postgres@127.0.0.1:5432}
REDIS=${REDIS:-redis://127.0.0.1:6379}
mkdir -p "$OUT"
admin=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

server=""
dir=""
db=""
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
    [ -n "$dir" ] && rm -rf "$dir"
    [ -n "$db" ] && psql -q "$PG/postgres" -c "drop database if exists $db with (force)" >/dev/null 2>&1 || true
    server="" dir="" db=""
}
trap cleanup EXIT

# run NAME BACKEND GROUP_COMMIT SCENARIO ARGS...
run() {
    local name=$1 backend=$2 group=$3 scenario=$4
    shift 4
    if [ -n "${ONLY:-}" ] && ! grep -qw "$scenario" <<<"$ONLY"; then return; fi
    dir=$(mktemp -d)
    local port url env=()
    port=$(free_port)
    if [ "$backend" = sqlite ]; then
        url="sqlite://$dir/shop.db"
    else
        db="shop_bench_$$_$RANDOM"
        psql -q "$PG/postgres" -c "create database $db" >/dev/null
        url="$PG/$db"
        env=(SHOP_REDIS_URL="$REDIS" SHOP_REDIS_PREFIX="$db:" SHOP_DB_MAX_CONNECTIONS=32)
    fi
    env "${env[@]}" RUST_LOG=warn SHOP_DEMO_DATA=false SHOP_ADMIN_TOKEN="$admin" \
        SHOP_GROUP_COMMIT="$group" SHOP_DATABASE_URL="$url" SHOP_LISTEN="127.0.0.1:$port" \
        "$SHOP_BIN" 2>"$dir/server.log" &
    server=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null && break; sleep 0.1; done
    echo "== $name ($backend, group commit $group): shop-load $scenario $*" >&2
    "$LOAD_BIN" "$scenario" --url "http://127.0.0.1:$port" --admin-token "$admin" \
        --database-url "$url" --connections "$CONNS" --json "$@" \
        >"$OUT/$backend-$name.json" || echo "   (verdict failed: see $OUT/$backend-$name.json)" >&2
    cleanup
}

for backend in $BACKENDS; do
    run browse "$backend" true browse --products 1000 --requests 400000 --duration 15
    run coupon-rush "$backend" true coupon-rush --users 50000 --coupons 1000 --requests 100000 --duration 20 --prepare-concurrency 64
    run hot-product "$backend" true hot-product --users 2000 --stock 100000 --requests 60000 --duration 20
    run hot-product-per-order "$backend" false hot-product --users 2000 --stock 100000 --requests 30000 --duration 20
    run spread-orders "$backend" true spread-orders --users 10000 --products 10000 --requests 60000 --duration 20 --prepare-concurrency 64
    run spread-orders-per-order "$backend" false spread-orders --users 10000 --products 10000 --requests 30000 --duration 20 --prepare-concurrency 64
    run cart "$backend" true cart --users 5000 --products 1000 --requests 60000 --duration 20 --prepare-concurrency 64
    run mixed "$backend" true mixed --users 5000 --products 1000 --coupons 1000 --requests 200000 --duration 20
    run spread-orders-open-2000 "$backend" true spread-orders --users 10000 --products 10000 --requests 30000 --duration 15 --rate 2000 --prepare-concurrency 64
done

python3 - "$OUT" <<'PY'
import json, pathlib, sys
rows = []
for f in sorted(pathlib.Path(sys.argv[1]).glob("*.json")):
    try:
        r = json.loads(f.read_text())
    except Exception:
        print(f"{f.stem}: no result"); continue
    s = r.get("summary", r)
    l = s.get("latencyMs") or s["latency_ms"]
    errs = {k: v for k, v in (s.get("byStatus") or s["by_status"]).items() if not k.startswith("2")}
    checks = r.get("checks") or []
    ok = "pass" if checks and all(c["pass"] for c in checks) else ("no checks" if not checks else "FAIL")
    rows.append(f"| {f.stem} | {s['throughput']:,.0f} | {l['p50']:.2f} | {l['p99']:.2f} | {l['p999']:.2f} | {errs or '-'} | {ok} |")
print("| run | req/s | p50 ms | p99 ms | p99.9 ms | non-2xx | verdict |")
print("|---|---|---|---|---|---|---|")
print("\n".join(rows))
PY
