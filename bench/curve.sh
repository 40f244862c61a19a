#!/usr/bin/env bash
# Throughput and tail latency against table size, to show that the indexes and queries
# keep the curves flat as the catalogue and the customer base grow:
#   cargo build --release && bash bench/curve.sh                  # embedded SQLite
#   cargo build --release && BACKEND=postgres bash bench/curve.sh # PostgreSQL + Redis
#
# For each size, a fresh target/release/shop (SHOP_BIN) on a free loopback port with a
# fresh database: SQLite in a temp dir, or with BACKEND=postgres a new database
# shop_curve_<curve><size>_<pid> on SHOP_BENCH_POSTGRES (default
# postgres://postgres@127.0.0.1:5432, trust auth) and Redis at SHOP_BENCH_REDIS
# (default redis://127.0.0.1:6379) under a SHOP_REDIS_PREFIX of its own. The server
# starts once to run its migrations and stops; bench/pad.py fills the table with
# filler rows in plain SQL (a million in seconds; it keeps the invariants true and
# runs ANALYZE); the server starts again and target/release/shop-load (LOAD_BIN) drives
# it with --json and --database-url, so each run ends with the invariant checks.
#
#   products curve (PRODUCT_SIZES, default 1k 10k 100k 1M): the table is padded to
#     size minus the BROWSE_PRODUCTS (100) that `shop-load browse` creates through the
#     API, then two runs:
#     - `shop-load browse`: product list (first page), detail of its own products,
#       /products/popular, in turn;
#     - wrk (`detail by id`): GET /api/v1/products/<random id in 1..max id>, over the
#       whole table, because shop-load's browse only reads the products it created.
#   users curve (USER_SIZES, default 1k 10k 100k): the users table (with each filler
#     user's one CHARGE ledger entry) is padded to size minus the LOAD_USERS (1000)
#     that `shop-load spread-orders --users 1000 --products 1000` creates, so its
#     orders and payments happen in a users table of that size.
#
# The server runs with SHOP_PRODUCT_CACHE_MS=0: no product detail is served from the
# in-process cache (or Redis), so every detail read goes to the database and its
# index. /products/popular keeps its short cache (SHOP_POPULAR_CACHE_SECS).
#
# Each run is bounded: shop-load by DURATION seconds (10) or REQUESTS requests (20000),
# whichever comes first; wrk by DURATION. CONNS connections (64), all on loopback. One row per run: size,
# throughput, p50, p99, p99.9 (ms), errors (answers other than 2xx, and requests
# without an answer), verdict (shop-load: PASS when every invariant and scenario check
# passed; wrk: PASS when every answer was 200, i.e. every id was found; the invariants
# of that database are checked by the browse row above it). Progress goes to stderr,
# the table to stdout; the exit status is 1 when a row has errors or fails. shop-load
# runs the invariant queries with a 5 s statement timeout: at 1M products on
# PostgreSQL the stock invariant (a subquery per product) takes about 4 s on a busy
# 2-core machine; if it times out, the browse row reads ERROR and loses its numbers.
# PRODUCT_SIZES="" or USER_SIZES="" skips that curve. Servers are stopped, databases
# dropped, Redis keys deleted and temp dirs removed on exit, also on failure or ^C.
# The admin token is a random one made for the run (SHOP_ADMIN_TOKEN to the server,
# --admin-token to shop-load). The numbers mean something only from release builds.
set -euo pipefail
cd "$(dirname "$0")/.."

BACKEND=${BACKEND:-sqlite}
SHOP_BIN=${SHOP_BIN:-target/release/shop}
LOAD_BIN=${LOAD_BIN:-target/release/shop-load}
PRODUCT_SIZES=${PRODUCT_SIZES-1000 10000 100000 1000000}
USER_SIZES=${USER_SIZES-1000 10000 100000}
DURATION=${DURATION:-10}
REQUESTS=${REQUESTS:-20000}
CONNS=${CONNS:-64}
BROWSE_PRODUCTS=${BROWSE_PRODUCTS:-100}
LOAD_USERS=${LOAD_USERS:-1000}
LOAD_PRODUCTS=${LOAD_PRODUCTS:-1000}
READY_SECS=${READY_SECS:-120}
PG=${SHOP_BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432}
REDIS=${SHOP_BENCH_REDIS:-redis://127.0.0.1:6379}

say() { echo "curve: $*" >&2; }
die() { say "$*"; exit 2; }

case "$BACKEND" in
sqlite) ;;
postgres)
    psql -X "$PG/postgres" -qtAc "select 1" >/dev/null || die "no PostgreSQL at $PG"
    [ "$(redis-cli -u "$REDIS" ping)" = PONG ] || die "no Redis at $REDIS"
    ;;
*) die "BACKEND must be sqlite or postgres, not $BACKEND" ;;
esac
for bin in "$SHOP_BIN" "$LOAD_BIN"; do
    [ -x "$bin" ] || die "$bin not found: cargo build --release (or set SHOP_BIN / LOAD_BIN)"
done
command -v wrk >/dev/null || die "wrk not found"

root=$(mktemp -d "${TMPDIR:-/tmp}/shop-curve.XXXXXX")
token=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')
server="" db_name="" redis_prefix="" work="" db_url="" url=""
failures=0

stop_server() {
    [ -n "$server" ] || return 0
    kill "$server" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$server" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    server=""
}

drop_db() {
    if [ -n "$db_name" ]; then
        psql -X "$PG/postgres" -qc "drop database if exists $db_name with (force)" >/dev/null 2>&1 ||
            say "could not drop database $db_name"
        db_name=""
    fi
    if [ -n "$redis_prefix" ]; then
        redis-cli -u "$REDIS" --scan --pattern "${redis_prefix}*" |
            xargs -r redis-cli -u "$REDIS" del >/dev/null 2>&1 || true
        redis_prefix=""
    fi
    [ -z "$work" ] || rm -rf "$work"
    work=""
}

cleanup() {
    stop_server
    drop_db
    rm -rf "$root"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# A fresh database for one size: sets work, db_url (and db_name, redis_prefix).
new_db() {
    work="$root/$1"
    mkdir -p "$work"
    if [ "$BACKEND" = postgres ]; then
        db_name="shop_curve_${1}_$$"
        redis_prefix="shop-curve:$$:$1:"
        psql -X "$PG/postgres" -qc "create database $db_name" >/dev/null
        db_url="$PG/$db_name"
    else
        db_url="sqlite://$work/shop.db"
    fi
}

# Starts the server on db_url and a free port; sets server and url.
start_server() {
    local port env_vars
    port=$(free_port)
    url="http://127.0.0.1:$port"
    env_vars=(
        RUST_LOG=warn
        SHOP_LISTEN="127.0.0.1:$port"
        SHOP_DATABASE_URL="$db_url"
        SHOP_ADMIN_TOKEN="$token"
        SHOP_DEMO_DATA=false
        SHOP_PRODUCT_CACHE_MS=0
        SHOP_EVENTS_FILE="$work/events.jsonl"
    )
    if [ "$BACKEND" = postgres ]; then
        env_vars+=(SHOP_REDIS_URL="$REDIS" SHOP_REDIS_PREFIX="$redis_prefix")
    fi
    env "${env_vars[@]}" "$SHOP_BIN" >>"$work/server.log" 2>&1 &
    server=$!
    for _ in $(seq $((READY_SECS * 10))); do
        curl -sf "$url/health/ready" >/dev/null 2>&1 && return 0
        if ! kill -0 "$server" 2>/dev/null; then
            wait "$server" 2>/dev/null || true
            server=""
            tail -20 "$work/server.log" >&2
            die "the server exited before it was ready"
        fi
        sleep 0.1
    done
    tail -20 "$work/server.log" >&2
    die "the server was not ready after ${READY_SECS}s"
}

scalar() {
    if [ "$BACKEND" = postgres ]; then
        psql -X "$db_url" -qtAc "$1"
    else
        python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])' \
            "$work/shop.db" "$1"
    fi
}

# A fresh, migrated database with TABLE padded to ROWS, and a server on it.
prepare() { # label table rows
    new_db "$1"
    say "$1: migrating ($BACKEND)"
    start_server
    stop_server
    python3 bench/pad.py "$db_url" "$2" "$3"
    start_server
}

# Prints one row from a shop-load --json report or a wrk summary line; returns 1 when
# the row has errors or its verdict fails.
row() { # kind(load|wrk) name size file exit-status
    python3 - "$@" <<'PY'
import json, sys
kind, name, size, path, rc = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
text = open(path).read()
def show(tput, p50, p99, p999, errors, verdict):
    print(f"{name:<26} {size:>8} {tput:>9} {p50:>9} {p99:>9} {p999:>9} {errors:>7}  {verdict}", flush=True)
try:
    if kind == "load":
        r = json.loads(text)
        s, lat = r["summary"], r["summary"]["latencyMs"]
        ok = sum(n for st, n in s["byStatus"].items() if 200 <= int(st) < 300)
        errors = s["requests"] - ok
        checks = r.get("checks") or []
        failed = [c["name"] + " (" + c["detail"] + ")" for c in checks if not c["pass"]]
        verdict = "FAIL: " + "; ".join(failed) if failed else f"PASS ({len(checks)} checks)" if checks else "no checks"
        tput, p50, p99, p999 = s["throughput"], lat["p50"], lat["p99"], lat["p999"]
        good = not failed and checks and errors == 0
    else:
        line = next(l for l in text.splitlines() if l.startswith("CURVE "))
        w = json.loads(line[len("CURVE "):])
        errors = w["errors"] + w["non2xx"]
        tput = w["requests"] / (w["duration_us"] / 1e6)
        p50, p99, p999 = w["p50_us"] / 1000, w["p99_us"] / 1000, w["p999_us"] / 1000
        good = rc == 0 and errors == 0 and w["requests"] > 0
        verdict = "PASS (all 200)" if good else f"FAIL (wrk exit {rc}, {w['non2xx']} not 2xx)"
    show(f"{tput:.1f}", f"{p50:.2f}", f"{p99:.2f}", f"{p999:.2f}", errors, verdict)
    sys.exit(0 if good else 1)
except (ValueError, KeyError, StopIteration):
    # shop-load's error is its first line (then the SQL of a failed check); wrk's last
    lines = [l.strip() for l in text.splitlines() if l.strip()] or ["no output"]
    show("-", "-", "-", "-", "-", f"ERROR (exit {rc}): {(lines[0] if kind == 'load' else lines[-1])[:240]}")
    sys.exit(1)
PY
}

header() {
    echo
    echo "== $1 curve: BACKEND=$BACKEND, SHOP_PRODUCT_CACHE_MS=0, $CONNS connections, at most ${DURATION}s or $REQUESTS requests per run"
    printf '%-26s %8s %9s %9s %9s %9s %7s  %s\n' workload size "req/s" "p50 ms" "p99 ms" "p99.9 ms" errors verdict
}

# shop-load SCENARIO against the current server, then its row.
load_run() { # name size scenario [options]
    local name=$1 size=$2 rc=0
    shift 2
    say "$name at $size: running"
    "$LOAD_BIN" "$@" --url "$url" --admin-token="$token" --database-url "$db_url" --json \
        --connections "$CONNS" --duration "$DURATION" --requests "$REQUESTS" \
        >"$work/load.json" 2>"$work/load.err" || rc=$?
    [ "$rc" -ne 2 ] || cat "$work/load.err" >>"$work/load.json"
    row load "$name" "$size" "$work/load.json" "$rc" || failures=$((failures + 1))
}

# GET /api/v1/products/<random id in 1..max id> with wrk, for DURATION seconds (a
# thread stopped early still counts the whole duration, so wrk is bounded by time
# only).
cat >"$root/detail.lua" <<'LUA'
local threads = 0
function setup(thread)
    threads = threads + 1
    thread:set("tid", threads)
end
function init(args)
    max_id = tonumber(args[1])
    math.randomseed(os.time() + 7919 * tid)
end
function request()
    return wrk.format("GET", "/api/v1/products/" .. math.random(1, max_id))
end
function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        'CURVE {"requests": %.0f, "duration_us": %.0f, "p50_us": %.0f, "p99_us": %.0f, "p999_us": %.0f, "errors": %.0f, "non2xx": %.0f}\n',
        summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
        latency:percentile(99.9), e.connect + e.read + e.write + e.timeout, e.status))
end
LUA

wrk_run() { # name size
    local max_id rc=0
    max_id=$(scalar "select max(id) from products")
    say "$1 at $2: running (ids 1..$max_id)"
    wrk -t2 -c"$CONNS" -d"${DURATION}s" --timeout 10s -s "$root/detail.lua" "$url" \
        -- "$max_id" >"$work/wrk.out" 2>&1 || rc=$?
    row wrk "$1" "$2" "$work/wrk.out" "$rc" || failures=$((failures + 1))
}

finish_size() {
    stop_server
    drop_db
}

if [ -n "$PRODUCT_SIZES" ]; then
    header products
    for size in $PRODUCT_SIZES; do
        prepare "p$size" products $((size > BROWSE_PRODUCTS ? size - BROWSE_PRODUCTS : 0))
        load_run "browse (shop-load)" "$size" browse --products "$BROWSE_PRODUCTS"
        wrk_run "detail by id (wrk)" "$size"
        finish_size
    done
fi

if [ -n "$USER_SIZES" ]; then
    header users
    for size in $USER_SIZES; do
        prepare "u$size" users $((size > LOAD_USERS ? size - LOAD_USERS : 0))
        load_run "spread-orders (shop-load)" "$size" spread-orders \
            --users "$LOAD_USERS" --products "$LOAD_PRODUCTS"
        finish_size
    done
fi

if [ "$failures" -ne 0 ]; then
    say "$failures row(s) with errors or a failed verdict"
    exit 1
fi
