#!/usr/bin/env python3
"""Pads a shop database's table with filler rows, for bench/curve.sh:

    python3 bench/pad.py DATABASE_URL products|users TOTAL

DATABASE_URL is sqlite://PATH (written with python's sqlite3 module) or postgres://...
(written through psql). Inserts TOTAL minus the rows already there, in one statement
each (a recursive CTE on SQLite, generate_series on PostgreSQL) and one transaction,
so that a million rows take seconds; then ANALYZE (VACUUM ANALYZE on PostgreSQL), as
a database that grew over time would have statistics. Run it on a migrated database
while no server writes to it.

The filler keeps the contract's invariants true (bench/curve.sh checks them after its
runs):
- products: 'filler product <i>' at a price of 1,000 to 9,999 won with 100 in stock,
  and the stock_adjustments row that put the 100 there (stock = adjustments minus
  what orders hold).
- users: 'filler user <i>' with a balance of 10,000 won and the one CHARGE ledger
  entry that gave it (balance = ledger sum, balanceAfter = running sum).
Prints what it did on stderr.
"""

import os
import subprocess
import sys
import time

FILL = {
    # table: (statement inserting :n rows from a series i = 1..n, statement adding the
    # rows that keep the invariants for the new rows, id > :before)
    "products": (
        "insert into products (name, price, stock, created_at, updated_at) "
        "select 'filler product ' || i, 1000 + i % 9000, 100, {now}, {now} from {series}",
        "insert into stock_adjustments (product_id, delta, created_at) "
        "select id, stock, created_at from products where id > {before} order by id",
        ["products", "stock_adjustments"],
    ),
    "users": (
        "insert into users (name, balance, created_at) "
        "select 'filler user ' || i, 10000, {now} from {series}",
        "insert into balance_ledger (user_id, kind, amount, balance_after, order_id, created_at) "
        "select id, 'CHARGE', balance, balance, null, created_at from users "
        "where id > {before} order by id",
        ["users", "balance_ledger"],
    ),
}


def pad_sqlite(path, table, total, now):
    import sqlite3

    fill, keep, analyzed = FILL[table]
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        db.execute("pragma busy_timeout = 30000")
        db.execute("pragma foreign_keys = on")
        db.execute("begin immediate")
        have, before = db.execute(f"select count(*), coalesce(max(id), 0) from {table}").fetchone()
        n = max(0, total - have)
        if n:
            series = (
                f"(with recursive g(i) as (select 1 union all select i + 1 from g where i < {n}) "
                "select i from g)"
            )
            db.execute(fill.format(now=now, series=series))
            db.execute(keep.format(before=before))
        db.execute("commit")
        if n:
            for t in analyzed:
                db.execute(f"analyze {t}")
        return have, n
    finally:
        db.close()


def psql(url, sql):
    out = subprocess.run(
        ["psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", url],
        input=sql,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        sys.exit(f"pad.py: psql failed: {out.stderr.strip()}")
    return out.stdout.strip()


def pad_postgres(url, table, total, now):
    fill, keep, analyzed = FILL[table]
    have, before = map(int, psql(url, f"select count(*), coalesce(max(id), 0) from {table}").split("|"))
    n = max(0, total - have)
    if n:
        series = f"generate_series(1, {n}) as g(i)"
        # The filler refers only to rows inserted just before in the same transaction,
        # so the foreign-key triggers (one per row: most of the time of a million
        # rows) can be skipped, as a data-only restore does, when allowed (superuser).
        superuser = psql(url, "select rolsuper from pg_roles where rolname = current_user") == "t"
        psql(
            url,
            "begin;\n"
            + ("set local session_replication_role = replica;\n" if superuser else "")
            + f"lock table {table} in exclusive mode;\n"
            f"{fill.format(now=now, series=series)};\n"
            f"{keep.format(before=before)};\n"
            "commit;\n"
            # as autovacuum would have by now: statistics, hint bits, visibility map
            f"vacuum analyze {', '.join(analyzed)};\n",
        )
    return have, n


def main():
    if len(sys.argv) != 4 or sys.argv[2] not in FILL:
        sys.exit(__doc__)
    url, table, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
    now = int(time.time() * 1000)
    start = time.monotonic()
    if url.startswith("sqlite:"):
        path = url.removeprefix("sqlite:").removeprefix("//").split("?")[0]
        if not os.path.exists(path):
            sys.exit(f"pad.py: no database at {path} (start the server once to migrate it)")
        have, n = pad_sqlite(path, table, total, now)
    elif url.startswith(("postgres://", "postgresql://")):
        have, n = pad_postgres(url, table, total, now)
    else:
        sys.exit(f"pad.py: unsupported database URL {url}")
    print(
        f"pad.py: {table}: {have} rows + {n} filler = {have + n} ({time.monotonic() - start:.1f} s)",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
