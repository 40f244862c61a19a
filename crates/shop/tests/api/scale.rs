//! Scale-out: PostgreSQL + Redis, several instances, Redis failures.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, race, spawn_app, spawn_app_with, start_instance};

fn code(b: &Value) -> String {
    b["code"].as_str().unwrap_or("").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_flushed_in_the_middle_of_a_coupon_rush_still_issues_exactly_n() {
    let app = Arc::new(spawn_app(Backend::Postgres).await);
    let coupon = app.create_coupon(json!({"totalQuantity": 50})).await;
    let mut users = Vec::new();
    for i in 0..300 {
        users.push(app.create_user(&format!("u{i}")).await);
    }
    let users = Arc::new(users);
    // Each user asks twice; Redis is flushed three times while the rush runs.
    let flusher = {
        let app = app.clone();
        tokio::spawn(async move {
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_millis(30)).await;
                app.flush_redis().await;
            }
        })
    };
    let answers = race(600, |i| {
        let (app, users) = (app.clone(), users.clone());
        async move { app.issue(coupon, users[i % 300]).await }
    })
    .await;
    flusher.await.unwrap();
    let issued = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    assert_eq!(issued, 50);
    for (s, b) in &answers {
        assert!(
            *s == StatusCode::CREATED
                || (*s == StatusCode::CONFLICT
                    && ["COUPON_SOLD_OUT", "COUPON_ALREADY_ISSUED"].contains(&code(b).as_str())),
            "{s} {b}"
        );
    }
    assert_eq!(
        app.scalar(&format!(
            "select issued_quantity from coupons where id = {coupon}"
        ))
        .await,
        50
    );
    assert_eq!(
        app.scalar(&format!(
            "select count(*) from user_coupons where coupon_id = {coupon}"
        ))
        .await,
        50
    );
    // after yet another flush, late comers are still refused by the database
    app.flush_redis().await;
    let late = app.create_user("late").await;
    let (s, b) = app.issue(coupon, late).await;
    assert_eq!(
        (s, code(&b).as_str()),
        (StatusCode::CONFLICT, "COUPON_SOLD_OUT")
    );
    app.check_invariants().await;
}

#[tokio::test]
async fn the_coupon_gate_answers_known_refusals_without_the_database() {
    let app = spawn_app(Backend::Postgres).await;
    let coupon = app.create_coupon(json!({"totalQuantity": 1})).await;
    let kim = app.create_user("kim").await;
    let lee = app.create_user("lee").await;
    assert_eq!(app.issue(coupon, kim).await.0, StatusCode::CREATED);
    let (s, b) = app.issue(coupon, lee).await;
    assert_eq!(
        (s, code(&b).as_str()),
        (StatusCode::CONFLICT, "COUPON_SOLD_OUT")
    );
    // Behind the server's back, make room for one more: a request that reached the
    // database would now be issued one. The gate remembers the database's refusals.
    sqlx::query(&format!(
        "update coupons set total_quantity = 2 where id = {coupon}"
    ))
    .execute(app.state.db.read())
    .await
    .unwrap();
    let (s, b) = app.issue(coupon, lee).await;
    assert_eq!(
        (s, code(&b).as_str()),
        (StatusCode::CONFLICT, "COUPON_SOLD_OUT"),
        "answered by the gate"
    );
    let (s, b) = app.issue(coupon, kim).await;
    assert_eq!(
        (s, code(&b).as_str()),
        (StatusCode::CONFLICT, "COUPON_ALREADY_ISSUED")
    );
    // Once Redis forgets, this instance still remembers (a sold-out coupon stays sold
    // out: its total never grows through the API), but an instance that never saw
    // the refusal asks the database again.
    app.flush_redis().await;
    let (s, b) = app.issue(coupon, lee).await;
    assert_eq!(
        (s, code(&b).as_str()),
        (StatusCode::CONFLICT, "COUPON_SOLD_OUT"),
        "answered from this instance's memory"
    );
    let fresh = start_instance(&app, &[]).await;
    let path = format!("/api/v1/coupons/{coupon}/issue");
    let body = serde_json::to_vec(&json!({"userId": lee})).unwrap();
    let res = app
        .request_to(&fresh.base, reqwest::Method::POST, &path, Some(body))
        .await
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED, "the database decided");
    app.check_invariants().await;
}

#[tokio::test]
async fn cached_product_stock_follows_every_change() {
    let app = spawn_app(Backend::Postgres).await;
    let user = app.user_with_balance("kim", 100_000).await;
    let p = app.create_product("p", 1_000, 10).await;
    assert_eq!(app.stock(p).await, 10); // now cached in Redis
    let (_, o) = app.order(user, &[(p, 3)], None, false).await;
    assert_eq!(app.stock(p).await, 7, "an order drops the cached copy");
    app.cancel(o["id"].as_i64().unwrap()).await;
    assert_eq!(app.stock(p).await, 10, "a cancel drops it");
    app.post(
        &format!("/api/v1/admin/products/{p}/stock"),
        json!({"delta": -4}),
    )
    .await;
    assert_eq!(app.stock(p).await, 6, "a stock adjustment drops it");
    app.patch(
        &format!("/api/v1/admin/products/{p}"),
        json!({"price": 900}),
    )
    .await;
    let (_, got) = app.get(&format!("/api/v1/products/{p}")).await;
    assert_eq!(got["price"], 900, "a reprice drops it");
    let (_, o) = app.order(user, &[(p, 6)], None, false).await;
    assert_eq!(app.stock(p).await, 0);
    app.clock.advance(chrono::TimeDelta::minutes(6));
    app.expire_now().await;
    // The background worker may be the one that expired it, dropping the copy just
    // after its commit: wait for that moment rather than race it.
    let mut stock = app.stock(p).await;
    for _ in 0..100 {
        if stock == 6 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        stock = app.stock(p).await;
    }
    assert_eq!(stock, 6, "an expiry drops it");
    assert_eq!(app.order_status(o["id"].as_i64().unwrap()).await, "EXPIRED");
}

#[tokio::test]
async fn with_redis_down_requests_succeed_and_readiness_says_degraded() {
    // Nothing listens on port 1: every Redis call fails at once.
    let app = spawn_app_with(Backend::Postgres, |c| {
        c.redis_url = Some("redis://127.0.0.1:1".into())
    })
    .await;
    let (s, body) = app.get("/health/ready").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["checks"]["redis"], "down");
    let user = app.user_with_balance("kim", 100_000).await;
    let p = app.create_product("p", 1_000, 10).await;
    let coupon = app.create_coupon(json!({"totalQuantity": 1})).await;
    let uc = app.issued(coupon, user).await;
    let (s, o) = app.order(user, &[(p, 2)], Some(uc), true).await;
    assert_eq!(s, StatusCode::CREATED, "{o}");
    assert_eq!(app.stock(p).await, 8);
    let (s, top) = app.get("/api/v1/products/popular").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(top["items"][0]["productId"], p);
    app.check_invariants().await;
}

async fn send(
    app: &TestApp,
    url: String,
    body: Option<Value>,
    key: Option<&str>,
) -> (StatusCode, Value) {
    // `url` is an instance's base and a path: the token is the path's rightful caller's.
    let path = &url[url.find("/api/").expect("an API url")..];
    let base = &url[..url.len() - path.len()];
    let bytes = body.as_ref().map(|b| serde_json::to_vec(b).unwrap());
    let mut req = app
        .request_to(base, reqwest::Method::POST, path, bytes)
        .await;
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    if let Some(key) = key {
        req = req.header("Idempotency-Key", key);
    }
    let res = req.send().await.expect("request");
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_on_one_postgres_and_redis_keep_every_invariant() {
    let app = Arc::new(spawn_app(Backend::Postgres).await);
    let instances = Arc::new(vec![
        start_instance(&app, &[]).await,
        start_instance(&app, &[]).await,
        start_instance(&app, &[]).await,
    ]);
    let url = |i: usize, path: &str| format!("{}{path}", instances[i % 3].base);

    // Fixtures through the in-process instance.
    let coupon = app.create_coupon(json!({"totalQuantity": 40})).await;
    let hot = app.create_product("hot", 1_000, 25).await;
    let mut users = Vec::new();
    for i in 0..120 {
        users.push(app.user_with_balance(&format!("u{i}"), 10_000).await);
    }
    let users = Arc::new(users);

    // The coupon rush, spread over the three instances.
    let answers = race(240, |i| {
        let (client_app, users, u) = (
            app.clone(),
            users.clone(),
            url(i, &format!("/api/v1/coupons/{coupon}/issue")),
        );
        async move {
            send(
                &client_app,
                u,
                Some(json!({"userId": users[i % 120]})),
                None,
            )
            .await
        }
    })
    .await;
    assert_eq!(
        answers
            .iter()
            .filter(|(s, _)| *s == StatusCode::CREATED)
            .count(),
        40
    );
    assert_eq!(
        app.scalar(&format!(
            "select count(*) from user_coupons where coupon_id = {coupon}"
        ))
        .await,
        40
    );

    // The hot product: 120 buyers for 25 units, order and pay in one step.
    let answers = race(120, |i| {
        let (client_app, users, u) = (app.clone(), users.clone(), url(i, "/api/v1/orders"));
        async move {
            let body = json!({"userId": users[i], "items": [{"productId": hot, "quantity": 1}], "pay": true});
            send(&client_app, u, Some(body), None).await
        }
    })
    .await;
    let sold = answers
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    assert_eq!(sold, 25);
    for (s, b) in &answers {
        assert!(
            *s == StatusCode::CREATED || code(b) == "INSUFFICIENT_STOCK",
            "{s} {b}"
        );
    }
    assert_eq!(
        app.scalar(&format!(
            "select cast(sum(stock) as bigint) from variants where product_id = {hot}"
        ))
        .await,
        0
    );
    assert_eq!(
        app.scalar("select count(*) from orders where status = 'PAID'")
            .await,
        25
    );

    // The double spend: twelve payments of one order, spread.
    let p = app.create_product("p", 3_000, 10).await;
    let (_, order) = app.order(users[0], &[(p, 1)], None, false).await;
    let order = order["id"].as_i64().unwrap();
    let answers = race(12, |i| {
        let (client_app, u) = (
            app.clone(),
            url(i, &format!("/api/v1/orders/{order}/payment")),
        );
        async move { send(&client_app, u, None, None).await }
    })
    .await;
    assert_eq!(
        answers.iter().filter(|(s, _)| *s == StatusCode::OK).count(),
        1
    );
    assert_eq!(app.ledger_entries(order, "PAYMENT").await, 1);

    // Idempotent retries of one charge, spread: applied once.
    let user = users[1];
    let before = app.balance(user).await;
    let answers = race(9, |i| {
        let (client_app, u) = (
            app.clone(),
            url(i, &format!("/api/v1/users/{user}/balance/charge")),
        );
        async move {
            send(
                &client_app,
                u,
                Some(json!({"amount": 700})),
                Some("retry-me"),
            )
            .await
        }
    })
    .await;
    for (s, b) in &answers {
        assert!(
            *s == StatusCode::OK || code(b) == "IDEMPOTENCY_KEY_IN_PROGRESS",
            "{s} {b}"
        );
    }
    let (s, replay) = send(
        &app,
        url(2, &format!("/api/v1/users/{user}/balance/charge")),
        Some(json!({"amount": 700})),
        Some("retry-me"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(replay["balance"], before + 700);
    assert_eq!(app.balance(user).await, before + 700);

    // Every event is delivered, once, whichever instance relayed it.
    app.wait_for(
        "select count(*) from outbox_events where delivered_at is null",
        0,
    )
    .await;
    let text = std::fs::read_to_string(app.dir.path().join("shop.events.jsonl")).unwrap();
    let mut ids = HashSet::new();
    for line in text.lines() {
        let event: Value = serde_json::from_str(line).unwrap();
        assert!(
            ids.insert(event["id"].as_str().unwrap().to_string()),
            "delivered twice: {line}"
        );
    }
    assert_eq!(
        ids.len() as i64,
        app.scalar("select count(*) from outbox_events").await
    );
    app.check_invariants().await;
    drop(instances);
}
