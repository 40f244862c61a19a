//! The test harness: a real server on a free loopback port with a fresh SQLite
//! database in a temporary directory, a manual clock, and helpers that read the
//! database to check the contract's invariants.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use shop::app::{self, AppState};
use shop::clock::ManualClock;
use shop::config::Config;
use tokio_util::sync::CancellationToken;

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub state: AppState,
    pub clock: Arc<ManualClock>,
    pub shutdown: CancellationToken,
    pub dir: tempfile::TempDir,
    pub admin_token: String,
    pg_database: Option<String>,
    /// Answers that broke the OpenAPI document (see `conformance`): the test fails.
    violations: crate::conformance::Violations,
}

/// The admin token every test server is configured with.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(name) = self.pg_database.take() {
            drop_postgres_database(name);
        }
        crate::conformance::assert_none(&self.violations);
    }
}

/// The database a test runs on. Every test body runs on each (see `rstest` cases).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server tests create their databases on
/// (`SHOP_TEST_POSTGRES`, default the local one with trust auth).
fn postgres_server() -> String {
    std::env::var("SHOP_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// The Redis the PostgreSQL cases use (`SHOP_TEST_REDIS`, default the local one).
pub fn redis_server() -> String {
    std::env::var("SHOP_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Deletes every key under `prefix`: to the server, the same as a flush of Redis.
pub async fn delete_redis_keys(prefix: &str) {
    let client = redis::Client::open(redis_server()).unwrap();
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("Redis must be running");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

/// An empty PostgreSQL database of a test's own (no migrations run), dropped with it.
pub struct EmptyPostgres {
    pub url: String,
    name: Option<String>,
}

impl EmptyPostgres {
    pub async fn create() -> EmptyPostgres {
        let (url, name) = create_postgres_database().await;
        EmptyPostgres {
            url,
            name: Some(name),
        }
    }
}

impl Drop for EmptyPostgres {
    fn drop(&mut self) {
        if let Some(name) = self.name.take() {
            drop_postgres_database(name);
        }
    }
}

/// Creates an empty database of its own for one test.
async fn create_postgres_database() -> (String, String) {
    use sqlx::{Connection, Executor};
    sqlx::any::install_default_drivers();
    let name = format!("shop_test_{}", uuid::Uuid::now_v7().simple());
    let mut admin = sqlx::AnyConnection::connect(&format!("{}/postgres", postgres_server()))
        .await
        .expect("PostgreSQL must be running for the tests (see README)");
    admin
        .execute(format!("create database {name}").as_str())
        .await
        .expect("create database");
    (format!("{}/{name}", postgres_server()), name)
}

fn drop_postgres_database(name: String) {
    // Drop runs outside any runtime that could be blocked on: use a thread of its own.
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            use sqlx::{Connection, Executor};
            delete_redis_keys(&format!("{name}:")).await;
            if let Ok(mut admin) =
                sqlx::AnyConnection::connect(&format!("{}/postgres", postgres_server())).await
            {
                let _ = admin
                    .execute(format!("drop database if exists {name} with (force)").as_str())
                    .await;
            }
        });
    })
    .join();
}

/// An empty database of a test's own (a file in a temporary directory, or a
/// PostgreSQL database dropped with it).
pub struct TestDatabase {
    pub url: String,
    _dir: tempfile::TempDir,
    pg_database: Option<String>,
}

impl TestDatabase {
    pub async fn new(backend: Backend) -> TestDatabase {
        let dir = tempfile::tempdir().expect("temp dir");
        let (url, pg_database) = match backend {
            Backend::Sqlite => (
                format!("sqlite://{}", dir.path().join("shop.db").display()),
                None,
            ),
            Backend::Postgres => {
                let (url, name) = create_postgres_database().await;
                (url, Some(name))
            }
        };
        TestDatabase {
            url,
            _dir: dir,
            pg_database,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some(name) = self.pg_database.take() {
            drop_postgres_database(name);
        }
    }
}

/// A server with the default configuration (no demo data).
pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// A server whose configuration `tweak` may change first.
pub async fn spawn_app_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::defaults();
    let mut pg_database = None;
    config.database_url = match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.path().join("shop.db").display()),
        Backend::Postgres => {
            let (url, name) = create_postgres_database().await;
            // The scale-out configuration: PostgreSQL with Redis, keys of its own.
            config.redis_url = Some(redis_server());
            config.redis_prefix = format!("{name}:");
            pg_database = Some(name);
            url
        }
    };
    config.demo_data = Some(false);
    // Tests charge more in a day than a user may by default; the daily limit's own
    // tests lower it again.
    config.max_daily_charge = 1_000_000_000_000;
    config.events_file = Some(dir.path().join("shop.events.jsonl"));
    config.outbox_interval_ms = 20;
    config.expiry_interval_ms = 50;
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.admin_token = Some(shop::config::Secret(ADMIN_TOKEN.into()));
    tweak(&mut config);
    let admin_token = config
        .admin_token
        .as_ref()
        .map_or_else(String::new, |t| t.expose().to_string());
    let clock = ManualClock::new();
    let state = AppState::new(config, clock.clone())
        .await
        .expect("app state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    app::spawn_workers(&state, shutdown.clone())
        .await
        .expect("workers");
    let violations = crate::conformance::Violations::default();
    let router = crate::conformance::wrap(app::router(state.clone()), violations.clone());
    let config = state.config.clone();
    let serving = shutdown.clone();
    tokio::spawn(async move { app::serve_router(listener, router, &config, serving).await });
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    TestApp {
        base: format!("http://{addr}"),
        client,
        state,
        clock,
        shutdown,
        dir,
        admin_token,
        pg_database,
        violations,
    }
}

/// An answer: status and JSON body (`Value::Null` when the body is not JSON).
pub type Answer = (StatusCode, Value);

async fn answer(res: reqwest::Response) -> Answer {
    let status = res.status();
    let bytes = res.bytes().await.expect("body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// `user`'s bearer token (tokens are signed, so the harness can make any).
    pub fn user_token(&self, user: i64) -> String {
        self.state.auth.token_for(shop::ids::UserId(user))
    }

    /// The token the rightful caller of `path` sends: the admin's on admin routes;
    /// on `/users/{id}/...`, that user's; on order creation and coupon issue, the
    /// body's `userId`'s; on `/orders/{id}/...`, the order's owner's. Where the owner
    /// cannot be told (a malformed body, an order that does not exist), user 1's, so
    /// that the request gets past authentication to the check under test. Public
    /// routes get none.
    pub async fn rightful_token(&self, path: &str, body: Option<&[u8]>) -> Option<String> {
        let path = path.split('?').next().unwrap_or(path);
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let id = |s: &str| s.parse::<i64>().ok().filter(|id| *id > 0);
        let body_user = || {
            body.and_then(|b| serde_json::from_slice::<Value>(b).ok())
                .and_then(|v| v["userId"].as_i64())
                .filter(|id| *id > 0)
        };
        let user = match segments.as_slice() {
            ["api", "v1", "admin", ..] => return Some(self.admin_token.clone()),
            ["api", "v1", "users", user, _, ..] => id(user),
            ["api", "v1", "coupons", _, "issue"] | ["api", "v1", "orders"] => body_user(),
            ["api", "v1", "orders", order, ..] => match id(order) {
                Some(order) => self.order_owner(order).await,
                None => None,
            },
            _ => return None,
        };
        Some(self.user_token(user.unwrap_or(1)))
    }

    async fn order_owner(&self, order: i64) -> Option<i64> {
        sqlx::query_as::<_, (i64,)>("select user_id from orders where id = $1")
            .bind(order)
            .fetch_optional(self.state.db.read())
            .await
            .expect("order owner")
            .map(|(u,)| u)
    }

    /// A request to `path` carrying the rightful caller's token (see
    /// [`TestApp::rightful_token`]); `body` is sent as is when given.
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> reqwest::RequestBuilder {
        self.request_to(&self.base, method, path, body).await
    }

    /// As [`TestApp::request`], to another instance at `base`.
    pub async fn request_to(
        &self,
        base: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> reqwest::RequestBuilder {
        let mut req = self.client.request(method, format!("{base}{path}"));
        if let Some(token) = self.rightful_token(path, body.as_deref()).await {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.body(body);
        }
        req
    }

    async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> Answer {
        let bytes = body.map(|b| serde_json::to_vec(b).unwrap());
        let mut req = self.request(method, path, bytes).await;
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key);
        }
        answer(req.send().await.expect("request")).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send_json(reqwest::Method::GET, path, None, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.send_json(reqwest::Method::POST, path, Some(&body), None)
            .await
    }

    /// POST without a body (payment, cancel).
    pub async fn post_empty(&self, path: &str) -> Answer {
        self.send_json(reqwest::Method::POST, path, None, None)
            .await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Answer {
        self.send_json(reqwest::Method::PATCH, path, Some(&body), None)
            .await
    }

    pub async fn put(&self, path: &str, body: Value) -> Answer {
        self.send_json(reqwest::Method::PUT, path, Some(&body), None)
            .await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.send_json(reqwest::Method::DELETE, path, None, None)
            .await
    }

    /// POST with an `Idempotency-Key`.
    pub async fn post_with_key(&self, path: &str, body: Value, key: &str) -> Answer {
        self.send_json(reqwest::Method::POST, path, Some(&body), Some(key))
            .await
    }

    /// POST of raw bytes with the given content type.
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<Vec<u8>>,
    ) -> Answer {
        let req = self
            .request(reqwest::Method::POST, path, Some(body.into()))
            .await;
        answer(
            req.header("content-type", content_type)
                .send()
                .await
                .expect("POST"),
        )
        .await
    }

    // ---- fixtures through the API ----

    pub async fn create_user(&self, name: &str) -> i64 {
        let (s, b) = self.post("/api/v1/users", json!({ "name": name })).await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        b["id"].as_i64().unwrap()
    }

    pub async fn charge(&self, user: i64, amount: i64) -> Answer {
        self.post(
            &format!("/api/v1/users/{user}/balance/charge"),
            json!({ "amount": amount }),
        )
        .await
    }

    /// A user with `balance` won (charged in steps within the per-charge limit).
    pub async fn user_with_balance(&self, name: &str, balance: i64) -> i64 {
        let user = self.create_user(name).await;
        let mut left = balance;
        while left > 0 {
            let step = left.min(1_000_000);
            let (s, b) = self.charge(user, step).await;
            assert_eq!(s, StatusCode::OK, "{b}");
            left -= step;
        }
        user
    }

    pub async fn balance(&self, user: i64) -> i64 {
        let (s, b) = self.get(&format!("/api/v1/users/{user}/balance")).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        b["balance"].as_i64().unwrap()
    }

    pub async fn order_status(&self, order: i64) -> String {
        let (s, b) = self.get(&format!("/api/v1/orders/{order}")).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        b["status"].as_str().unwrap().to_string()
    }

    pub async fn create_product(&self, name: &str, price: i64, stock: i64) -> i64 {
        let (s, b) = self
            .post(
                "/api/v1/admin/products",
                json!({ "name": name, "price": price, "stock": stock }),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        b["id"].as_i64().unwrap()
    }

    pub async fn stock(&self, product: i64) -> i64 {
        let (s, b) = self.get(&format!("/api/v1/products/{product}")).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        b["stock"].as_i64().unwrap()
    }

    /// A coupon from `body` (defaults: FIXED 1,000 won, 100 of them).
    pub async fn create_coupon(&self, body: Value) -> i64 {
        let mut full = json!({
            "name": "test coupon", "discountType": "FIXED", "discountValue": 1000, "totalQuantity": 100
        });
        for (k, v) in body.as_object().unwrap() {
            full[k] = v.clone();
        }
        let (s, b) = self.post("/api/v1/admin/coupons", full).await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        b["id"].as_i64().unwrap()
    }

    pub async fn issue(&self, coupon: i64, user: i64) -> Answer {
        self.post(
            &format!("/api/v1/coupons/{coupon}/issue"),
            json!({ "userId": user }),
        )
        .await
    }

    /// Issues and returns the user coupon id.
    pub async fn issued(&self, coupon: i64, user: i64) -> i64 {
        let (s, b) = self.issue(coupon, user).await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        b["id"].as_i64().unwrap()
    }

    /// Places an order of `items` ((productId, quantity)).
    pub async fn order(
        &self,
        user: i64,
        items: &[(i64, i64)],
        coupon: Option<i64>,
        pay: bool,
    ) -> Answer {
        let items: Vec<Value> = items
            .iter()
            .map(|(p, q)| json!({ "productId": p, "quantity": q }))
            .collect();
        let mut body = json!({ "userId": user, "items": items, "pay": pay });
        if let Some(c) = coupon {
            body["userCouponId"] = json!(c);
        }
        self.post("/api/v1/orders", body).await
    }

    pub async fn pay(&self, order: i64) -> Answer {
        self.post_empty(&format!("/api/v1/orders/{order}/payment"))
            .await
    }

    pub async fn cancel(&self, order: i64) -> Answer {
        self.post_empty(&format!("/api/v1/orders/{order}/cancel"))
            .await
    }

    /// Flushes this test's Redis keys (as a Redis restart or FLUSHALL would).
    pub async fn flush_redis(&self) {
        delete_redis_keys(&self.state.config.redis_prefix).await;
    }

    /// Runs the expiry worker's pass now, at the manual clock's time.
    pub async fn expire_now(&self) -> usize {
        self.state.expire_due().await.expect("expiry pass")
    }

    // ---- reading the database ----

    pub async fn scalar(&self, sql: &str) -> i64 {
        let (n,): (i64,) = sqlx::query_as(sql)
            .fetch_one(self.state.db.read())
            .await
            .expect(sql);
        n
    }

    /// How many ledger entries of `kind` (PAYMENT, REFUND) an order has.
    pub async fn ledger_entries(&self, order: i64, kind: &str) -> i64 {
        self.scalar(&format!(
            "select count(*) from balance_ledger where order_id = {order} and kind = '{kind}'"
        ))
        .await
    }

    /// Waits (up to 10 s) until `sql` returns `want`.
    pub async fn wait_for(&self, sql: &str, want: i64) {
        for _ in 0..500 {
            if self.scalar(sql).await == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "`{sql}` never became {want} (is {})",
            self.scalar(sql).await
        );
    }

    /// Asserts every invariant of the contract by reading the database.
    pub async fn check_invariants(&self) {
        for (what, n) in shop::invariants::violations(&self.state.db)
            .await
            .expect("invariant queries")
        {
            assert_eq!(n, 0, "invariant broken: {what}");
        }
    }
}

/// Asserts that each order's events (types, in delivery order) are one of the
/// sequences that can happen: paid; cancelled (while pending); paid then cancelled.
pub fn assert_each_order_in_order(per_order: std::collections::HashMap<i64, Vec<&str>>) {
    for (order, kinds) in per_order {
        assert!(
            kinds == ["order.paid"]
                || kinds == ["order.cancelled"]
                || kinds == ["order.paid", "order.cancelled"],
            "order {order}: {kinds:?}"
        );
    }
}

/// Runs `n` copies of `f(i)` at once and returns their results in order.
pub async fn race<F, Fut, T>(n: usize, f: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let fut = f(i);
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                fut.await
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}

/// A `shop` process of its own, killed when dropped.
pub struct Instance {
    pub child: Child,
    pub base: String,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the instances of `app` wrote on stderr (warnings and errors), for failure
/// messages.
pub fn instance_logs(app: &TestApp) -> String {
    let mut out = String::new();
    for entry in std::fs::read_dir(app.dir.path())
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("instance-") && name.ends_with(".log") {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let tail: String = text
                .chars()
                .rev()
                .take(4_000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            out.push_str(&format!("--- {name}:\n{tail}\n"));
        }
    }
    out
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the `shop` binary against the test's database (and Redis prefix), with
/// `extra` environment variables, and waits until it is ready.
pub async fn start_instance(app: &TestApp, extra: &[(&str, &str)]) -> Instance {
    let instance = launch_instance(app, extra);
    for _ in 0..200 {
        if let Ok(res) = app
            .client
            .get(format!("{}/health/ready", instance.base))
            .send()
            .await
            && res.status() == StatusCode::OK
        {
            return instance;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("instance at {} did not become ready", instance.base);
}

/// Starts the `shop` binary as [`start_instance`] does, without waiting for it (for
/// one that is meant to die early).
pub fn launch_instance(app: &TestApp, extra: &[(&str, &str)]) -> Instance {
    let port = free_port();
    let config = &app.state.config;
    let mut command = Command::new(env!("CARGO_BIN_EXE_shop"));
    if let Some(redis) = &config.redis_url {
        command.env("SHOP_REDIS_URL", redis);
    }
    let child = command
        .env("SHOP_LISTEN", format!("127.0.0.1:{port}"))
        .env("SHOP_DATABASE_URL", &config.database_url)
        .env("SHOP_REDIS_PREFIX", &config.redis_prefix)
        .env("SHOP_EVENTS_FILE", app.dir.path().join("shop.events.jsonl"))
        .env("SHOP_OUTBOX_INTERVAL_MS", "20")
        .env("SHOP_DEMO_DATA", "false")
        .env("SHOP_MAX_DAILY_CHARGE", config.max_daily_charge.to_string())
        .env("SHOP_ADMIN_TOKEN", &app.admin_token)
        .env("RUST_LOG", "warn")
        // several instances and parallel tests share one PostgreSQL (max_connections 100)
        .env("SHOP_DB_MAX_CONNECTIONS", "8")
        .envs(extra.iter().copied())
        .stdout(Stdio::null())
        .stderr(
            std::fs::File::create(app.dir.path().join(format!("instance-{port}.log")))
                .map_or_else(|_| Stdio::null(), Stdio::from),
        )
        .spawn()
        .expect("start shop");
    Instance {
        child,
        base: format!("http://127.0.0.1:{port}"),
    }
}

/// A nats-server with JetStream of the test's own, on a free loopback port, with its
/// store in a temporary directory (so it can be stopped and started again).
pub struct Nats {
    pub port: u16,
    pub url: String,
    store: tempfile::TempDir,
    child: Option<Child>,
}

impl Nats {
    pub async fn start() -> Nats {
        let port = free_port();
        let mut nats = Nats {
            port,
            url: format!("nats://127.0.0.1:{port}"),
            store: tempfile::tempdir().unwrap(),
            child: None,
        };
        nats.restart().await;
        nats
    }

    /// Starts the server (again, on the same port and store).
    pub async fn restart(&mut self) {
        let child = Command::new(
            std::env::var("SHOP_TEST_NATS_SERVER").unwrap_or_else(|_| "nats-server".into()),
        )
        .args([
            "-a",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-js",
            "-sd",
        ])
        .arg(self.store.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server must be installed (see README)");
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("nats-server did not start on port {}", self.port);
    }

    /// Kills the server (as a crash would).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// How many messages the events stream holds.
    pub async fn stream_messages(&self) -> u64 {
        let client = async_nats::connect(self.url.as_str()).await.unwrap();
        let jetstream = async_nats::jetstream::new(client);
        let mut stream = jetstream
            .get_stream(shop::outbox::sink::STREAM)
            .await
            .unwrap();
        stream.info().await.unwrap().state.messages
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
    }
}
