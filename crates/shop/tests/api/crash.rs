//! Crashes and outages in the middle of load.
//!
//! - A `shop` instance killed with SIGKILL during an order storm (SQLite and
//!   PostgreSQL): nothing it acknowledged is lost, the invariants hold, the next
//!   instance delivers every event, and a client that retries with its
//!   `Idempotency-Key` learns what became of the requests that got no answer.
//! - The Redis of a PostgreSQL deployment killed during a coupon rush and started
//!   again empty: never more coupons than there are, no request fails for it.
//!
//! A NATS outage under load is covered in `events.rs`
//! (`a_nats_outage_loses_nothing_and_fails_no_payment`, and
//! `a_crash_between_publish_and_mark_is_absorbed_by_the_dedupe_id` for a relay that
//! dies between publishing and marking).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use rstest::rstest;
use serde_json::{Value, json};

use crate::helpers::{
    Backend, TestApp, assert_each_order_in_order, free_port, spawn_app_with, start_instance,
};

/// A request as sent, so that it can be sent again.
#[derive(Debug, Clone)]
struct Req {
    method: Method,
    path: String,
    /// The caller (`None`: a public route, no token).
    user: Option<i64>,
    body: Option<Value>,
    key: Option<String>,
}

impl Req {
    fn post(user: i64, path: String, body: Option<Value>, key: Option<String>) -> Req {
        Req {
            method: Method::POST,
            path,
            user: Some(user),
            body,
            key,
        }
    }

    fn get(path: String) -> Req {
        Req {
            method: Method::GET,
            path,
            user: None,
            body: None,
            key: None,
        }
    }
}

/// What an instance answered.
#[derive(Debug, Clone)]
struct Reply {
    status: StatusCode,
    body: Value,
    /// Seconds, when the answer says when to come back.
    retry_after: Option<u64>,
    replayed: bool,
}

impl Reply {
    fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }

    /// `201 PAID`, `409 COUPON_SOLD_OUT`, `503 UNAVAILABLE (Retry-After)`.
    fn label(&self) -> String {
        let what = self.body["status"]
            .as_str()
            .or_else(|| self.body["code"].as_str())
            .unwrap_or("");
        let mut label = format!("{} {what}", self.status.as_u16());
        if self.retry_after.is_some() {
            label.push_str(" (Retry-After)");
        }
        label.trim().to_string()
    }
}

/// Sends `req` to the instance at `base`; `Err` when no answer came.
async fn send(app: &TestApp, base: &str, req: &Req) -> Result<Reply, reqwest::Error> {
    let mut r = app
        .client
        .request(req.method.clone(), format!("{base}{}", req.path));
    if let Some(user) = req.user {
        r = r.bearer_auth(app.user_token(user));
    }
    if let Some(key) = &req.key {
        r = r.header("Idempotency-Key", key);
    }
    if let Some(body) = &req.body {
        r = r.json(body);
    }
    let res = r.send().await?;
    let status = res.status();
    let retry_after = res
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .map(|v| v.to_str().ok().and_then(|v| v.parse().ok()).unwrap_or(1));
    let replayed = res.headers().contains_key("idempotent-replayed");
    let bytes = res.bytes().await?;
    Ok(Reply {
        status,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        retry_after,
        replayed,
    })
}

/// Sends `req` until the answer is not a 503 with `Retry-After` (a server shedding
/// load, or giving up on a collision: nothing was done, the same request may come
/// again), waiting as long as it says. Returns the answer and the 503s before it.
async fn send_until_served(
    app: &TestApp,
    base: &str,
    req: &Req,
) -> Result<(Reply, usize), reqwest::Error> {
    let mut shed = 0;
    loop {
        let reply = send(app, base, req).await?;
        if reply.status == StatusCode::SERVICE_UNAVAILABLE
            && let Some(secs) = reply.retry_after
            && shed < 30
        {
            shed += 1;
            tokio::time::sleep(Duration::from_secs(secs.min(5))).await;
            continue;
        }
        return Ok((reply, shed));
    }
}

// ---- an instance killed in the middle of an order storm ----

/// What a storm request does.
#[derive(Debug, Clone, Copy)]
enum Op {
    Create,
    Pay(i64),
    Cancel(i64),
}

/// What the clients of the storm were told.
#[derive(Default)]
struct Told {
    /// Orders acknowledged PAID (201 PAID, or 200 from payment).
    paid: HashSet<i64>,
    /// Orders acknowledged CANCELLED.
    cancelled: HashSet<i64>,
    /// Requests that got no answer.
    unanswered: Vec<(Req, Op)>,
    /// Answers that the contract does not allow here.
    unexpected: Vec<String>,
    /// How many answers of each kind.
    labels: BTreeMap<String, usize>,
    /// 503s with `Retry-After` (each followed by the same request again).
    shed: usize,
}

impl Told {
    /// Records `reply` to `op`; returns the order it created PENDING, if any.
    fn record(&mut self, op: Op, reply: &Reply) -> Option<i64> {
        *self.labels.entry(reply.label()).or_default() += 1;
        let id = reply.body["id"].as_i64();
        let status = reply.body["status"].as_str().unwrap_or("");
        match (op, reply.status.as_u16(), status) {
            (Op::Create, 201, "PAID") | (Op::Pay(_), 200, "PAID") => {
                self.paid.insert(id.expect("an order id"));
            }
            (Op::Create, 201, "PENDING") => return id,
            (Op::Cancel(_), 200, "CANCELLED") => {
                self.cancelled.insert(id.expect("an order id"));
            }
            (Op::Create, 409, _)
                if [
                    "INSUFFICIENT_STOCK",
                    "INSUFFICIENT_BALANCE",
                    "COUPON_NOT_USABLE",
                ]
                .contains(&reply.code()) => {}
            (Op::Pay(_), 409, _) if reply.code() == "INSUFFICIENT_BALANCE" => {}
            _ => self
                .unexpected
                .push(format!("{op:?}: {} {}", reply.status, reply.body)),
        }
        None
    }
}

/// One client of the storm: orders of one or two products, paid at once (most) or
/// left PENDING and then paid, cancelled or left alone, each request with an
/// `Idempotency-Key`, until the instance stops answering (or `stop`).
async fn storm_client(
    app: Arc<TestApp>,
    base: String,
    client: usize,
    fixtures: Arc<Fixtures>,
    told: Arc<Mutex<Told>>,
    answers: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) {
    let mut rng = fastrand::Rng::with_seed(client as u64);
    // Sends one request; `None` once the instance is gone.
    let attempt = |req: Req, op: Op| {
        let (app, base, told, answers) = (&app, &base, &told, &answers);
        async move {
            match send_until_served(app, base, &req).await {
                Ok((reply, shed)) => {
                    answers.fetch_add(1, Ordering::SeqCst);
                    let mut told = told.lock().unwrap();
                    told.shed += shed;
                    Some(told.record(op, &reply))
                }
                Err(_) => {
                    told.lock().unwrap().unanswered.push((req, op));
                    None
                }
            }
        }
    };
    for n in 0.. {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let user = fixtures.users[rng.usize(..fixtures.users.len())];
        let mut items = vec![];
        for _ in 0..rng.usize(1..=2) {
            let product = fixtures.products[rng.usize(..fixtures.products.len())];
            items.push(json!({"productId": product, "quantity": rng.i64(1..=3)}));
        }
        let pay = rng.u8(..10) < 6;
        let mut body = json!({"userId": user, "items": items, "pay": pay});
        if let Some(coupon) = fixtures.coupons.get(&user).filter(|_| rng.bool()) {
            body["userCouponId"] = json!(coupon);
        }
        let key = |what: &str| Some(format!("crash-{client}-{n}-{what}"));
        let create = Req::post(user, "/api/v1/orders".into(), Some(body), key("create"));
        let Some(created) = attempt(create, Op::Create).await else {
            return;
        };
        let Some(order) = created else { continue };
        let (path, op) = match rng.u8(..10) {
            0..=4 => (format!("/api/v1/orders/{order}/payment"), Op::Pay(order)),
            5..=8 => (format!("/api/v1/orders/{order}/cancel"), Op::Cancel(order)),
            _ => continue, // left PENDING
        };
        if attempt(Req::post(user, path, None, key("then")), op)
            .await
            .is_none()
        {
            return;
        }
    }
}

struct Fixtures {
    users: Vec<i64>,
    products: Vec<i64>,
    /// A user coupon of some users.
    coupons: HashMap<i64, i64>,
}

impl Fixtures {
    /// 40 users with 100,000 won each, four products with enough stock for a few
    /// hundred orders (not unlimited), and a user coupon for half of the users.
    async fn make(app: &TestApp) -> Fixtures {
        let mut users = Vec::new();
        for i in 0..40 {
            users.push(app.user_with_balance(&format!("u{i}"), 100_000).await);
        }
        let mut products = Vec::new();
        for (i, (price, stock)) in [(1_000, 400), (2_500, 400), (4_000, 300), (7_000, 200)]
            .into_iter()
            .enumerate()
        {
            products.push(app.create_product(&format!("p{i}"), price, stock).await);
        }
        let coupon = app.create_coupon(json!({"totalQuantity": 20})).await;
        let mut coupons = HashMap::new();
        for &user in &users[..20] {
            coupons.insert(user, app.issued(coupon, user).await);
        }
        Fixtures {
            users,
            products,
            coupons,
        }
    }
}

/// The storm's clients, running against one instance.
struct Storm {
    clients: Vec<tokio::task::JoinHandle<()>>,
    told: Arc<Mutex<Told>>,
    answers: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Storm {
    fn start(app: &Arc<TestApp>, base: &str, fixtures: &Arc<Fixtures>) -> Storm {
        let told = Arc::new(Mutex::new(Told::default()));
        let answers = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let clients = (0..CLIENTS)
            .map(|client| {
                tokio::spawn(storm_client(
                    app.clone(),
                    base.to_string(),
                    client,
                    fixtures.clone(),
                    told.clone(),
                    answers.clone(),
                    stop.clone(),
                ))
            })
            .collect();
        Storm {
            clients,
            told,
            answers,
            stop,
        }
    }

    /// Waits until the instance has answered `n` storm requests.
    async fn wait_for_answers(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(300);
        while self.answers.load(Ordering::SeqCst) < n {
            assert!(
                Instant::now() < deadline && !self.clients.iter().any(|c| c.is_finished()),
                "the storm stalled before {n} answers ({} so far)",
                self.answers.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Waits for every client to end (after `stop`, or once the instance is gone).
    async fn join(&mut self) {
        for client in self.clients.drain(..) {
            client.await.unwrap();
        }
    }
}

async fn ids(app: &TestApp, sql: &str) -> HashSet<i64> {
    let rows: Vec<(i64,)> = sqlx::query_as(sql)
        .fetch_all(app.state.db.read())
        .await
        .expect(sql);
    rows.into_iter().map(|(id,)| id).collect()
}

/// Concurrent clients of the storm.
const CLIENTS: usize = 24;
/// The instance is killed once it has answered this many storm requests.
const KILL_AFTER: usize = 250;

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_instance_killed_in_an_order_storm_loses_no_acknowledged_payment(
    #[case] backend: Backend,
) {
    let started = Instant::now();
    // This process only makes the fixtures and reads the database: its relay and
    // expiry worker stay idle, so the instances do all the writing and relaying.
    let app = Arc::new(
        spawn_app_with(backend, |c| {
            c.outbox_interval_ms = 3_600_000;
            c.expiry_interval_ms = 3_600_000;
        })
        .await,
    );
    let fixtures = Arc::new(Fixtures::make(&app).await);
    let fixtures_done = started.elapsed();

    let mut first = start_instance(&app, &[]).await;
    let mut storm = Storm::start(&app, &first.base, &fixtures);
    storm.wait_for_answers(KILL_AFTER).await;
    first.child.kill().expect("SIGKILL"); // SIGKILL on Unix
    first.child.wait().unwrap();
    let killed_at = storm.answers.load(Ordering::SeqCst);
    let storm_done = started.elapsed();
    let told = storm.told.clone();
    let paid_at_kill = told.lock().unwrap().paid.len();
    storm.join().await;
    drop(first);

    // A new instance on the same database; each request that got no answer is sent
    // again with its key: a replay tells what became of it, a claim still in
    // progress means its work was never done (and is not done now: the claim is
    // taken over only after its lease).
    let second = start_instance(&app, &[]).await;
    let restarted = started.elapsed();
    let paid_in_db = ids(&app, "select id from orders where status = 'PAID'").await;
    let lost: Vec<_> = told
        .lock()
        .unwrap()
        .paid
        .difference(&paid_in_db)
        .copied()
        .collect();
    assert!(
        lost.is_empty(),
        "acknowledged PAID, not PAID after the crash: {lost:?}"
    );
    let unanswered = std::mem::take(&mut told.lock().unwrap().unanswered);
    let (mut replayed, mut fresh, mut in_progress) = (0, 0, 0);
    for (req, op) in &unanswered {
        let (reply, shed) = send_until_served(&app, &second.base, req)
            .await
            .expect("the new instance answers");
        told.lock().unwrap().shed += shed;
        if reply.status == StatusCode::CONFLICT && reply.code() == "IDEMPOTENCY_KEY_IN_PROGRESS" {
            in_progress += 1;
            if let Op::Pay(order) | Op::Cancel(order) = *op {
                let (_, got) = app.get(&format!("/api/v1/orders/{order}")).await;
                assert_eq!(
                    got["status"], "PENDING",
                    "{op:?} never finished, yet the order changed: {got}"
                );
            }
            continue;
        }
        if reply.replayed {
            replayed += 1;
        } else {
            fresh += 1;
        }
        told.lock().unwrap().record(*op, &reply);
    }
    let told = std::mem::take(&mut *told.lock().unwrap());
    assert!(
        told.unexpected.is_empty(),
        "answers the contract does not allow: {:#?}",
        told.unexpected
    );

    // Everything acknowledged stands, and nothing was done that no answer told of.
    for &order in &told.paid {
        let owner = app
            .scalar(&format!("select user_id from orders where id = {order}"))
            .await;
        let req = Req {
            user: Some(owner),
            ..Req::get(format!("/api/v1/orders/{order}"))
        };
        let got = send(&app, &second.base, &req).await.unwrap();
        assert_eq!(got.status, StatusCode::OK, "{}", got.body);
        assert_eq!(
            got.body["status"], "PAID",
            "acknowledged PAID, now {}",
            got.body
        );
    }
    let paid_in_db = ids(&app, "select id from orders where status = 'PAID'").await;
    assert_eq!(
        paid_in_db, told.paid,
        "the PAID orders are exactly those acknowledged PAID"
    );
    let cancelled_in_db = ids(&app, "select id from orders where status = 'CANCELLED'").await;
    assert_eq!(cancelled_in_db, told.cancelled);
    app.check_invariants().await;

    // The new instance delivers what the killed one had not.
    let undelivered = "select count(*) from outbox_events where delivered_at is null";
    for _ in 0..1_200 {
        if app.scalar(undelivered).await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.scalar(undelivered).await, 0, "events left undelivered");
    let drained = started.elapsed();
    let delivered = check_events_file(&app).await;
    app.check_invariants().await;

    println!(
        "{backend:?}: {} users, killed after {killed_at} answers ({paid_at_kill} acknowledged PAID); \
         {} requests unanswered, on retry {replayed} replayed, {fresh} done anew, \
         {in_progress} still claimed; {} PAID, {} CANCELLED in the end; events: {delivered}; \
         answers: {:?} ({} 503s sent again); fixtures {fixtures_done:?}, killed at \
         {storm_done:?}, restarted {restarted:?}, drained {drained:?}, done {:?}",
        fixtures.users.len(),
        unanswered.len(),
        told.paid.len(),
        told.cancelled.len(),
        told.labels,
        told.shed,
        started.elapsed()
    );
    drop(second);
}

/// The storm above on PostgreSQL with eight group-commit writers. This found a fault:
/// each batch is one transaction that takes the row locks of its jobs in the order of
/// its jobs, so batches side by side that share hot rows deadlocked; PostgreSQL
/// notices only after `deadlock_timeout` (1 s), the storm crawled, and a statement
/// cancelled by the statement timeout answered 500. Batches now take turns on an
/// advisory lock, and a statement timeout answers 503 with Retry-After.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_storm_on_postgres_with_several_batch_writers_answers_no_500() {
    let app = Arc::new(
        spawn_app_with(Backend::Postgres, |c| {
            c.outbox_interval_ms = 3_600_000;
            c.expiry_interval_ms = 3_600_000;
        })
        .await,
    );
    let fixtures = Arc::new(Fixtures::make(&app).await);
    let instance = start_instance(
        &app,
        &[
            ("SHOP_DB_MAX_CONNECTIONS", "16"),
            ("SHOP_BATCH_WRITERS", "8"),
        ],
    )
    .await;
    let started = Instant::now();
    let mut storm = Storm::start(&app, &instance.base, &fixtures);
    storm.wait_for_answers(KILL_AFTER).await;
    storm.stop.store(true, Ordering::SeqCst);
    storm.join().await;
    app.check_invariants().await;
    let told = std::mem::take(&mut *storm.told.lock().unwrap());
    println!(
        "{} answers in {:?}: {:?}, {} 503s sent again",
        storm.answers.load(Ordering::SeqCst),
        started.elapsed(),
        told.labels,
        told.shed
    );
    assert!(told.unanswered.is_empty());
    assert!(
        told.unexpected.is_empty(),
        "answers the contract does not allow: {:#?}",
        told.unexpected
    );
}

/// Reads the events file: every line a whole event; every outbox event in it, and
/// nothing else; a line repeated only as the same document under the same id (a
/// relay killed between writing and marking sends again; receivers drop it by id);
/// one `order.paid` per PAID order, and each order's events in the order they
/// happened. Returns a summary.
async fn check_events_file(app: &TestApp) -> String {
    let text = std::fs::read_to_string(app.dir.path().join("shop.events.jsonl")).unwrap();
    let mut seen: HashMap<String, &str> = HashMap::new();
    let mut per_order: HashMap<i64, Vec<String>> = HashMap::new();
    let mut paid_events: HashMap<i64, usize> = HashMap::new();
    let mut lines = 0;
    for line in text.lines() {
        lines += 1;
        let event: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a whole event ({e}): {line:?}"));
        let id = event["id"].as_str().expect("an event id").to_string();
        if let Some(first) = seen.get(&id) {
            assert_eq!(*first, line, "event {id} sent again with another content");
            continue;
        }
        seen.insert(id, line);
        let kind = event["type"].as_str().unwrap().to_string();
        let order = event["data"]["id"].as_i64().unwrap();
        if kind == "order.paid" {
            assert_eq!(event["data"]["status"], "PAID", "{line}");
            *paid_events.entry(order).or_default() += 1;
        }
        per_order.entry(order).or_default().push(kind);
    }
    let outbox: Vec<(String,)> = sqlx::query_as("select id from outbox_events")
        .fetch_all(app.state.db.read())
        .await
        .unwrap();
    let outbox: HashSet<String> = outbox.into_iter().map(|(id,)| id).collect();
    let delivered: HashSet<String> = seen.keys().cloned().collect();
    assert_eq!(
        delivered, outbox,
        "the file holds exactly the outbox's events"
    );
    let paid = ids(app, "select id from orders where status = 'PAID'").await;
    for order in &paid {
        assert_eq!(
            paid_events.get(order),
            Some(&1),
            "order {order}: order.paid events"
        );
    }
    assert_eq!(
        paid_events.len(),
        paid.len(),
        "order.paid only for PAID orders"
    );
    assert_each_order_in_order(
        per_order
            .iter()
            .map(|(order, kinds)| (*order, kinds.iter().map(String::as_str).collect()))
            .collect(),
    );
    format!(
        "{} distinct ({} order.paid) in {lines} lines, {} re-sent",
        seen.len(),
        paid_events.len(),
        lines - seen.len()
    )
}

// ---- Redis killed in the middle of a coupon rush ----

/// A redis-server of the test's own on a free loopback port, without persistence
/// (a restart comes back empty), killed when dropped.
struct RedisServer {
    port: u16,
    url: String,
    child: Option<Child>,
}

impl RedisServer {
    async fn start() -> RedisServer {
        let port = free_port();
        let mut redis = RedisServer {
            port,
            url: format!("redis://127.0.0.1:{port}"),
            child: None,
        };
        redis.restart().await;
        redis
    }

    /// Starts the server (again, on the same port, empty).
    async fn restart(&mut self) {
        let child = Command::new(
            std::env::var("SHOP_TEST_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into()),
        )
        .args(["--port", &self.port.to_string()])
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server must be installed (see README)");
        self.child = Some(child);
        for _ in 0..400 {
            if let Ok(client) = redis::Client::open(self.url.as_str())
                && let Ok(mut conn) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    /// Kills the server (SIGKILL, as a crash would).
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

#[derive(Debug, Clone, Copy)]
enum Job {
    /// Coupon (index into the coupons), user.
    Issue(usize, i64),
    Order(i64),
    Product,
    Popular,
}

const UP: u8 = 0;
const DOWN: u8 = 1;
const BACK: u8 = 2;
const PHASES: [&str; 3] = ["up", "down", "back (empty)"];

/// `/health/ready`'s word on Redis at `base`.
async fn redis_check(app: &TestApp, base: &str) -> String {
    let res = app
        .client
        .get(format!("{base}/health/ready"))
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the instance at {base} answers: {e}\n{}",
                crate::helpers::instance_logs(app)
            )
        });
    let body: Value = res.json().await.unwrap_or(Value::Null);
    body["checks"]["redis"].as_str().unwrap_or("").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_in_a_coupon_rush_issues_no_more_than_there_are() {
    let started = Instant::now();
    let mut redis = RedisServer::start().await;
    let url = redis.url.clone();
    // Two instances on one Redis. The coupon rush and the orders go to one of them;
    // reads go to both.
    let app = Arc::new(
        spawn_app_with(Backend::Postgres, |c| {
            c.redis_url = Some(url);
        })
        .await,
    );
    let instance = start_instance(&app, &[]).await; // on the same Redis
    let bases = Arc::new([app.base.clone(), instance.base.clone()]);

    // Three coupons for 150 users, each asked for twice by every user at random
    // moments: the first sells out before the outage, the second during it, the
    // third after Redis came back empty.
    let totals = [40, 110, 140];
    let mut coupons = Vec::new();
    for total in totals {
        coupons.push(
            app.create_coupon(json!({"totalQuantity": total, "discountValue": 100}))
                .await,
        );
    }
    let product = app.create_product("p", 1_000, 10_000).await;
    let mut users = Vec::new();
    for i in 0..150 {
        users.push(app.user_with_balance(&format!("u{i}"), 5_000).await);
    }
    let mut jobs = Vec::new();
    for &user in &users {
        for c in 0..coupons.len() {
            jobs.extend([Job::Issue(c, user), Job::Issue(c, user)]);
        }
        jobs.extend([Job::Order(user), Job::Product]);
    }
    jobs.extend([Job::Popular; 30]);
    fastrand::Rng::with_seed(7).shuffle(&mut jobs);
    let jobs = Arc::new(jobs);
    let coupons = Arc::new(coupons);

    let next = Arc::new(AtomicUsize::new(0));
    let phase = Arc::new(AtomicU8::new(UP));
    type Outcome = (u8, Job, Result<Reply, String>);
    let workers: Vec<_> = (0..32)
        .map(|_| {
            let (app, bases, jobs, coupons, next, phase) = (
                app.clone(),
                bases.clone(),
                jobs.clone(),
                coupons.clone(),
                next.clone(),
                phase.clone(),
            );
            tokio::spawn(async move {
                let mut out: Vec<Outcome> = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(&job) = jobs.get(i) else {
                        return out;
                    };
                    let req = match job {
                        Job::Issue(c, user) => Req::post(
                            user,
                            format!("/api/v1/coupons/{}/issue", coupons[c]),
                            Some(json!({"userId": user})),
                            None,
                        ),
                        Job::Order(user) => Req::post(
                            user,
                            "/api/v1/orders".into(),
                            Some(json!({"userId": user, "pay": true,
                                "items": [{"productId": product, "quantity": 1}]})),
                            None,
                        ),
                        Job::Product => Req::get(format!("/api/v1/products/{product}")),
                        Job::Popular => Req::get("/api/v1/products/popular".into()),
                    };
                    let sent_in = phase.load(Ordering::SeqCst);
                    // Writes go to this process's instance, reads to both (see above).
                    let base = match job {
                        Job::Product | Job::Popular => &bases[i % 2],
                        _ => &bases[0],
                    };
                    let reply = send(&app, base, &req).await.map_err(|e| e.to_string());
                    out.push((sent_in, job, reply));
                }
            })
        })
        .collect();

    // Kill Redis at 30 % of the jobs; start it again (empty) at 60 %, once both
    // instances have noticed (readiness says "down").
    let deadline = Instant::now() + Duration::from_secs(120);
    let total_jobs = jobs.len();
    let wait_for_jobs = |share: usize| {
        let next = next.clone();
        async move {
            while next.load(Ordering::SeqCst) < total_jobs * share / 100 {
                assert!(Instant::now() < deadline, "the load stalled");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    };
    wait_for_jobs(30).await;
    redis.kill();
    phase.store(DOWN, Ordering::SeqCst);
    let killed_at = (next.load(Ordering::SeqCst), started.elapsed());
    for base in bases.iter() {
        while redis_check(&app, base).await != "down" {
            assert!(
                Instant::now() < deadline,
                "readiness never said Redis is down"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    wait_for_jobs(60).await;
    let restarted_at = (next.load(Ordering::SeqCst), started.elapsed());
    redis.restart().await;
    phase.store(BACK, Ordering::SeqCst);

    let mut outcomes: Vec<Outcome> = Vec::new();
    for w in workers {
        outcomes.extend(w.await.unwrap());
    }
    assert_eq!(outcomes.len(), jobs.len());
    let load_done = started.elapsed();

    // What each phase saw; what the contract allows.
    let mut seen: BTreeMap<(u8, String), usize> = BTreeMap::new();
    let mut wrong = Vec::new();
    let mut issued: HashMap<(usize, i64), usize> = HashMap::new();
    let mut orders_paid = 0;
    for (sent_in, job, reply) in &outcomes {
        let reply = match reply {
            Ok(r) => r,
            Err(e) => {
                wrong.push(format!(
                    "{job:?} in {}: no answer: {e}",
                    PHASES[*sent_in as usize]
                ));
                continue;
            }
        };
        let kind = match job {
            Job::Issue(..) => "issue",
            Job::Order(_) => "order",
            Job::Product | Job::Popular => "read",
        };
        *seen
            .entry((*sent_in, format!("{kind} {}", reply.label())))
            .or_default() += 1;
        let ok = match (job, reply.status.as_u16()) {
            // a server at its limits may shed load, saying when to come back
            (_, 503) => reply.retry_after.is_some(),
            (Job::Issue(c, user), 201) => {
                *issued.entry((*c, *user)).or_default() += 1;
                true
            }
            (Job::Issue(..), 409) => {
                ["COUPON_SOLD_OUT", "COUPON_ALREADY_ISSUED"].contains(&reply.code())
            }
            (Job::Order(_), 201) => {
                orders_paid += 1;
                reply.body["status"] == "PAID"
            }
            (Job::Product | Job::Popular, 200) => true,
            _ => false,
        };
        if !ok {
            wrong.push(format!(
                "{job:?} in {}: {} {}",
                PHASES[*sent_in as usize], reply.status, reply.body
            ));
        }
    }
    for ((c, user), n) in &issued {
        assert_eq!(*n, 1, "coupon {c} issued {n} times to user {user}");
    }
    for (c, (&coupon, &total)) in coupons.iter().zip(&totals).enumerate() {
        let answered = issued.keys().filter(|(k, _)| *k == c).count() as i64;
        let rows = app
            .scalar(&format!(
                "select count(*) from user_coupons where coupon_id = {coupon}"
            ))
            .await;
        let counter = app
            .scalar(&format!(
                "select issued_quantity from coupons where id = {coupon}"
            ))
            .await;
        assert_eq!(
            (answered, rows, counter),
            (total, total, total),
            "coupon {c}: 201 answers, rows, counter (150 users asked for {total})"
        );
    }
    assert_eq!(
        app.scalar("select count(*) from (select user_id, coupon_id from user_coupons group by user_id, coupon_id having count(*) > 1) x")
            .await,
        0,
        "a user holds a coupon twice"
    );
    assert_eq!(
        app.scalar("select count(*) from orders where status = 'PAID'")
            .await,
        orders_paid,
        "every PAID order was answered 201, and every 201 is PAID"
    );
    app.check_invariants().await;

    // Both instances use Redis again; late comers are refused by what the instances
    // learned, or by the database.
    for base in bases.iter() {
        while redis_check(&app, base).await != "ok" {
            assert!(
                Instant::now() < deadline,
                "the instances never got Redis back"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let late = app.create_user("late").await;
    for base in bases.iter() {
        let req = Req::post(
            late,
            format!("/api/v1/coupons/{}/issue", coupons[0]),
            Some(json!({"userId": late})),
            None,
        );
        let reply = send(&app, base, &req).await.unwrap();
        assert_eq!(
            (reply.status, reply.code()),
            (StatusCode::CONFLICT, "COUPON_SOLD_OUT")
        );
    }
    // Cached product copies follow the database again (a copy may be up to its time
    // to live stale).
    let stock = app
        .scalar(&format!(
            "select cast(sum(stock) as bigint) from variants where product_id = {product}"
        ))
        .await;
    for base in bases.iter() {
        let req = Req::get(format!("/api/v1/products/{product}"));
        while send(&app, base, &req).await.unwrap().body["stock"] != stock {
            assert!(Instant::now() < deadline, "a cached copy never caught up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut by_phase: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for ((p, label), n) in &seen {
        by_phase
            .entry(PHASES[*p as usize])
            .or_default()
            .push(format!("{label}: {n}"));
    }
    println!(
        "{} jobs; Redis killed at (job, time) {killed_at:?}, back at {restarted_at:?}, load \
         done at {load_done:?}; issued {:?} of {totals:?}; {orders_paid} orders paid; answers \
         by phase: {by_phase:?}; {:?}",
        jobs.len(),
        (0..3)
            .map(|c| issued.keys().filter(|(k, _)| *k == c).count())
            .collect::<Vec<_>>(),
        started.elapsed()
    );
    // Last, so that a failure shows the counts above: no answer but those allowed.
    assert!(wrong.is_empty(), "answers not allowed: {wrong:#?}");
    drop(instance);
}
