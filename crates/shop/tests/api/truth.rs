//! An answer tells the truth: a write handed over for commit is answered with its
//! outcome, even past the request timeout (never a 503 that invites a second payment);
//! past the write deadline the answer says the outcome is unknown and the key tells
//! it later; clients that go away mid-write break nothing for the next ones.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use rstest::rstest;
use serde_json::json;

use crate::helpers::{Backend, TestApp, spawn_app, spawn_app_with};

/// Holds the database for `user`'s writes for `hold`: SQLite's one write connection,
/// or the user's row on PostgreSQL (locked by another connection).
async fn hold_writes(app: &TestApp, user: i64, hold: Duration) -> tokio::task::JoinHandle<()> {
    let db = app.state.db.clone();
    if db.is_postgres() {
        let mut conn = db.dedicated_connection().await.unwrap();
        sqlx::query("begin").execute(&mut conn).await.unwrap();
        sqlx::query("select id from users where id = $1 for update")
            .bind(user)
            .execute(&mut conn)
            .await
            .unwrap();
        // The transaction lives in the task (with its connection) until released.
        tokio::spawn(async move {
            tokio::time::sleep(hold).await;
            sqlx::query("commit").execute(&mut conn).await.unwrap();
        })
    } else {
        let tx = db.begin().await.unwrap();
        tokio::spawn(async move {
            tokio::time::sleep(hold).await;
            drop(tx);
        })
    }
}

async fn ledger_count(app: &TestApp, user: i64) -> i64 {
    app.scalar(&format!(
        "select count(*) from balance_ledger where user_id = {user}"
    ))
    .await
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_held_past_the_request_timeout_answers_its_true_outcome(#[case] backend: Backend) {
    let app = spawn_app_with(backend, |c| c.request_timeout_secs = 1).await;
    let user = app.user_with_balance("kim", 10_000).await;
    let product = app.create_product("pen", 1_000, 10).await;
    let app = Arc::new(app);
    let held = hold_writes(&app, user, Duration::from_secs(3)).await;
    let (a, b) = (app.clone(), app.clone());
    let charge = tokio::spawn(async move { a.charge(user, 1_000).await });
    let order = tokio::spawn(async move { b.order(user, &[(product, 1)], None, true).await });
    let (charged, ordered) = (charge.await.unwrap(), order.await.unwrap());
    held.await.unwrap();
    // The true outcomes, not a 503 after which a retry would pay twice.
    assert_eq!(charged.0, StatusCode::OK, "{}", charged.1);
    assert_eq!(ordered.0, StatusCode::CREATED, "{}", ordered.1);
    assert_eq!(ordered.1["status"], "PAID");
    assert_eq!(app.balance(user).await, 10_000);
    assert_eq!(ledger_count(&app, user).await, 3);
    assert_eq!(app.stock(product).await, 9);
    app.check_invariants().await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn past_the_write_deadline_the_answer_is_outcome_unknown_and_the_key_tells(
    #[case] backend: Backend,
) {
    let app = spawn_app_with(backend, |c| {
        c.request_timeout_secs = 1;
        c.write_timeout_secs = 2;
    })
    .await;
    let user = app.create_user("kim").await;
    let app = Arc::new(app);
    let path = format!("/api/v1/users/{user}/balance/charge");
    let send = |app: Arc<TestApp>, path: String| async move {
        let req = app
            .request(
                reqwest::Method::POST,
                &path,
                Some(br#"{"amount": 1000}"#.to_vec()),
            )
            .await
            .header("content-type", "application/json")
            .header("Idempotency-Key", "slow-charge");
        req.send().await.unwrap()
    };
    let held = hold_writes(&app, user, Duration::from_secs(4)).await;
    let first = tokio::spawn(send(app.clone(), path.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    // While the first is in flight, a repeat is told so.
    let repeat = send(app.clone(), path.clone()).await;
    assert_eq!(repeat.status(), StatusCode::CONFLICT);
    let first = first.await.unwrap();
    assert_eq!(first.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(
        first.headers().get("retry-after").is_none(),
        "an unknown outcome does not invite a blind retry"
    );
    let body: serde_json::Value = first.json().await.unwrap();
    assert_eq!(body["code"], "OUTCOME_UNKNOWN", "{body}");
    held.await.unwrap();
    // The write went on; the key tells its outcome, and applies nothing twice.
    let mut told = None;
    for _ in 0..100 {
        let res = send(app.clone(), path.clone()).await;
        if res.status() == StatusCode::OK {
            told = Some(res);
            break;
        }
        assert_eq!(res.status(), StatusCode::CONFLICT, "still in flight");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let told = told.expect("the key tells the outcome");
    assert_eq!(told.headers()["idempotent-replayed"], "true");
    let body: serde_json::Value = told.json().await.unwrap();
    assert_eq!(body, json!({"userId": user, "balance": 1000}));
    assert_eq!(app.balance(user).await, 1_000);
    assert_eq!(ledger_count(&app, user).await, 1);
}

/// One request of the storm's mix, by number.
async fn mixed_write(
    app: &TestApp,
    client: &reqwest::Client,
    i: usize,
    users: &[i64],
    products: &[i64],
    coupon: i64,
) -> Option<StatusCode> {
    let user = users[i % users.len()];
    let product = products[i % products.len()];
    let (path, body) = match i % 6 {
        0 => (
            format!("/api/v1/users/{user}/balance/charge"),
            json!({"amount": 1_000}),
        ),
        1 | 2 => (
            "/api/v1/orders".to_string(),
            json!({"userId": user, "items": [{"productId": product, "quantity": 1}], "pay": i % 4 == 1}),
        ),
        3 => (
            format!("/api/v1/coupons/{coupon}/issue"),
            json!({"userId": user}),
        ),
        4 => (
            format!("/api/v1/admin/products/{product}/stock"),
            json!({"delta": 1}),
        ),
        _ => (
            "/api/v1/admin/products".to_string(),
            json!({"name": format!("p{i}"), "price": 500, "stock": 3}),
        ),
    };
    let mut req = client.post(app.url(&path)).json(&body);
    if let Some(token) = app
        .rightful_token(&path, Some(&serde_json::to_vec(&body).unwrap()))
        .await
    {
        req = req.bearer_auth(token);
    }
    if i.is_multiple_of(3) {
        req = req.header("Idempotency-Key", format!("storm-{i}"));
    }
    req.send().await.ok().map(|r| r.status())
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_that_go_away_mid_write_break_nothing_for_the_next(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let mut users = Vec::new();
    for i in 0..10 {
        users.push(app.user_with_balance(&format!("u{i}"), 1_000_000).await);
    }
    let mut products = Vec::new();
    for i in 0..4 {
        products.push(app.create_product(&format!("p{i}"), 1_000, 100_000).await);
    }
    let coupon = app.create_coupon(json!({"totalQuantity": 5})).await;
    let (app, users, products) = (Arc::new(app), Arc::new(users), Arc::new(products));

    // The storm: clients that give up after a few milliseconds, mid-write.
    let storm: Vec<_> = (0..300)
        .map(|i| {
            let (app, users, products) = (app.clone(), users.clone(), products.clone());
            tokio::spawn(async move {
                let impatient = reqwest::Client::builder()
                    .timeout(Duration::from_millis(1 + (i as u64 % 15)))
                    .build()
                    .unwrap();
                mixed_write(&app, &impatient, i, &users, &products, coupon).await
            })
        })
        .collect();
    for task in storm {
        task.await.unwrap();
    }

    // Then a thousand writes, fifty at a time: every one is answered, none with a 5xx.
    let mut answered = 0;
    for round in 0..20 {
        let wave: Vec<_> = (0..50)
            .map(|k| {
                let (app, users, products) = (app.clone(), users.clone(), products.clone());
                let i = 1_000 + round * 50 + k;
                tokio::spawn(async move {
                    mixed_write(&app, &app.client, i, &users, &products, coupon).await
                })
            })
            .collect();
        for task in wave {
            let status = task.await.unwrap().expect("an answer");
            assert!(
                status.is_success() || status == StatusCode::CONFLICT,
                "a write answered {status}"
            );
            answered += 1;
        }
    }
    assert_eq!(answered, 1_000);
    app.check_invariants().await;
}
