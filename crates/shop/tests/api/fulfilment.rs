//! Fulfilment and payments: PAID → SHIPPED → DELIVERED by the admin, with their
//! events; the admin's order list; payment attempts; ship racing cancel; and the daily
//! charge limit under concurrent charges.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::TimeDelta;
use reqwest::StatusCode;
use rstest::rstest;
use serde_json::{Value, json};

use crate::events::{Consumer, wait_until_received};
use crate::helpers::{Answer, Backend, Nats, TestApp, race, spawn_app, spawn_app_with};

fn code(b: &Value) -> &str {
    b["code"].as_str().unwrap_or("")
}

fn id(b: &Value) -> i64 {
    b["id"].as_i64().unwrap_or_else(|| panic!("no id in {b}"))
}

async fn ship(app: &TestApp, order: i64, body: Value) -> Answer {
    app.post(&format!("/api/v1/admin/orders/{order}/ship"), body)
        .await
}

async fn deliver(app: &TestApp, order: i64) -> Answer {
    app.post_empty(&format!("/api/v1/admin/orders/{order}/deliver"))
        .await
}

fn ids(page: &Value) -> Vec<i64> {
    page["items"].as_array().unwrap().iter().map(id).collect()
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn a_paid_order_is_shipped_then_delivered_and_then_cannot_be_cancelled(
    #[case] backend: Backend,
) {
    let app = spawn_app(backend).await;
    let kim = app.user_with_balance("kim", 100_000).await;
    let lee = app.user_with_balance("lee", 100_000).await;
    let p = app.create_product("cup", 1_000, 100).await;
    let (_, pending) = app.order(kim, &[(p, 1)], None, false).await;
    let (_, paid) = app.order(kim, &[(p, 2)], None, true).await;
    let (_, other) = app.order(lee, &[(p, 3)], None, true).await;
    let (pending, paid, other) = (id(&pending), id(&paid), id(&other));

    // Only a PAID order ships; only a SHIPPED one is delivered.
    let (s, b) = deliver(&app, paid).await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::CONFLICT, "ORDER_STATUS_CONFLICT")
    );
    let (s, b) = ship(&app, pending, json!({})).await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::CONFLICT, "ORDER_STATUS_CONFLICT")
    );
    for bad in [
        json!({"trackingNumber": ""}),
        json!({"trackingNumber": 7}),
        json!({"carrier": "CJ"}),
    ] {
        let (s, b) = ship(&app, paid, bad.clone()).await;
        assert_eq!(
            (s, code(&b)),
            (StatusCode::BAD_REQUEST, "INVALID_REQUEST"),
            "{bad}"
        );
    }
    assert_eq!(app.order_status(paid).await, "PAID");
    let (s, b) = ship(&app, 999_999, json!({})).await;
    assert_eq!((s, code(&b)), (StatusCode::NOT_FOUND, "ORDER_NOT_FOUND"));

    app.clock.advance(TimeDelta::minutes(1));
    let (s, shipped) = ship(&app, paid, json!({"trackingNumber": "CJ-1234"})).await;
    assert_eq!(s, StatusCode::OK, "{shipped}");
    assert_eq!(shipped["status"], "SHIPPED");
    assert_eq!(shipped["trackingNumber"], "CJ-1234");
    assert!(shipped["shippedAt"].is_string());
    let (s, b) = ship(&app, paid, json!({})).await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::CONFLICT, "ORDER_STATUS_CONFLICT")
    );
    let (s, b) = app.cancel(paid).await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::CONFLICT, "ORDER_NOT_CANCELLABLE")
    );
    let (s, b) = app.pay(paid).await;
    assert_eq!((s, code(&b)), (StatusCode::CONFLICT, "ORDER_NOT_PAYABLE"));
    app.clock.advance(TimeDelta::minutes(1));
    let (s, delivered) = deliver(&app, paid).await;
    assert_eq!(s, StatusCode::OK, "{delivered}");
    assert_eq!(delivered["status"], "DELIVERED");
    assert!(delivered["deliveredAt"].as_str().unwrap() > shipped["shippedAt"].as_str().unwrap());
    let (s, b) = app.cancel(paid).await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::CONFLICT, "ORDER_NOT_CANCELLABLE")
    );
    let (s, b) = deliver(&app, paid).await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::CONFLICT, "ORDER_STATUS_CONFLICT")
    );
    let (_, read) = app.get(&format!("/api/v1/orders/{paid}")).await;
    assert_eq!(read, delivered);
    // Still counted as sold, still paid once.
    assert_eq!(app.stock(p).await, 100 - 1 - 2 - 3);
    assert_eq!(app.balance(kim).await, 100_000 - 2_000);
    assert_eq!(app.ledger_entries(paid, "PAYMENT").await, 1);

    // The admin's list: every order newest first, by status, by user.
    let (s, all) = app.get("/api/v1/admin/orders").await;
    assert_eq!(s, StatusCode::OK, "{all}");
    assert_eq!(ids(&all), [other, paid, pending]);
    let (_, page) = app.get("/api/v1/admin/orders?status=DELIVERED").await;
    assert_eq!(ids(&page), [paid]);
    let (_, page) = app.get(&format!("/api/v1/admin/orders?userId={kim}")).await;
    assert_eq!(ids(&page), [paid, pending]);
    let (_, page) = app
        .get(&format!("/api/v1/admin/orders?userId={lee}&status=PAID"))
        .await;
    assert_eq!(ids(&page), [other]);
    let (_, page) = app.get("/api/v1/admin/orders?status=SHIPPED").await;
    assert_eq!(ids(&page), Vec::<i64>::new());
    let (_, first) = app.get("/api/v1/admin/orders?limit=2").await;
    assert_eq!(ids(&first), [other, paid]);
    let cursor = first["nextCursor"].as_str().unwrap();
    let (_, rest) = app
        .get(&format!("/api/v1/admin/orders?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(ids(&rest), [pending]);
    for bad in [
        "status=shipped",
        "status=LOST",
        "status=",
        "userId=0",
        "userId=x",
        "limit=0",
    ] {
        let (s, b) = app.get(&format!("/api/v1/admin/orders?{bad}")).await;
        assert_eq!(
            (s, code(&b)),
            (StatusCode::BAD_REQUEST, "INVALID_REQUEST"),
            "{bad}"
        );
    }
    app.check_invariants().await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn a_refused_payment_is_a_failed_attempt_and_a_later_one_succeeds(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let kim = app.user_with_balance("kim", 5_000).await;
    let p = app.create_product("cup", 10_000, 10).await;
    let (_, order) = app.order(kim, &[(p, 1)], None, false).await;
    let order = id(&order);
    let path = format!("/api/v1/orders/{order}/payments");
    let (s, none) = app.get(&path).await;
    assert_eq!((s, none), (StatusCode::OK, json!([])));
    let (s, b) = app.pay(order).await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::CONFLICT, "INSUFFICIENT_BALANCE")
    );
    let (_, attempts) = app.get(&path).await;
    assert_eq!(attempts.as_array().unwrap().len(), 1, "{attempts}");
    assert_eq!(attempts[0]["status"], "FAILED");
    assert_eq!(attempts[0]["failureCode"], "INSUFFICIENT_BALANCE");
    assert_eq!(attempts[0]["amount"], 10_000);
    assert_eq!(app.order_status(order).await, "PENDING");
    assert_eq!(app.balance(kim).await, 5_000);

    app.charge(kim, 5_000).await;
    let (s, paid) = app.pay(order).await;
    assert_eq!(s, StatusCode::OK, "{paid}");
    let (_, attempts) = app.get(&path).await;
    let statuses: Vec<(&str, &Value)> = attempts
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["status"].as_str().unwrap(), &a["failureCode"]))
        .collect();
    assert_eq!(
        statuses,
        [
            ("FAILED", &json!("INSUFFICIENT_BALANCE")),
            ("SUCCEEDED", &Value::Null)
        ]
    );
    assert_eq!(attempts[1]["amount"], 10_000);
    assert_eq!(attempts[1]["at"], paid["paidAt"]);
    assert!(attempts[0]["id"].as_i64() < attempts[1]["id"].as_i64());
    // Paying again is refused without an attempt: the order is not payable.
    let (s, b) = app.pay(order).await;
    assert_eq!((s, code(&b)), (StatusCode::CONFLICT, "ORDER_NOT_PAYABLE"));
    assert_eq!(app.get(&path).await.1.as_array().unwrap().len(), 2);
    app.check_invariants().await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ship_racing_cancel_on_a_paid_order_has_one_winner(#[case] backend: Backend) {
    let app = Arc::new(spawn_app(backend).await);
    let kim = app.user_with_balance("kim", 100_000).await;
    let p = app.create_product("cup", 1_000, 100).await;
    let mut orders = Vec::new();
    for _ in 0..20 {
        let (s, o) = app.order(kim, &[(p, 2)], None, true).await;
        assert_eq!(s, StatusCode::CREATED, "{o}");
        orders.push(id(&o));
    }
    let orders = Arc::new(orders);
    // For each order, a ship and a cancel at the same moment: 40 requests.
    let answers = race(40, |i| {
        let (app, orders) = (app.clone(), orders.clone());
        async move {
            let order = orders[i / 2];
            if i % 2 == 0 {
                ship(&app, order, json!({"trackingNumber": format!("T-{order}")})).await
            } else {
                app.cancel(order).await
            }
        }
    })
    .await;
    let mut shipped = 0;
    for (k, pair) in answers.chunks(2).enumerate() {
        let order = orders[k];
        let ((ss, sb), (cs, cb)) = (&pair[0], &pair[1]);
        match (*ss, *cs) {
            (StatusCode::OK, StatusCode::CONFLICT) => {
                assert_eq!(code(cb), "ORDER_NOT_CANCELLABLE");
                assert_eq!(sb["status"], "SHIPPED");
                shipped += 1;
            }
            (StatusCode::CONFLICT, StatusCode::OK) => {
                assert_eq!(code(sb), "ORDER_STATUS_CONFLICT");
                assert_eq!(cb["status"], "CANCELLED");
            }
            other => panic!("order {order}: {other:?} {sb} {cb}"),
        }
        let want = if *ss == StatusCode::OK {
            "SHIPPED"
        } else {
            "CANCELLED"
        };
        assert_eq!(app.order_status(order).await, want);
        let refunds = app.ledger_entries(order, "REFUND").await;
        assert_eq!(refunds, i64::from(want == "CANCELLED"));
        let events: Vec<(String,)> = sqlx::query_as(&format!(
            "select event_type from outbox_events where order_id = {order} order by created_at, id"
        ))
        .fetch_all(app.state.db.read())
        .await
        .unwrap();
        let kinds: Vec<&str> = events.iter().map(|(k,)| k.as_str()).collect();
        let last = if want == "SHIPPED" {
            "order.shipped"
        } else {
            "order.cancelled"
        };
        assert_eq!(kinds, ["order.paid", last], "order {order}");
    }
    assert_eq!(app.stock(p).await, 100 - 2 * shipped);
    assert_eq!(app.balance(kim).await, 100_000 - 2_000 * shipped);
    app.check_invariants().await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_charges_never_pass_the_daily_limit(#[case] backend: Backend) {
    let app = Arc::new(spawn_app_with(backend, |c| c.max_daily_charge = 50_500).await);
    let kim = app.create_user("kim").await;
    let answers = race(100, |_| {
        let app = app.clone();
        async move { app.charge(kim, 1_000).await }
    })
    .await;
    let ok = answers.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    for (s, b) in &answers {
        assert!(
            *s == StatusCode::OK
                || (*s == StatusCode::CONFLICT && code(b) == "DAILY_CHARGE_LIMIT_EXCEEDED"),
            "{s} {b}"
        );
    }
    assert_eq!(ok, 50);
    assert_eq!(app.balance(kim).await, 50_000);
    let ledger = format!(
        "select cast(coalesce(sum(amount), 0) as bigint) from balance_ledger where user_id = {kim}"
    );
    assert_eq!(app.scalar(&ledger).await, 50_000);
    assert_eq!(
        app.scalar(&format!(
            "select count(*) from balance_ledger where user_id = {kim}"
        ))
        .await,
        50
    );
    // What is left of the day still goes; then the next day starts again.
    assert_eq!(app.charge(kim, 500).await.0, StatusCode::OK);
    let (s, b) = app.charge(kim, 1).await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::CONFLICT, "DAILY_CHARGE_LIMIT_EXCEEDED")
    );
    app.clock.advance(TimeDelta::days(1));
    assert_eq!(app.charge(kim, 50_500).await.0, StatusCode::OK);
    assert_eq!(app.balance(kim).await, 101_000);
    assert_eq!(app.scalar(&ledger).await, 101_000);
    app.check_invariants().await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shipped_and_delivered_events_follow_paid_in_order(#[case] backend: Backend) {
    let nats = Nats::start().await;
    let url = nats.url.clone();
    let app = spawn_app_with(backend, |c| c.nats_url = Some(url)).await;
    let consumer = Consumer::start(&nats, app.dir.path()).await;
    let kim = app.user_with_balance("kim", 100_000).await;
    let p = app.create_product("cup", 1_000, 100).await;
    let mut orders = Vec::new();
    for _ in 0..5 {
        let (_, o) = app.order(kim, &[(p, 1)], None, true).await;
        orders.push(id(&o));
    }
    for &o in &orders {
        assert_eq!(ship(&app, o, json!({})).await.0, StatusCode::OK);
    }
    for &o in &orders[..4] {
        assert_eq!(deliver(&app, o).await.0, StatusCode::OK);
    }
    wait_until_received(&app, &consumer, 30).await;
    let mut per_order: HashMap<i64, Vec<String>> = HashMap::new();
    for (_, order, kind) in consumer.received().await {
        per_order.entry(order).or_default().push(kind);
    }
    for (k, o) in orders.iter().enumerate() {
        let mut want = vec!["order.paid", "order.shipped"];
        if k < 4 {
            want.push("order.delivered");
        }
        assert_eq!(per_order[o], want, "order {o}");
    }
    // The event carries the order as it was then.
    let (_, read) = app.get(&format!("/api/v1/orders/{}", orders[0])).await;
    let payload: (String,) = sqlx::query_as(&format!(
        "select payload from outbox_events where order_id = {} and event_type = 'order.delivered'",
        orders[0]
    ))
    .fetch_one(app.state.db.read())
    .await
    .unwrap();
    let event: Value = serde_json::from_str(&payload.0).unwrap();
    assert_eq!(event["data"], read);
    app.check_invariants().await;
}
