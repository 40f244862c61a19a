//! The workloads: each prepares its own users, balances, products and coupons through
//! the HTTP API, then builds request `i` of the run.
//!
//! Everything a request needs that does not change during the run is made once while
//! preparing: each user's `Authorization` header value and the parsed URLs. Building
//! request `i` then clones those (reference-counted or a short copy) and formats at
//! most a small JSON body.

use std::sync::Arc;

use anyhow::{Context, bail};
use reqwest::Url;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue};
use serde_json::{Value, json};

/// The workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::Subcommand)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// GET the product list, a product's detail, /products/popular and a search of
    /// the product names (`?q=`), in turn.
    Browse,
    /// `--users` users race to issue one coupon of `--coupons`.
    CouponRush,
    /// Buyers order and pay (`"pay": true`) one unit each of one product of `--stock`.
    HotProduct,
    /// Order and pay over `--products` products and `--users` users.
    SpreadOrders,
    /// A realistic blend: 70% reads (product list, detail, popular), 10% coupon issue
    /// (one coupon of `--coupons`), 15% order and pay over `--products` products and
    /// `--users` users, 5% balance reads and charges.
    Mixed,
    /// Shoppers fill their carts and check out: each of `--users` users, in turn, puts
    /// a line in its cart, puts a second one, then checks out and pays
    /// (`POST /users/{id}/cart/checkout` with `"pay": true`), over `--products`.
    Cart,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Browse => "browse",
            Scenario::CouponRush => "coupon-rush",
            Scenario::HotProduct => "hot-product",
            Scenario::SpreadOrders => "spread-orders",
            Scenario::Mixed => "mixed",
            Scenario::Cart => "cart",
        }
    }

    /// What the scenario creates through the admin routes while preparing.
    pub fn admin_creates(self) -> &'static str {
        match self {
            Scenario::Browse | Scenario::SpreadOrders | Scenario::Cart => "its products",
            Scenario::CouponRush => "its coupon",
            Scenario::HotProduct => "its product",
            Scenario::Mixed => "its products and coupon",
        }
    }
}

/// Sizes; `None` takes the scenario's default.
#[derive(Debug, Clone, Default)]
pub struct Sizes {
    pub users: Option<usize>,
    pub products: Option<usize>,
    /// coupon-rush and mixed: the coupon's `totalQuantity`.
    pub coupons: Option<u64>,
    /// hot-product: the product's stock.
    pub stock: Option<u64>,
}

const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// Price of every product the scenarios create, won.
pub const PRICE: i64 = 1_000;
/// What a charge of the mixed scenario adds, won. Not a multiple of [`PRICE`], so the
/// verdict tells these apart from the charges made while preparing (all multiples).
pub const MIX_CHARGE: i64 = 500;
const MAX_CHARGE: i64 = 1_000_000;
const MAX_BALANCE: i64 = 100_000_000;

/// `Bearer <token>`, marked sensitive (never shown by `Debug`).
pub fn bearer(token: &str) -> anyhow::Result<HeaderValue> {
    let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
        .context("a token that cannot be sent in a header")?;
    value.set_sensitive(true);
    Ok(value)
}

/// A prepared user: its id and its `Authorization` header value, made once.
#[derive(Debug, Clone)]
pub struct LoadUser {
    pub id: i64,
    pub auth: HeaderValue,
}

/// What one request of the mixed scenario does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// `GET /products?limit=20`
    ProductList,
    /// `GET /products/{id}`
    ProductDetail,
    /// `GET /products/popular`
    Popular,
    /// `POST /coupons/{id}/issue`
    IssueCoupon,
    /// `POST /orders` with `"pay": true`
    OrderAndPay,
    /// `GET /users/{id}/balance`
    Balance,
    /// `POST /users/{id}/balance/charge` of [`MIX_CHARGE`]
    Charge,
}

const ACTIONS: usize = 7;
const MIX_CYCLE: usize = 40;

/// The mixed scenario repeats this cycle: request `i` does `MIX[i % 40]`. Per cycle:
/// 14 details, 8 lists, 6 popular (70% reads), 4 coupon issues (10%), 6 orders (15%),
/// one balance read and one charge (5%), interleaved so that no kind comes in bursts.
const MIX: [Action; MIX_CYCLE] = {
    use Action::{
        Balance as B, Charge as C, IssueCoupon as I, OrderAndPay as O, Popular as P,
        ProductDetail as D, ProductList as L,
    };
    [
        D, L, O, D, P, D, I, L, D, O, D, P, L, D, B, I, O, D, L, P, //
        D, L, O, D, P, D, I, L, D, O, D, P, L, D, C, I, O, D, L, P,
    ]
};

/// How many times each action comes in one cycle.
const MIX_COUNT: [u64; ACTIONS] = {
    let mut count = [0u64; ACTIONS];
    let mut s = 0;
    while s < MIX_CYCLE {
        count[MIX[s] as usize] += 1;
        s += 1;
    }
    count
};

/// For each slot of the cycle, how many slots before it have the same action.
const MIX_RANK: [u64; MIX_CYCLE] = {
    let mut seen = [0u64; ACTIONS];
    let mut rank = [0u64; MIX_CYCLE];
    let mut s = 0;
    while s < MIX_CYCLE {
        rank[s] = seen[MIX[s] as usize];
        seen[MIX[s] as usize] += 1;
        s += 1;
    }
    rank
};

/// Request `i` of the mixed scenario: its action, and `n` when it is that action's
/// n-th request (counting from 0), which picks its user and product.
pub fn mixed_action(i: u64) -> (Action, u64) {
    let slot = (i % MIX_CYCLE as u64) as usize;
    let action = MIX[slot];
    let n = (i / MIX_CYCLE as u64) * MIX_COUNT[action as usize] + MIX_RANK[slot];
    (action, n)
}

/// How many of the mixed scenario's requests `0..requests` do `action`.
pub fn mixed_count(action: Action, requests: u64) -> u64 {
    let cycles = requests / MIX_CYCLE as u64;
    let rest = (requests % MIX_CYCLE as u64) as usize;
    let partial = MIX[..rest].iter().filter(|a| **a == action).count() as u64;
    cycles * MIX_COUNT[action as usize] + partial
}

/// `k`-th pick out of `len` (cycling).
fn pick(k: u64, len: usize) -> usize {
    (k % len.max(1) as u64) as usize
}

/// A stride prime to any count under it spreads consecutive picks over the range.
fn spread(k: u64, len: usize) -> usize {
    pick(k.wrapping_mul(7919), len)
}

/// The URLs of the run, parsed once.
#[derive(Debug, Clone)]
struct Urls {
    product_list: Url,
    /// Searches of the product names, by product index.
    search: Vec<Url>,
    popular: Url,
    orders: Url,
    issue: Option<Url>,
    /// By product index.
    product: Vec<Url>,
    /// By user index.
    balance: Vec<Url>,
    /// By user index.
    charge: Vec<Url>,
}

impl Urls {
    fn new(
        base: &str,
        users: &[LoadUser],
        products: &[i64],
        coupon: Option<i64>,
    ) -> anyhow::Result<Urls> {
        let url = |path: String| {
            Url::parse(&format!("{base}{path}")).with_context(|| format!("bad URL {base}{path}"))
        };
        Ok(Urls {
            product_list: url("/api/v1/products?limit=20".into())?,
            search: (0..products.len())
                .map(|i| url(format!("/api/v1/products?q=product%20{i}&limit=20")))
                .collect::<anyhow::Result<_>>()?,
            popular: url("/api/v1/products/popular".into())?,
            orders: url("/api/v1/orders".into())?,
            issue: coupon
                .map(|c| url(format!("/api/v1/coupons/{c}/issue")))
                .transpose()?,
            product: products
                .iter()
                .map(|p| url(format!("/api/v1/products/{p}")))
                .collect::<anyhow::Result<_>>()?,
            balance: users
                .iter()
                .map(|u| url(format!("/api/v1/users/{}/balance", u.id)))
                .collect::<anyhow::Result<_>>()?,
            charge: users
                .iter()
                .map(|u| url(format!("/api/v1/users/{}/balance/charge", u.id)))
                .collect::<anyhow::Result<_>>()?,
        })
    }
}

/// What a scenario prepared; builds the requests of the run.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub scenario: Scenario,
    pub base: String,
    pub users: Vec<LoadUser>,
    pub products: Vec<i64>,
    /// The products' variants (one each), by product index.
    pub variants: Vec<i64>,
    pub coupon: Option<i64>,
    /// coupon-rush and mixed: the coupon's total; hot-product: the product's initial stock.
    pub quantity: u64,
    /// Every mutation carries `Idempotency-Key: <this>-<request number>` (a client
    /// that retries safely does); `None` sends none.
    pub keys: Option<String>,
    urls: Urls,
}

impl Prepared {
    /// What a scenario prepared on the server at `base` (no trailing slash).
    pub fn new(
        scenario: Scenario,
        base: &str,
        users: Vec<LoadUser>,
        products: Vec<i64>,
        coupon: Option<i64>,
        quantity: u64,
    ) -> anyhow::Result<Prepared> {
        let base = base.trim_end_matches('/').to_string();
        let urls = Urls::new(&base, &users, &products, coupon)?;
        Ok(Prepared {
            scenario,
            base,
            users,
            variants: products.clone(),
            products,
            coupon,
            quantity,
            keys: Some(format!("load-{:016x}", fastrand::u64(..))),
            urls,
        })
    }

    /// The variant of each product (the product's id when not set).
    pub fn with_variants(mut self, variants: Vec<i64>) -> Prepared {
        self.variants = variants;
        self
    }

    /// Sends no `Idempotency-Key` (to compare with keyed runs).
    pub fn without_keys(mut self) -> Prepared {
        self.keys = None;
        self
    }

    fn post_json(
        &self,
        client: &reqwest::Client,
        i: u64,
        url: &Url,
        user: &LoadUser,
        body: String,
    ) -> reqwest::RequestBuilder {
        self.send_json(client.post(url.clone()), i, user, body)
    }

    fn send_json(
        &self,
        req: reqwest::RequestBuilder,
        i: u64,
        user: &LoadUser,
        body: String,
    ) -> reqwest::RequestBuilder {
        let req = req
            .header(AUTHORIZATION, user.auth.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(body);
        match &self.keys {
            Some(run) => req.header(IDEMPOTENCY_KEY, format!("{run}-{i}")),
            None => req,
        }
    }

    fn issue(&self, client: &reqwest::Client, i: u64, user: &LoadUser) -> reqwest::RequestBuilder {
        let url = self.urls.issue.as_ref().expect("the scenario has a coupon");
        self.post_json(client, i, url, user, format!("{{\"userId\":{}}}", user.id))
    }

    fn order(
        &self,
        client: &reqwest::Client,
        i: u64,
        user: &LoadUser,
        product: i64,
    ) -> reqwest::RequestBuilder {
        self.post_json(
            client,
            i,
            &self.urls.orders,
            user,
            format!(
                "{{\"userId\":{},\"items\":[{{\"productId\":{product},\"quantity\":1}}],\"pay\":true}}",
                user.id
            ),
        )
    }

    /// Request `i` of the run.
    pub fn request(&self, client: &reqwest::Client, i: u64) -> reqwest::RequestBuilder {
        let (users, products) = (self.users.len(), self.products.len());
        match self.scenario {
            Scenario::Browse => match i % 4 {
                0 => client.get(self.urls.product_list.clone()),
                1 => client.get(self.urls.product[pick(i / 4, products)].clone()),
                2 => client.get(self.urls.popular.clone()),
                _ => client.get(self.urls.search[spread(i / 4, products)].clone()),
            },
            Scenario::Cart => {
                // Every user takes step 0, then every user step 1, ...: one user's
                // steps are `users` requests apart, so they arrive in order.
                let (u, round) = (pick(i, users), i / users.max(1) as u64);
                let user = &self.users[u];
                let base = format!("{}/api/v1/users/{}/cart", self.base, user.id);
                match round % 3 {
                    step @ (0 | 1) => {
                        let variant = self.variants[spread(round + step + u as u64, products)];
                        self.send_json(
                            client.put(format!("{base}/items/{variant}")),
                            i,
                            user,
                            "{\"quantity\":1}".into(),
                        )
                    }
                    _ => self.send_json(
                        client.post(format!("{base}/checkout")),
                        i,
                        user,
                        "{\"pay\":true}".into(),
                    ),
                }
            }
            Scenario::CouponRush => self.issue(client, i, &self.users[pick(i, users)]),
            Scenario::HotProduct | Scenario::SpreadOrders => {
                let user = &self.users[pick(i, users)];
                self.order(client, i, user, self.products[spread(i, products)])
            }
            Scenario::Mixed => {
                let (action, n) = mixed_action(i);
                match action {
                    Action::ProductList => client.get(self.urls.product_list.clone()),
                    Action::ProductDetail => {
                        client.get(self.urls.product[pick(n, products)].clone())
                    }
                    Action::Popular => client.get(self.urls.popular.clone()),
                    // The n-th attempt goes to user n: the first `users` attempts are
                    // distinct users, later ones try again.
                    Action::IssueCoupon => self.issue(client, i, &self.users[pick(n, users)]),
                    // Each user places its share of the orders (see `balance_for`).
                    Action::OrderAndPay => self.order(
                        client,
                        i,
                        &self.users[pick(n, users)],
                        self.products[spread(n, products)],
                    ),
                    Action::Balance => {
                        let u = spread(n, users);
                        client
                            .get(self.urls.balance[u].clone())
                            .header(AUTHORIZATION, self.users[u].auth.clone())
                    }
                    Action::Charge => {
                        let u = spread(n, users);
                        self.post_json(
                            client,
                            i,
                            &self.urls.charge[u],
                            &self.users[u],
                            format!("{{\"amount\":{MIX_CHARGE}}}"),
                        )
                    }
                }
            }
        }
    }
}

/// Posts `body` to `path` (with `auth` as its `Authorization`), expecting `want`;
/// returns the answer's JSON.
async fn post(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    auth: Option<&HeaderValue>,
    body: Value,
    want: u16,
) -> anyhow::Result<Value> {
    let mut req = client.post(format!("{base}{path}")).json(&body);
    if let Some(auth) = auth {
        req = req.header(AUTHORIZATION, auth.clone());
    }
    let res = req.send().await.with_context(|| format!("POST {path}"))?;
    let status = res.status().as_u16();
    let text = res.text().await.unwrap_or_default();
    if status != want {
        let hint = match status {
            401 | 403 if path.starts_with("/api/v1/admin/") => {
                " (is --admin-token the server's admin token?)"
            }
            _ => "",
        };
        bail!("POST {path} answered {status} (wanted {want}): {text}{hint}");
    }
    serde_json::from_str(&text).with_context(|| format!("POST {path}: body {text}"))
}

fn id(v: &Value) -> anyhow::Result<i64> {
    v["id"].as_i64().with_context(|| format!("no id in {v}"))
}

/// Runs `f(0..n)` with at most `concurrency` at once; results in order.
async fn parallel<T, F, Fut>(n: usize, concurrency: usize, f: F) -> anyhow::Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<T>> + Send + 'static,
{
    let gate = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let fut = f(i);
        let permit = gate.clone().acquire_owned().await?;
        set.spawn(async move {
            let out = fut.await;
            drop(permit);
            (i, out)
        });
    }
    let mut out: Vec<Option<T>> = (0..n).map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        let (i, r) = joined?;
        out[i] = Some(r?);
    }
    Ok(out
        .into_iter()
        .map(|t| t.expect("every index ran"))
        .collect())
}

/// `n` users, each with its token and `balance` won (charged in steps the server
/// accepts, with the user's own token).
async fn users(
    client: &reqwest::Client,
    base: &str,
    n: usize,
    balance: i64,
    concurrency: usize,
) -> anyhow::Result<Vec<LoadUser>> {
    let balance = balance.min(MAX_BALANCE);
    parallel(n, concurrency, |i| {
        let (client, base) = (client.clone(), base.to_string());
        async move {
            let created = post(
                &client,
                &base,
                "/api/v1/users",
                None,
                json!({ "name": format!("load-{i}") }),
                201,
            )
            .await?;
            let user = id(&created)?;
            let token = created["token"].as_str().with_context(|| {
                format!("no token in {created}: a server from before authentication?")
            })?;
            let auth = bearer(token)?;
            let mut left = balance;
            while left > 0 {
                let step = left.min(MAX_CHARGE);
                post(
                    &client,
                    &base,
                    &format!("/api/v1/users/{user}/balance/charge"),
                    Some(&auth),
                    json!({ "amount": step }),
                    200,
                )
                .await?;
                left -= step;
            }
            Ok(LoadUser { id: user, auth })
        }
    })
    .await
}

/// `n` products of `stock` each, at [`PRICE`].
async fn products(
    client: &reqwest::Client,
    base: &str,
    admin: &HeaderValue,
    n: usize,
    stock: u64,
    concurrency: usize,
) -> anyhow::Result<Vec<i64>> {
    Ok(
        products_and_variants(client, base, admin, n, stock, concurrency)
            .await?
            .into_iter()
            .map(|(p, _)| p)
            .collect(),
    )
}

/// `n` products of `stock` each, at [`PRICE`], with their (one) variant.
async fn products_and_variants(
    client: &reqwest::Client,
    base: &str,
    admin: &HeaderValue,
    n: usize,
    stock: u64,
    concurrency: usize,
) -> anyhow::Result<Vec<(i64, i64)>> {
    parallel(n, concurrency, |i| {
        let (client, base, admin) = (client.clone(), base.to_string(), admin.clone());
        async move {
            let p = post(
                &client,
                &base,
                "/api/v1/admin/products",
                Some(&admin),
                json!({ "name": format!("load product {i}"), "price": PRICE, "stock": stock }),
                201,
            )
            .await?;
            // A server from before variants answers none: the product is its variant.
            let variant = p["variants"][0]["id"].as_i64();
            Ok((id(&p)?, variant.unwrap_or(id(&p)?)))
        }
    })
    .await
}

/// A coupon of `quantity` that takes 1,000 won off.
async fn coupon(
    client: &reqwest::Client,
    base: &str,
    admin: &HeaderValue,
    name: &str,
    quantity: u64,
) -> anyhow::Result<i64> {
    id(&post(
        client,
        base,
        "/api/v1/admin/coupons",
        Some(admin),
        json!({
            "name": name,
            "discountType": "FIXED",
            "discountValue": 1000,
            "totalQuantity": quantity,
        }),
        201,
    )
    .await?)
}

/// The balance a user needs to pay for its share of `orders` orders of one unit
/// spread evenly over `users` users.
fn balance_for(orders: u64, users: usize) -> i64 {
    let orders = orders.div_ceil(users.max(1) as u64);
    i64::try_from(orders)
        .unwrap_or(i64::MAX)
        .saturating_mul(PRICE)
}

/// Prepares `scenario` on the server at `base` for a run of at most `requests`;
/// `admin` is the `Authorization` value of the admin token.
pub async fn prepare(
    client: &reqwest::Client,
    base: &str,
    scenario: Scenario,
    sizes: &Sizes,
    requests: u64,
    concurrency: usize,
    admin: &HeaderValue,
) -> anyhow::Result<Prepared> {
    let base = base.trim_end_matches('/');
    let (mut users_made, mut products_made, mut coupon_made, mut quantity) =
        (Vec::new(), Vec::new(), None, 0);
    let mut variants_made = None;
    match scenario {
        Scenario::Browse => {
            let p = sizes.products.unwrap_or(100).max(1);
            products_made = products(client, base, admin, p, 1_000, concurrency).await?;
        }
        Scenario::CouponRush => {
            quantity = sizes.coupons.unwrap_or(100);
            let n = sizes.users.unwrap_or(1_000).max(1);
            users_made = users(client, base, n, 0, concurrency).await?;
            coupon_made = Some(coupon(client, base, admin, "load coupon rush", quantity).await?);
        }
        Scenario::HotProduct => {
            quantity = sizes.stock.unwrap_or(100);
            let n = sizes.users.unwrap_or(1_000).max(1);
            users_made = users(client, base, n, balance_for(requests, n), concurrency).await?;
            products_made = products(client, base, admin, 1, quantity, concurrency).await?;
        }
        Scenario::SpreadOrders => {
            let n = sizes.users.unwrap_or(2_000).max(1);
            let p = sizes.products.unwrap_or(1_000).max(1);
            products_made = products(client, base, admin, p, 1_000_000, concurrency).await?;
            users_made = users(client, base, n, balance_for(requests, n), concurrency).await?;
        }
        Scenario::Mixed => {
            let n = sizes.users.unwrap_or(1_000).max(1);
            let p = sizes.products.unwrap_or(100).max(1);
            quantity = sizes.coupons.unwrap_or(100);
            let orders = mixed_count(Action::OrderAndPay, requests);
            // Enough stock and balance for every order the run can place.
            let stock = orders.max(1_000_000);
            products_made = products(client, base, admin, p, stock, concurrency).await?;
            users_made = users(client, base, n, balance_for(orders, n), concurrency).await?;
            coupon_made = Some(coupon(client, base, admin, "load mixed", quantity).await?);
        }
        Scenario::Cart => {
            let n = sizes.users.unwrap_or(1_000).max(1);
            let p = sizes.products.unwrap_or(100).max(1);
            let made =
                products_and_variants(client, base, admin, p, 1_000_000, concurrency).await?;
            products_made = made.iter().map(|(p, _)| *p).collect();
            variants_made = Some(made.iter().map(|(_, v)| *v).collect());
            // Each checkout orders (at most) two lines of one unit.
            let checkouts = requests.div_ceil(3);
            users_made = users(client, base, n, 2 * balance_for(checkouts, n), concurrency).await?;
        }
    }
    let prepared = Prepared::new(
        scenario,
        base,
        users_made,
        products_made,
        coupon_made,
        quantity,
    )?;
    Ok(match variants_made {
        Some(variants) => prepared.with_variants(variants),
        None => prepared,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use super::*;

    #[test]
    fn each_buyer_can_pay_for_its_share() {
        assert_eq!(balance_for(400, 200), 2 * PRICE);
        assert_eq!(balance_for(401, 200), 3 * PRICE);
        assert_eq!(balance_for(10, 200), PRICE);
        assert_eq!(balance_for(0, 200), 0);
    }

    fn load_users(ids: &[i64]) -> Vec<LoadUser> {
        ids.iter()
            .map(|&id| LoadUser {
                id,
                auth: bearer(&format!("{id}.token-of-{id}")).unwrap(),
            })
            .collect()
    }

    fn prepared(scenario: Scenario, users: &[i64], products: &[i64]) -> Prepared {
        Prepared::new(
            scenario,
            "http://127.0.0.1:1/",
            load_users(users),
            products.to_vec(),
            Some(7),
            5,
        )
        .unwrap()
    }

    fn body(req: &reqwest::Request) -> Option<Value> {
        req.body()
            .map(|b| serde_json::from_slice(b.as_bytes().unwrap()).unwrap())
    }

    /// The user a request concerns: the body's `userId`, or the `{userId}` of a
    /// `/users/{userId}/...` path; `None` for the public reads.
    fn concerned(req: &reqwest::Request) -> Option<i64> {
        let path = req.url().path();
        if let Some(rest) = path.strip_prefix("/api/v1/users/") {
            return Some(rest.split('/').next().unwrap().parse().unwrap());
        }
        body(req).and_then(|b| b["userId"].as_i64())
    }

    fn auth(req: &reqwest::Request) -> Option<&str> {
        req.headers()
            .get(AUTHORIZATION)
            .map(|v| v.to_str().unwrap())
    }

    #[test]
    fn requests_cycle_over_users_and_products() {
        let prepared = prepared(Scenario::CouponRush, &[10, 11, 12], &[]);
        let client = reqwest::Client::new();
        let req = prepared.request(&client, 4).build().unwrap();
        assert_eq!(req.method(), reqwest::Method::POST);
        assert_eq!(
            req.url().as_str(),
            "http://127.0.0.1:1/api/v1/coupons/7/issue"
        );
        assert_eq!(body(&req).unwrap(), json!({ "userId": 11 }));
        assert_eq!(auth(&req), Some("Bearer 11.token-of-11"));
        assert_eq!(req.headers()[CONTENT_TYPE], "application/json");

        let prepared = prepared_orders();
        let req = prepared.request(&client, 1).build().unwrap();
        assert_eq!(req.url().path(), "/api/v1/orders");
        assert_eq!(
            body(&req).unwrap(),
            json!({
                "userId": 11,
                "items": [{ "productId": prepared.products[spread(1, 4)], "quantity": 1 }],
                "pay": true,
            })
        );
    }

    #[test]
    fn every_mutation_carries_a_key_of_its_own_unless_told_not_to() {
        let client = reqwest::Client::new();
        let prepared = prepared(Scenario::Mixed, &[10, 11, 12, 13, 14], &[100, 101, 102]);
        let (mut keys, mut posts) = (std::collections::HashSet::new(), 0);
        for i in 0..400 {
            let req = prepared.request(&client, i).build().unwrap();
            let key = req.headers().get(IDEMPOTENCY_KEY);
            if req.method() == reqwest::Method::POST {
                posts += 1;
                let key = key.expect("a keyed mutation").to_str().unwrap().to_string();
                assert!(keys.insert(key), "request {i} reuses a key");
            } else {
                assert!(key.is_none(), "a read carries no key");
            }
        }
        assert_eq!(keys.len(), posts);
        assert!(posts > 100, "the mix has mutations: {posts}");
        let unkeyed = prepared.without_keys();
        for i in 0..400 {
            let req = unkeyed.request(&client, i).build().unwrap();
            assert!(req.headers().get(IDEMPOTENCY_KEY).is_none());
        }
    }

    fn prepared_orders() -> Prepared {
        prepared(Scenario::SpreadOrders, &[10, 11, 12], &[100, 101, 102, 103])
    }

    #[test]
    fn every_request_carries_the_token_of_the_user_concerned() {
        let client = reqwest::Client::new();
        for scenario in [
            Scenario::Browse,
            Scenario::CouponRush,
            Scenario::HotProduct,
            Scenario::SpreadOrders,
            Scenario::Mixed,
        ] {
            let prepared = prepared(scenario, &[10, 11, 12, 13, 14], &[100, 101, 102]);
            let mut scoped = 0;
            for i in 0..400 {
                let req = prepared.request(&client, i).build().unwrap();
                match concerned(&req) {
                    Some(user) => {
                        scoped += 1;
                        let want = format!("Bearer {user}.token-of-{user}");
                        assert_eq!(auth(&req), Some(want.as_str()), "{scenario:?} {i}");
                        assert!(req.headers()[AUTHORIZATION].is_sensitive());
                    }
                    None => {
                        assert_eq!(req.method(), reqwest::Method::GET, "{scenario:?} {i}");
                        assert!(auth(&req).is_none(), "{scenario:?} {i}: public read");
                    }
                }
            }
            let want = match scenario {
                Scenario::Browse => 0,
                Scenario::Mixed => 120, // 30%
                _ => 400,
            };
            assert_eq!(scoped, want, "{scenario:?}");
        }
    }

    /// What a built request is, from its method and path.
    fn classify(req: &reqwest::Request) -> Action {
        let path = req.url().path();
        let post = req.method() == reqwest::Method::POST;
        match path {
            "/api/v1/products" => Action::ProductList,
            "/api/v1/products/popular" => Action::Popular,
            "/api/v1/orders" if post => Action::OrderAndPay,
            p if p.starts_with("/api/v1/products/") => Action::ProductDetail,
            p if p.ends_with("/issue") && post => Action::IssueCoupon,
            p if p.ends_with("/balance/charge") && post => Action::Charge,
            p if p.ends_with("/balance") => Action::Balance,
            p => panic!("unexpected request {p}"),
        }
    }

    #[test]
    fn the_mix_has_the_advertised_proportions() {
        let prepared = prepared(Scenario::Mixed, &[10, 11, 12], &[100, 101]);
        let client = reqwest::Client::new();
        let mut counts: BTreeMap<Action, u64> = BTreeMap::new();
        for i in 0..4_000 {
            let req = prepared.request(&client, i).build().unwrap();
            let action = classify(&req);
            assert_eq!(action, mixed_action(i).0, "request {i}");
            *counts.entry(action).or_default() += 1;
        }
        let reads = counts[&Action::ProductList]
            + counts[&Action::ProductDetail]
            + counts[&Action::Popular];
        assert_eq!(reads, 2_800, "70% reads: {counts:?}");
        assert_eq!(counts[&Action::IssueCoupon], 400, "10% coupon issue");
        assert_eq!(counts[&Action::OrderAndPay], 600, "15% order and pay");
        assert_eq!(
            counts[&Action::Balance] + counts[&Action::Charge],
            200,
            "5% balance"
        );
        assert_eq!(counts[&Action::Balance], counts[&Action::Charge]);
        assert!(counts[&Action::ProductList] > 0 && counts[&Action::Popular] > 0);
        // No burst: every window of 20 consecutive requests has some of each group.
        for start in 0..200 {
            let window: Vec<Action> = (start..start + 20).map(|i| mixed_action(i).0).collect();
            for action in [
                Action::IssueCoupon,
                Action::OrderAndPay,
                Action::ProductDetail,
            ] {
                assert!(window.contains(&action), "{action:?} missing at {start}");
            }
        }
    }

    #[test]
    fn mixed_counts_and_ranks_agree_with_the_requests() {
        let mut seen: HashMap<Action, u64> = HashMap::new();
        for i in 0..500u64 {
            let (action, n) = mixed_action(i);
            let before = seen.entry(action).or_default();
            assert_eq!(n, *before, "request {i} is the {n}-th {action:?}");
            *before += 1;
            for a in [
                Action::ProductList,
                Action::ProductDetail,
                Action::Popular,
                Action::IssueCoupon,
                Action::OrderAndPay,
                Action::Balance,
                Action::Charge,
            ] {
                let want = (0..=i).filter(|&j| mixed_action(j).0 == a).count() as u64;
                assert_eq!(mixed_count(a, i + 1), want, "{a:?} in 0..={i}");
            }
        }
        assert_eq!(mixed_count(Action::OrderAndPay, 0), 0);
    }

    #[test]
    fn mixed_buyers_can_pay_and_coupon_attempts_start_with_distinct_users() {
        let users: Vec<i64> = (1..=7).collect();
        let prepared = prepared(Scenario::Mixed, &users, &[100, 101, 102]);
        let client = reqwest::Client::new();
        let requests = 1_001;
        let mut orders: HashMap<i64, i64> = HashMap::new();
        let mut issuers = Vec::new();
        for i in 0..requests {
            let req = prepared.request(&client, i).build().unwrap();
            match classify(&req) {
                Action::OrderAndPay => *orders.entry(concerned(&req).unwrap()).or_default() += 1,
                Action::IssueCoupon => issuers.push(concerned(&req).unwrap()),
                _ => {}
            }
        }
        let budget = balance_for(mixed_count(Action::OrderAndPay, requests), users.len());
        assert_eq!(orders.len(), users.len(), "every user orders");
        for (user, n) in &orders {
            assert!(n * PRICE <= budget, "user {user}: {n} orders, {budget} won");
        }
        let first: std::collections::HashSet<_> = issuers[..users.len()].iter().collect();
        assert_eq!(
            first.len(),
            users.len(),
            "the first attempts are distinct users"
        );
    }

    #[test]
    fn tokens_are_hidden_from_debug() {
        let user = &load_users(&[3])[0];
        let shown = format!("{user:?}");
        assert!(!shown.contains("token-of-3"), "{shown}");
    }
}
