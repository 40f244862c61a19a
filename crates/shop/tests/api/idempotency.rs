//! `Idempotency-Key`: the same key and fingerprint (method, path, body bytes) replays
//! the first answer without doing the work again, refusals included; another
//! fingerprint is 422 `IDEMPOTENCY_KEY_REUSED`; a repeat while the first is in flight
//! is 409 `IDEMPOTENCY_KEY_IN_PROGRESS`; malformed keys are 400; requests without a
//! key and GETs are not affected.

use std::sync::Arc;

use chrono::TimeDelta;
use reqwest::header::HeaderValue;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use rstest::rstest;

use crate::helpers::{Backend, TestApp, race, spawn_app, spawn_app_with};

/// An answer with its exact bytes, so that a replay can be compared byte for byte.
#[derive(Debug, Clone, PartialEq)]
struct Reply {
    status: StatusCode,
    body: Value,
    bytes: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    fn assert_error(&self, status: StatusCode, code: &str) {
        assert_eq!(self.status, status, "{}", self.text());
        let o = self
            .body
            .as_object()
            .unwrap_or_else(|| panic!("not JSON: {}", self.text()));
        assert_eq!(o.len(), 2, "{}", self.text());
        assert!(o["message"].is_string(), "{}", self.text());
        assert_eq!(o["code"], code, "{}", self.text());
    }
}

/// Sends `body` (JSON, or no body at all when `None`) with an optional raw key.
async fn request(
    app: &TestApp,
    method: Method,
    path: &str,
    body: Option<&str>,
    key: Option<&[u8]>,
) -> Reply {
    let mut req = app
        .request(method, path, body.map(|b| b.as_bytes().to_vec()))
        .await;
    if let Some(key) = key {
        let value = HeaderValue::from_bytes(key).expect("a header value the client can send");
        req = req.header("Idempotency-Key", value);
    }
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let res = req.send().await.expect("request");
    let status = res.status();
    let bytes = res.bytes().await.expect("body").to_vec();
    Reply {
        status,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        bytes,
    }
}

async fn post(app: &TestApp, path: &str, body: &str, key: &str) -> Reply {
    request(app, Method::POST, path, Some(body), Some(key.as_bytes())).await
}

/// POST without a body (payment, cancel).
async fn post_empty(app: &TestApp, path: &str, key: Option<&str>) -> Reply {
    request(app, Method::POST, path, None, key.map(str::as_bytes)).await
}

fn charge_path(user: i64) -> String {
    format!("/api/v1/users/{user}/balance/charge")
}

async fn ledger_count(app: &TestApp, user: i64) -> i64 {
    app.scalar(&format!(
        "select count(*) from balance_ledger where user_id = {user}"
    ))
    .await
}

async fn order_count(app: &TestApp) -> i64 {
    app.scalar("select count(*) from orders").await
}

async fn pending_order(app: &TestApp, user: i64, product: i64, quantity: i64) -> i64 {
    let (s, o) = app.order(user, &[(product, quantity)], None, false).await;
    assert_eq!(s, StatusCode::CREATED, "{o}");
    assert_eq!(o["status"], "PENDING");
    o["id"].as_i64().unwrap()
}

// ---- replays ----

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn a_charge_replayed_three_times_is_applied_once(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.create_user("kim").await;
    let body = r#"{"amount": 1000}"#;
    let first = post(&app, &charge_path(user), body, "charge-1").await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    assert_eq!(first.body, json!({ "userId": user, "balance": 1000 }));
    for _ in 0..3 {
        let again = post(&app, &charge_path(user), body, "charge-1").await;
        assert_eq!(again.status, first.status);
        assert_eq!(again.bytes, first.bytes, "a replay answers the same bytes");
    }
    assert_eq!(app.balance(user).await, 1000);
    assert_eq!(ledger_count(&app, user).await, 1);
    app.check_invariants().await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn a_signup_key_never_hands_one_strangers_token_to_another(#[case] backend: Backend) {
    // Two strangers (no token, or a forged one) send the same key and body: each gets
    // an account of their own, and no answer (with its token) is stored to replay.
    let app = spawn_app(backend).await;
    let (status, first) = app
        .post_with_key("/api/v1/users", json!({ "name": "kim" }), "signup-kim")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let res = app
        .client
        .post(app.url("/api/v1/users"))
        .bearer_auth("7.forged")
        .header("Idempotency-Key", "signup-kim")
        .header("content-type", "application/json")
        .body(r#"{"name": "kim"}"#)
        .send()
        .await
        .expect("request");
    assert!(res.headers().get("idempotent-replayed").is_none());
    assert_eq!(res.status(), StatusCode::CREATED);
    let second: Value = res.json().await.expect("JSON");
    assert_ne!(second["id"], first["id"]);
    assert_ne!(second["token"], first["token"]);
    assert_eq!(app.scalar("select count(*) from users").await, 2);
    assert_eq!(app.scalar("select count(*) from idempotency_keys").await, 0);
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn an_order_replayed_is_placed_once(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.user_with_balance("kim", 100_000).await;
    let product = app.create_product("pen", 1_000, 10).await;
    let body =
        json!({ "userId": user, "items": [{ "productId": product, "quantity": 3 }] }).to_string();
    let first = post(&app, "/api/v1/orders", &body, "order-1").await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text());
    assert_eq!(first.body["status"], "PENDING");
    for _ in 0..3 {
        let again = post(&app, "/api/v1/orders", &body, "order-1").await;
        assert_eq!(again, first);
    }
    assert_eq!(order_count(&app).await, 1);
    assert_eq!(app.stock(product).await, 7, "stock is held once");

    // create-and-pay replayed pays once
    let body =
        json!({ "userId": user, "items": [{ "productId": product, "quantity": 2 }], "pay": true })
            .to_string();
    let first = post(&app, "/api/v1/orders", &body, "order-2").await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text());
    assert_eq!(first.body["status"], "PAID");
    let again = post(&app, "/api/v1/orders", &body, "order-2").await;
    assert_eq!(again, first);
    assert_eq!(order_count(&app).await, 2);
    assert_eq!(app.stock(product).await, 5);
    assert_eq!(app.balance(user).await, 98_000);
    assert_eq!(
        app.scalar("select count(*) from balance_ledger where kind = 'PAYMENT'")
            .await,
        1
    );
    app.check_invariants().await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn a_payment_replayed_answers_the_first_200_not_order_not_payable(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.user_with_balance("kim", 10_000).await;
    let product = app.create_product("pen", 1_000, 10).await;
    let order = pending_order(&app, user, product, 2).await;
    let path = format!("/api/v1/orders/{order}/payment");

    let first = post_empty(&app, &path, Some("pay-1")).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    assert_eq!(first.body["status"], "PAID");
    for _ in 0..3 {
        let again = post_empty(&app, &path, Some("pay-1")).await;
        assert_eq!(
            again, first,
            "the replay is the first 200, not ORDER_NOT_PAYABLE"
        );
    }
    assert_eq!(app.balance(user).await, 8_000);
    assert_eq!(app.ledger_entries(order, "PAYMENT").await, 1);
    assert_eq!(
        app.scalar(&format!(
            "select count(*) from outbox_events where order_id = {order} and event_type = 'order.paid'"
        ))
        .await,
        1
    );
    // without the key it is a new request, refused by the business rule
    post_empty(&app, &path, None)
        .await
        .assert_error(StatusCode::CONFLICT, "ORDER_NOT_PAYABLE");
    // and so with a new key
    post_empty(&app, &path, Some("pay-2"))
        .await
        .assert_error(StatusCode::CONFLICT, "ORDER_NOT_PAYABLE");
    assert_eq!(app.balance(user).await, 8_000);

    // cancel replayed refunds once
    let cancel = format!("/api/v1/orders/{order}/cancel");
    let first = post_empty(&app, &cancel, Some("cancel-1")).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    assert_eq!(first.body["status"], "CANCELLED");
    let again = post_empty(&app, &cancel, Some("cancel-1")).await;
    assert_eq!(again, first);
    assert_eq!(app.balance(user).await, 10_000);
    assert_eq!(app.stock(product).await, 10);
    app.check_invariants().await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn a_refused_answer_is_replayed_even_when_a_retry_would_now_succeed(
    #[case] backend: Backend,
) {
    let app = spawn_app(backend).await;
    let user = app.create_user("kim").await;
    let product = app.create_product("pen", 1_000, 10).await;

    // 409: payment without the money; after a charge, the same key still answers 409
    let order = pending_order(&app, user, product, 2).await;
    let path = format!("/api/v1/orders/{order}/payment");
    let refused = post_empty(&app, &path, Some("pay-k")).await;
    refused.assert_error(StatusCode::CONFLICT, "INSUFFICIENT_BALANCE");
    let (s, b) = app.charge(user, 5_000).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let again = post_empty(&app, &path, Some("pay-k")).await;
    assert_eq!(again, refused);
    assert_eq!(app.order_status(order).await, "PENDING");
    assert_eq!(app.balance(user).await, 5_000);
    // a new key does the work
    let paid = post_empty(&app, &path, Some("pay-k2")).await;
    assert_eq!(paid.status, StatusCode::OK, "{}", paid.text());
    assert_eq!(app.balance(user).await, 3_000);

    // 404: an order for a product that does not exist yet; once it exists, the same
    // key still answers 404 and places nothing
    let next = app
        .scalar("select coalesce(max(id), 0) + 1 from products")
        .await;
    let body =
        json!({ "userId": user, "items": [{ "productId": next, "quantity": 1 }] }).to_string();
    let refused = post(&app, "/api/v1/orders", &body, "order-k").await;
    refused.assert_error(StatusCode::NOT_FOUND, "PRODUCT_NOT_FOUND");
    assert_eq!(app.create_product("late", 500, 10).await, next);
    let orders = order_count(&app).await;
    let again = post(&app, "/api/v1/orders", &body, "order-k").await;
    assert_eq!(again, refused);
    assert_eq!(order_count(&app).await, orders);
    assert_eq!(app.stock(next).await, 10);

    // 404 on a charge of an unknown user, replayed
    let refused = post(
        &app,
        &charge_path(999_999),
        r#"{"amount": 1000}"#,
        "charge-404",
    )
    .await;
    refused.assert_error(StatusCode::NOT_FOUND, "USER_NOT_FOUND");
    let again = post(
        &app,
        &charge_path(999_999),
        r#"{"amount": 1000}"#,
        "charge-404",
    )
    .await;
    assert_eq!(again, refused);

    // 400: out of range, and malformed JSON, replayed
    for (i, body) in [r#"{"amount": 0}"#, r#"{"amount": 1.5}"#, r#"{"amount": "#]
        .into_iter()
        .enumerate()
    {
        let key = format!("bad-{i}");
        let refused = post(&app, &charge_path(user), body, &key).await;
        refused.assert_error(StatusCode::BAD_REQUEST, "INVALID_REQUEST");
        let again = post(&app, &charge_path(user), body, &key).await;
        assert_eq!(again, refused, "{body}");
    }
    assert_eq!(app.balance(user).await, 3_000);
    app.check_invariants().await;
}

// ---- reuse ----

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn the_same_key_with_another_body_is_422_and_changes_nothing(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.create_user("kim").await;
    let path = charge_path(user);
    let first = post(&app, &path, r#"{"amount": 1000}"#, "k").await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    // another amount, and the same JSON with other bytes (the fingerprint is the bytes)
    for body in [
        r#"{"amount": 2000}"#,
        r#"{"amount":1000}"#,
        r#"{"amount": 1000} "#,
        r#"{"amount": 1e3}"#,
        "",
    ] {
        post(&app, &path, body, "k")
            .await
            .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "IDEMPOTENCY_KEY_REUSED");
    }
    assert_eq!(app.balance(user).await, 1000);
    assert_eq!(ledger_count(&app, user).await, 1);
    // the refusals did not replace the stored answer
    let again = post(&app, &path, r#"{"amount": 1000}"#, "k").await;
    assert_eq!(again, first);

    // a key first used for a refused request is spent on it too
    post(&app, &path, r#"{"amount": 0}"#, "k0")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "INVALID_REQUEST");
    post(&app, &path, r#"{"amount": 500}"#, "k0")
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(app.balance(user).await, 1000);
    assert_eq!(ledger_count(&app, user).await, 1);
    app.check_invariants().await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn the_same_key_on_another_path_is_422_and_changes_nothing(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.user_with_balance("kim", 10_000).await;
    let b = app.create_user("lee").await;
    let product = app.create_product("pen", 1_000, 10).await;
    let order = pending_order(&app, a, product, 1).await;

    let first = post(&app, &charge_path(a), r#"{"amount": 1000}"#, "shared").await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());

    let ledger = app.scalar("select count(*) from balance_ledger").await;
    // the same caller's key on its order's payment and cancel
    post_empty(
        &app,
        &format!("/api/v1/orders/{order}/payment"),
        Some("shared"),
    )
    .await
    .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "IDEMPOTENCY_KEY_REUSED");
    post_empty(
        &app,
        &format!("/api/v1/orders/{order}/cancel"),
        Some("shared"),
    )
    .await
    .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(
        app.scalar("select count(*) from balance_ledger").await,
        ledger
    );
    assert_eq!(app.balance(a).await, 11_000);
    assert_eq!(app.order_status(order).await, "PENDING");
    // keys are scoped to the caller: another user's "shared" is a key of its own
    let other = post(&app, &charge_path(b), r#"{"amount": 1000}"#, "shared").await;
    assert_eq!(other.status, StatusCode::OK, "{}", other.text());
    assert_eq!(app.balance(b).await, 1000);
    app.check_invariants().await;
}

// ---- malformed keys ----

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn malformed_keys_are_refused_with_400_and_change_nothing(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.create_user("kim").await;
    let product = app.create_product("pen", 1_000, 10).await;
    let order = pending_order(&app, user, product, 1).await;
    let url = charge_path(user);
    let too_long = vec![b'k'; 129];
    let bad_keys: Vec<&[u8]> = vec![
        b"",
        &too_long,
        b"tab\there",
        "키".as_bytes(),
        "caf\u{e9}".as_bytes(),
        b"\xff",
        b"abc\x80",
    ];
    for key in &bad_keys {
        let reply = request(
            &app,
            Method::POST,
            &url,
            Some(r#"{"amount": 1000}"#),
            Some(key),
        )
        .await;
        reply.assert_error(StatusCode::BAD_REQUEST, "INVALID_REQUEST");
        let reply = request(
            &app,
            Method::POST,
            &format!("/api/v1/orders/{order}/payment"),
            None,
            Some(key),
        )
        .await;
        reply.assert_error(StatusCode::BAD_REQUEST, "INVALID_REQUEST");
        let reply = request(
            &app,
            Method::POST,
            "/api/v1/admin/products",
            Some(r#"{"name": "cup", "price": 1, "stock": 1}"#),
            Some(key),
        )
        .await;
        reply.assert_error(StatusCode::BAD_REQUEST, "INVALID_REQUEST");
    }
    assert_eq!(app.balance(user).await, 0);
    assert_eq!(ledger_count(&app, user).await, 0);
    assert_eq!(app.order_status(order).await, "PENDING");
    assert_eq!(app.scalar("select count(*) from products").await, 1);
    assert_eq!(app.scalar("select count(*) from idempotency_keys").await, 0);

    // the limits are inclusive: 1 and 128 printable ASCII characters, any of them
    let printable: String = (0x20u8..=0x7e).map(char::from).collect();
    let keys = [
        "k".to_string(),
        "k".repeat(128),
        format!("a{}z", &printable[1..]),
    ];
    for (i, key) in keys.iter().enumerate() {
        let reply = request(
            &app,
            Method::POST,
            &url,
            Some(r#"{"amount": 1000}"#),
            Some(key.as_bytes()),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{key:?}: {}", reply.text());
        assert_eq!(reply.body["balance"], 1000 * (i as i64 + 1));
    }
    assert_eq!(ledger_count(&app, user).await, 3);
    app.check_invariants().await;
}

// ---- concurrency ----

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_charges_with_one_key_are_applied_once(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.create_user("kim").await;
    let url = charge_path(user);
    let app = Arc::new(app);
    let replies = race(10, |_| {
        let app = app.clone();
        let url = url.clone();
        async move {
            request(
                &app,
                Method::POST,
                &url,
                Some(r#"{"amount": 1000}"#),
                Some(b"race-key".as_slice()),
            )
            .await
        }
    })
    .await;
    let want = json!({ "userId": user, "balance": 1000 });
    let mut ok = Vec::new();
    for r in &replies {
        if r.status == StatusCode::OK {
            assert_eq!(r.body, want);
            ok.push(r.bytes.clone());
        } else {
            r.assert_error(StatusCode::CONFLICT, "IDEMPOTENCY_KEY_IN_PROGRESS");
        }
    }
    assert!(!ok.is_empty(), "one request did the work: {replies:?}");
    assert!(
        ok.windows(2).all(|w| w[0] == w[1]),
        "every 200 is the same answer"
    );
    assert_eq!(app.balance(user).await, 1000);
    assert_eq!(ledger_count(&app, user).await, 1);
    // afterwards, the key replays the 200
    let again = request(
        &app,
        Method::POST,
        &url,
        Some(r#"{"amount": 1000}"#),
        Some(b"race-key".as_slice()),
    )
    .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.bytes, ok[0]);
    assert_eq!(ledger_count(&app, user).await, 1);
    app.check_invariants().await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_payments_with_one_key_pay_once(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.user_with_balance("kim", 10_000).await;
    let product = app.create_product("pen", 1_000, 10).await;
    let order = pending_order(&app, user, product, 3).await;
    let url = format!("/api/v1/orders/{order}/payment");
    let app = Arc::new(app);
    let replies = race(10, |_| {
        let app = app.clone();
        let url = url.clone();
        async move { request(&app, Method::POST, &url, None, Some(b"pay-race".as_slice())).await }
    })
    .await;
    let mut ok = Vec::new();
    for r in &replies {
        if r.status == StatusCode::OK {
            assert_eq!(r.body["status"], "PAID", "{}", r.text());
            ok.push(r.bytes.clone());
        } else {
            // never ORDER_NOT_PAYABLE: that would mean the work ran twice
            r.assert_error(StatusCode::CONFLICT, "IDEMPOTENCY_KEY_IN_PROGRESS");
        }
    }
    assert!(!ok.is_empty(), "{replies:?}");
    assert!(ok.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(app.balance(user).await, 7_000);
    assert_eq!(app.ledger_entries(order, "PAYMENT").await, 1);
    app.check_invariants().await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_orders_with_one_key_place_one_order(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.user_with_balance("kim", 100_000).await;
    let product = app.create_product("pen", 1_000, 100).await;
    let url = "/api/v1/orders".to_string();
    let body =
        json!({ "userId": user, "items": [{ "productId": product, "quantity": 2 }], "pay": true })
            .to_string();
    let app = Arc::new(app);
    let replies = race(10, |_| {
        let app = app.clone();
        let url = url.clone();
        let body = body.clone();
        async move {
            request(
                &app,
                Method::POST,
                &url,
                Some(body.as_str()),
                Some(b"order-race".as_slice()),
            )
            .await
        }
    })
    .await;
    let mut ok = 0;
    for r in &replies {
        if r.status == StatusCode::CREATED {
            assert_eq!(r.body["status"], "PAID", "{}", r.text());
            ok += 1;
        } else {
            r.assert_error(StatusCode::CONFLICT, "IDEMPOTENCY_KEY_IN_PROGRESS");
        }
    }
    assert!(ok >= 1, "{replies:?}");
    assert_eq!(order_count(&app).await, 1);
    assert_eq!(app.stock(product).await, 98);
    assert_eq!(app.balance(user).await, 98_000);
    app.check_invariants().await;
}

// ---- what keys do not touch ----

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn requests_without_a_key_or_with_distinct_keys_are_not_deduplicated(
    #[case] backend: Backend,
) {
    let app = spawn_app(backend).await;
    let user = app.create_user("kim").await;
    let product = app.create_product("pen", 1_000, 10).await;
    for _ in 0..2 {
        let (s, b) = app.charge(user, 1000).await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    assert_eq!(app.balance(user).await, 2000);
    assert_eq!(ledger_count(&app, user).await, 2);
    for key in ["a", "b"] {
        let r = post(&app, &charge_path(user), r#"{"amount": 1000}"#, key).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    assert_eq!(app.balance(user).await, 4000);
    assert_eq!(ledger_count(&app, user).await, 4);

    for _ in 0..2 {
        pending_order(&app, user, product, 1).await;
    }
    assert_eq!(order_count(&app).await, 2);
    assert_eq!(app.stock(product).await, 8);
    app.check_invariants().await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn gets_are_not_affected_by_keys(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.create_user("kim").await;
    let url = format!("/api/v1/users/{user}/balance");
    let first = request(&app, Method::GET, &url, None, Some(b"get-key".as_slice())).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    assert_eq!(first.body["balance"], 0);
    let (s, b) = app.charge(user, 1000).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // not replayed: the GET answers the balance now
    let again = request(&app, Method::GET, &url, None, Some(b"get-key".as_slice())).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text());
    assert_eq!(again.body["balance"], 1000);
    // a malformed key does not matter on a GET
    for key in [&b""[..], &[b'k'; 129][..], b"tab\there"] {
        let r = request(&app, Method::GET, &url, None, Some(key)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    assert_eq!(app.scalar("select count(*) from idempotency_keys").await, 0);
    // and a GET did not claim the key for a later POST
    let r = post(&app, &charge_path(user), r#"{"amount": 1000}"#, "get-key").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.body["balance"], 2000);
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn keys_are_kept_for_24_hours(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.create_user("kim").await;
    let path = charge_path(user);
    let first = post(&app, &path, r#"{"amount": 1000}"#, "day-key").await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    app.clock.advance(TimeDelta::hours(24));
    let now = shop::clock::Clock::now(&*app.clock);
    shop::http::idempotency::purge_expired(&app.state.writer, now)
        .await
        .expect("purge");
    let again = post(&app, &path, r#"{"amount": 1000}"#, "day-key").await;
    assert_eq!(again, first, "the key is still replayed 24 hours later");
    assert_eq!(app.balance(user).await, 1000);
    assert_eq!(ledger_count(&app, user).await, 1);
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn an_oversized_body_with_a_key_is_413_and_changes_nothing(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.create_user("kim").await;
    let mut body = r#"{"amount": 1000}"#.to_string();
    body.push_str(&" ".repeat(64 * 1024));
    post(&app, &charge_path(user), &body, "big")
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE");
    assert_eq!(app.balance(user).await, 0);
    assert_eq!(ledger_count(&app, user).await, 0);
    assert_eq!(app.scalar("select count(*) from idempotency_keys").await, 0);
}

/// A slow database (another writer holding SQLite's single write connection) makes
/// the first request outlive the request timeout after its work has committed but
/// before its answer is stored. Whatever it answered, the same key must never apply
/// the charge a second time, however the client retries.
#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_keyed_charge_that_timed_out_after_its_work_is_not_applied_again(
    #[case] backend: Backend,
) {
    use std::time::Duration;
    let pause = || tokio::time::sleep(Duration::from_millis(200));
    let app = spawn_app_with(backend, |c| c.request_timeout_secs = 2).await;
    let user = app.create_user("kim").await;
    let body = r#"{"amount": 1000}"#;
    let db = app.state.db.clone();

    // The write connection is handed out first come, first served. Queue, in order:
    // the request's claim, a blocker, the request's charge, a second blocker, the
    // request's answer.
    let hold = db.begin().await.expect("writer");
    let app = Arc::new(app);
    let spawned = app.clone();
    let url = charge_path(user);
    let first = tokio::spawn(async move {
        request(
            &spawned,
            Method::POST,
            &url,
            Some(body),
            Some(b"slow".as_slice()),
        )
        .await
    });
    pause().await; // the claim waits for the writer
    let d = db.clone();
    let blocker = tokio::spawn(async move { d.begin().await.expect("writer") });
    pause().await;
    drop(hold); // the claim commits; the charge queues behind the blocker
    let hold = blocker.await.expect("blocker");
    pause().await;
    let d = db.clone();
    let blocker = tokio::spawn(async move { d.begin().await.expect("writer") });
    pause().await;
    drop(hold); // the charge commits; storing the answer queues behind the blocker
    let hold = blocker.await.expect("blocker");
    tokio::time::sleep(Duration::from_secs(3)).await; // past the request timeout
    drop(hold);
    let first = first.await.expect("first request");

    // The client retries with the same key, now and after the in-flight lease.
    let retry = post(&app, &charge_path(user), body, "slow").await;
    assert!(
        retry.status == StatusCode::OK || retry.body["code"] == "IDEMPOTENCY_KEY_IN_PROGRESS",
        "{}",
        retry.text()
    );
    app.clock.advance(TimeDelta::seconds(121));
    let late = post(&app, &charge_path(user), body, "slow").await;
    assert_eq!(late.status, StatusCode::OK, "{}", late.text());
    assert_eq!(
        (app.balance(user).await, ledger_count(&app, user).await),
        (1000, 1),
        "one charge with one key was applied more than once (first answer: {} {}; retry: {} {}; late retry: {})",
        first.status,
        first.text(),
        retry.status,
        retry.text(),
        late.text()
    );
    app.check_invariants().await;
}
