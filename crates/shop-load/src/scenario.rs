//! The workloads: each prepares its own users, balances, products and coupons through
//! the HTTP API, then builds request `i` of the run.

use std::sync::Arc;

use anyhow::{Context, bail};
use serde_json::{Value, json};

/// The workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::Subcommand)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// GET the product list, a product's detail and /products/popular, in turn.
    Browse,
    /// `--users` users race to issue one coupon of `--coupons`.
    CouponRush,
    /// Buyers order and pay (`"pay": true`) one unit each of one product of `--stock`.
    HotProduct,
    /// Order and pay over `--products` products and `--users` users.
    SpreadOrders,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Browse => "browse",
            Scenario::CouponRush => "coupon-rush",
            Scenario::HotProduct => "hot-product",
            Scenario::SpreadOrders => "spread-orders",
        }
    }
}

/// Sizes; `None` takes the scenario's default.
#[derive(Debug, Clone, Default)]
pub struct Sizes {
    pub users: Option<usize>,
    pub products: Option<usize>,
    /// coupon-rush: the coupon's `totalQuantity`.
    pub coupons: Option<u64>,
    /// hot-product: the product's stock.
    pub stock: Option<u64>,
}

/// Price of every product the scenarios create, won.
pub const PRICE: i64 = 1_000;
const MAX_CHARGE: i64 = 1_000_000;
const MAX_BALANCE: i64 = 100_000_000;

/// What a scenario prepared; builds the requests of the run.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub scenario: Scenario,
    pub base: String,
    pub users: Vec<i64>,
    pub products: Vec<i64>,
    pub coupon: Option<i64>,
    /// coupon-rush: the coupon's total; hot-product: the product's initial stock.
    pub quantity: u64,
}

impl Prepared {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Request `i` of the run.
    pub fn request(&self, client: &reqwest::Client, i: u64) -> reqwest::RequestBuilder {
        let i = i as usize;
        match self.scenario {
            Scenario::Browse => match i % 3 {
                0 => client.get(self.url("/api/v1/products?limit=20")),
                1 => {
                    let p = self.products[(i / 3) % self.products.len()];
                    client.get(self.url(&format!("/api/v1/products/{p}")))
                }
                _ => client.get(self.url("/api/v1/products/popular")),
            },
            Scenario::CouponRush => {
                let coupon = self.coupon.expect("coupon-rush has a coupon");
                client
                    .post(self.url(&format!("/api/v1/coupons/{coupon}/issue")))
                    .json(&json!({ "userId": self.users[i % self.users.len()] }))
            }
            Scenario::HotProduct | Scenario::SpreadOrders => {
                let user = self.users[i % self.users.len()];
                // A stride prime to any product count under it spreads consecutive
                // requests over the products.
                let product = self.products[i.wrapping_mul(7919) % self.products.len()];
                client.post(self.url("/api/v1/orders")).json(&json!({
                    "userId": user,
                    "items": [{ "productId": product, "quantity": 1 }],
                    "pay": true,
                }))
            }
        }
    }
}

/// Posts `body` to `path`, expecting `want`; returns the answer's JSON.
async fn post(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    body: Value,
    want: u16,
) -> anyhow::Result<Value> {
    let res = client
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .with_context(|| format!("POST {path}"))?;
    let status = res.status().as_u16();
    let text = res.text().await.unwrap_or_default();
    if status != want {
        bail!("POST {path} answered {status} (wanted {want}): {text}");
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

/// `n` users, each with `balance` won (charged in steps the server accepts).
async fn users(
    client: &reqwest::Client,
    base: &str,
    n: usize,
    balance: i64,
    concurrency: usize,
) -> anyhow::Result<Vec<i64>> {
    let balance = balance.min(MAX_BALANCE);
    parallel(n, concurrency, |i| {
        let (client, base) = (client.clone(), base.to_string());
        async move {
            let user = id(&post(
                &client,
                &base,
                "/api/v1/users",
                json!({ "name": format!("load-{i}") }),
                201,
            )
            .await?)?;
            let mut left = balance;
            while left > 0 {
                let step = left.min(MAX_CHARGE);
                post(
                    &client,
                    &base,
                    &format!("/api/v1/users/{user}/balance/charge"),
                    json!({ "amount": step }),
                    200,
                )
                .await?;
                left -= step;
            }
            Ok(user)
        }
    })
    .await
}

/// `n` products of `stock` each, at [`PRICE`].
async fn products(
    client: &reqwest::Client,
    base: &str,
    n: usize,
    stock: u64,
    concurrency: usize,
) -> anyhow::Result<Vec<i64>> {
    parallel(n, concurrency, |i| {
        let (client, base) = (client.clone(), base.to_string());
        async move {
            id(&post(
                &client,
                &base,
                "/api/v1/admin/products",
                json!({ "name": format!("load product {i}"), "price": PRICE, "stock": stock }),
                201,
            )
            .await?)
        }
    })
    .await
}

/// The balance a user needs to pay for its share of `requests` orders of one unit.
fn balance_for(requests: u64, users: usize) -> i64 {
    let orders = requests.div_ceil(users.max(1) as u64);
    i64::try_from(orders)
        .unwrap_or(i64::MAX)
        .saturating_mul(PRICE)
}

/// Prepares `scenario` on the server at `base` for a run of at most `requests`.
pub async fn prepare(
    client: &reqwest::Client,
    base: &str,
    scenario: Scenario,
    sizes: &Sizes,
    requests: u64,
    concurrency: usize,
) -> anyhow::Result<Prepared> {
    let base = base.trim_end_matches('/').to_string();
    let mut prepared = Prepared {
        scenario,
        base: base.clone(),
        users: Vec::new(),
        products: Vec::new(),
        coupon: None,
        quantity: 0,
    };
    match scenario {
        Scenario::Browse => {
            prepared.products = products(
                client,
                &base,
                sizes.products.unwrap_or(100).max(1),
                1_000,
                concurrency,
            )
            .await?;
        }
        Scenario::CouponRush => {
            let quantity = sizes.coupons.unwrap_or(100);
            prepared.users = users(
                client,
                &base,
                sizes.users.unwrap_or(1_000).max(1),
                0,
                concurrency,
            )
            .await?;
            let coupon = post(
                client,
                &base,
                "/api/v1/admin/coupons",
                json!({
                    "name": "load coupon rush",
                    "discountType": "FIXED",
                    "discountValue": 1000,
                    "totalQuantity": quantity,
                }),
                201,
            )
            .await?;
            prepared.coupon = Some(id(&coupon)?);
            prepared.quantity = quantity;
        }
        Scenario::HotProduct => {
            let stock = sizes.stock.unwrap_or(100);
            let n = sizes.users.unwrap_or(1_000).max(1);
            prepared.users = users(client, &base, n, balance_for(requests, n), concurrency).await?;
            prepared.products = products(client, &base, 1, stock, concurrency).await?;
            prepared.quantity = stock;
        }
        Scenario::SpreadOrders => {
            let n = sizes.users.unwrap_or(2_000).max(1);
            let p = sizes.products.unwrap_or(1_000).max(1);
            prepared.products = products(client, &base, p, 1_000_000, concurrency).await?;
            prepared.users = users(client, &base, n, balance_for(requests, n), concurrency).await?;
        }
    }
    Ok(prepared)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_buyer_can_pay_for_its_share() {
        assert_eq!(balance_for(400, 200), 2 * PRICE);
        assert_eq!(balance_for(401, 200), 3 * PRICE);
        assert_eq!(balance_for(10, 200), PRICE);
        assert_eq!(balance_for(0, 200), 0);
    }

    #[test]
    fn requests_cycle_over_users_and_products() {
        let prepared = Prepared {
            scenario: Scenario::CouponRush,
            base: "http://127.0.0.1:1".into(),
            users: vec![10, 11, 12],
            products: vec![],
            coupon: Some(7),
            quantity: 1,
        };
        let client = reqwest::Client::new();
        let req = prepared.request(&client, 4).build().unwrap();
        assert_eq!(req.url().path(), "/api/v1/coupons/7/issue");
        let body: Value = serde_json::from_slice(req.body().unwrap().as_bytes().unwrap()).unwrap();
        assert_eq!(body, json!({ "userId": 11 }));
    }
}
