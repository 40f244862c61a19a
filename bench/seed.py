"""Seeds a running shop (default http://127.0.0.1:8080) for bench/wrk.sh:
PRODUCTS products with a large stock and USERS users with 1,000,000 won each.
Loopback only; standard library only."""
import concurrent.futures as cf
import json
import os
import urllib.request

BASE = os.environ.get("SHOP", "http://127.0.0.1:8080")
assert BASE.startswith(("http://127.0.0.1", "http://localhost")), "loopback only"
PRODUCTS = int(os.environ.get("PRODUCTS", "1000"))
USERS = int(os.environ.get("USERS", "2000"))


def post(path, body):
    req = urllib.request.Request(
        BASE + path, data=json.dumps(body).encode(),
        headers={"content-type": "application/json"}, method="POST")
    with urllib.request.urlopen(req) as res:
        return json.load(res)


def product(i):
    return post("/api/v1/admin/products", {"name": f"p{i}", "price": 1000, "stock": 1_000_000})["id"]


def user(i):
    uid = post("/api/v1/users", {"name": f"u{i}"})["id"]
    post(f"/api/v1/users/{uid}/balance/charge", {"amount": 1_000_000})
    return uid


with cf.ThreadPoolExecutor(16) as ex:
    products = list(ex.map(product, range(PRODUCTS)))
    users = list(ex.map(user, range(USERS)))
print(json.dumps({"products": [min(products), max(products)], "users": [min(users), max(users)]}))
