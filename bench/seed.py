"""Seeds a running shop (default http://127.0.0.1:8080) for bench/wrk.sh:
PRODUCTS products with a large stock and USERS users with 1,000,000 won each.

Products are created through the admin routes with the admin token: SHOP_ADMIN_TOKEN,
or else, when SHOP_DATABASE_URL is sqlite://PATH, the token a server without
SHOP_ADMIN_TOKEN generated and stored in PATH.admin-token. Each user is charged with
its own token (from POST /api/v1/users); with TOKENS set, the users are written there,
one "<userId> <token>" line each (mode 0600), for bench/order.lua.
Loopback only; standard library only."""
import concurrent.futures as cf
import json
import os
import sys
import urllib.error
import urllib.request

BASE = os.environ.get("SHOP", "http://127.0.0.1:8080")
assert BASE.startswith(("http://127.0.0.1", "http://localhost")), "loopback only"
PRODUCTS = int(os.environ.get("PRODUCTS", "1000"))
USERS = int(os.environ.get("USERS", "2000"))
TOKENS = os.environ.get("TOKENS")


def admin_token():
    token = os.environ.get("SHOP_ADMIN_TOKEN", "").strip()
    if token:
        return token
    url = os.environ.get("SHOP_DATABASE_URL", "")
    for prefix in ("sqlite://", "sqlite:"):
        if url.startswith(prefix):
            path = url[len(prefix):].split("?")[0] + ".admin-token"
            try:
                with open(path) as f:
                    token = f.read().strip()
            except OSError as e:
                sys.exit(f"seed.py: no SHOP_ADMIN_TOKEN, and {path} could not be read ({e})")
            if token:
                return token
            sys.exit(f"seed.py: {path} is empty; set SHOP_ADMIN_TOKEN")
    sys.exit("seed.py: products are created through /api/v1/admin/..., which needs the admin "
             "token: set SHOP_ADMIN_TOKEN (the server's), or SHOP_DATABASE_URL=sqlite://PATH "
             "of a server that generated its own (read from PATH.admin-token)")


ADMIN = admin_token()


def post(path, body, token=None):
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    req = urllib.request.Request(
        BASE + path, data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req) as res:
            return json.load(res)
    except urllib.error.HTTPError as e:
        sys.exit(f"seed.py: POST {path} answered {e.code}: {e.read().decode(errors='replace')}")


def product(i):
    return post("/api/v1/admin/products",
                {"name": f"p{i}", "price": 1000, "stock": 1_000_000}, ADMIN)["id"]


def user(i):
    created = post("/api/v1/users", {"name": f"u{i}"})
    uid, token = created["id"], created.get("token")
    if not token:
        sys.exit(f"seed.py: POST /api/v1/users answered no token: {created}")
    post(f"/api/v1/users/{uid}/balance/charge", {"amount": 1_000_000}, token)
    return uid, token


with cf.ThreadPoolExecutor(16) as ex:
    products = list(ex.map(product, range(PRODUCTS)))
    users = list(ex.map(user, range(USERS)))
if TOKENS:
    fd = os.open(TOKENS, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.writelines(f"{uid} {token}\n" for uid, token in users)
ids = [uid for uid, _ in users]
print(json.dumps({"products": [min(products), max(products)], "users": [min(ids), max(ids)],
                  "tokens": TOKENS}))
