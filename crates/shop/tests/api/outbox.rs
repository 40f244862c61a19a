use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

use rstest::rstest;

use crate::helpers::{Backend, TestApp, assert_each_order_in_order, spawn_app, spawn_app_with};

/// Pays every order, cancels every third one (paid) and every fourth pending one.
async fn order_traffic(app: &TestApp, n: usize) -> (usize, usize) {
    let user = app.user_with_balance("kim", 10_000_000).await;
    let p = app.create_product("p", 1_000, 10_000).await;
    let (mut paid, mut cancelled) = (0, 0);
    for i in 0..n {
        let (s, o) = app
            .order(user, &[(p, 1 + i as i64 % 3)], None, i % 4 != 0)
            .await;
        assert_eq!(s, reqwest::StatusCode::CREATED, "{o}");
        let id = o["id"].as_i64().unwrap();
        if i % 4 != 0 {
            paid += 1;
        }
        if i % 3 == 0 {
            let (s, _) = app.cancel(id).await;
            assert_eq!(s, reqwest::StatusCode::OK);
            cancelled += 1;
        }
    }
    (paid, cancelled)
}

/// Checks a stream of event documents: ids unique, every order's events in the order
/// they happened, data as the order looked then.
fn check_events(events: &[Value]) {
    let mut ids = HashSet::new();
    let mut per_order: HashMap<i64, Vec<&str>> = HashMap::new();
    for e in events {
        assert!(
            ids.insert(e["id"].as_str().unwrap().to_string()),
            "duplicate id {}",
            e["id"]
        );
        assert!(e["occurredAt"].is_string());
        let kind = e["type"].as_str().unwrap();
        let status = e["data"]["status"].as_str().unwrap();
        match kind {
            "order.paid" => assert_eq!(status, "PAID"),
            "order.cancelled" => assert_eq!(status, "CANCELLED"),
            other => panic!("unknown type {other}"),
        }
        per_order
            .entry(e["data"]["id"].as_i64().unwrap())
            .or_default()
            .push(kind);
    }
    assert_each_order_in_order(per_order);
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn without_a_webhook_events_go_to_a_json_lines_file_beside_the_database(
    #[case] backend: Backend,
) {
    let app = spawn_app(backend).await;
    let (paid, cancelled) = order_traffic(&app, 24).await;
    let total = (paid + cancelled) as i64;
    assert_eq!(
        app.scalar("select count(*) from outbox_events").await,
        total
    );
    app.wait_for(
        "select count(*) from outbox_events where delivered_at is null",
        0,
    )
    .await;
    let text = std::fs::read_to_string(app.dir.path().join("shop.events.jsonl")).unwrap();
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len() as i64, total);
    check_events(&events);
    // the data is the order as GET answers it (for an order whose state has not moved since)
    let last = events.last().unwrap();
    let (_, now) = app
        .get(&format!("/api/v1/orders/{}", last["data"]["id"]))
        .await;
    assert_eq!(last["data"], now);
    app.check_invariants().await;
}

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
    /// Answer 503 to this many requests first.
    fail_first: Arc<AtomicUsize>,
    always_fail: Arc<std::sync::atomic::AtomicBool>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    if r.always_fail.load(Ordering::SeqCst) {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    if r.fail_first.load(Ordering::SeqCst) > 0 {
        r.fail_first.fetch_sub(1, Ordering::SeqCst);
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    r.got.lock().unwrap().push((headers, body));
    StatusCode::NO_CONTENT
}

async fn spawn_receiver(r: Receiver) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/events", axum::routing::post(receive))
        .with_state(r);
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/events")
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn webhook_gets_signed_events_retried_until_they_succeed(#[case] backend: Backend) {
    let receiver = Receiver {
        fail_first: Arc::new(AtomicUsize::new(2)),
        ..Receiver::default()
    };
    let url = spawn_receiver(receiver.clone()).await;
    let app = spawn_app_with(backend, |c| {
        c.data_platform_url = Some(url);
        c.data_platform_secret = Some(shop::config::Secret("s3cret".into()));
    })
    .await;
    let (paid, cancelled) = order_traffic(&app, 9).await;
    let total = paid + cancelled;
    // the first two deliveries fail: retried with backoff (1 s, then 2 s at most)
    for _ in 0..300 {
        if receiver.got.lock().unwrap().len() >= total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.wait_for(
        "select count(*) from outbox_events where delivered_at is null",
        0,
    )
    .await;
    let got = receiver.got.lock().unwrap().clone();
    assert_eq!(
        got.len(),
        total,
        "each event delivered once when the receiver acknowledges"
    );
    let mut events = Vec::new();
    for (headers, body) in &got {
        let event: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(
            headers["shop-event-id"].to_str().unwrap(),
            event["id"].as_str().unwrap()
        );
        let ts: i64 = headers["shop-timestamp"].to_str().unwrap().parse().unwrap();
        let expected =
            shop::outbox::sink::signature("s3cret", ts, std::str::from_utf8(body).unwrap());
        assert_eq!(headers["shop-signature"].to_str().unwrap(), expected);
        assert_eq!(headers["content-type"], "application/json");
        events.push(event);
    }
    check_events(&events);
    assert!(
        app.scalar("select count(*) from outbox_events where attempts > 1")
            .await
            >= 1
    );
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn a_failing_receiver_never_fails_a_payment(#[case] backend: Backend) {
    let url = spawn_receiver(Receiver {
        always_fail: Arc::new(true.into()),
        ..Receiver::default()
    })
    .await;
    let app = spawn_app_with(backend, |c| c.data_platform_url = Some(url)).await;
    let (paid, cancelled) = order_traffic(&app, 8).await;
    assert_eq!(
        app.scalar("select count(*) from orders where paid_at is not null")
            .await,
        paid as i64
    );
    app.wait_for("select count(*) from outbox_events where attempts > 0 and last_error is not null and delivered_at is null", (paid + cancelled) as i64 - cancelled_first_blocked(&app).await).await;
    assert_eq!(
        app.scalar("select count(*) from outbox_events where delivered_at is not null")
            .await,
        0
    );
    app.check_invariants().await;
}

/// Events that wait behind an earlier undelivered event of the same order are not
/// attempted yet (order per order is kept): that many have no attempts.
async fn cancelled_first_blocked(app: &TestApp) -> i64 {
    app.scalar(
        "select count(*) from outbox_events e where exists (select 1 from outbox_events f
           where f.order_id = e.order_id and f.seq < e.seq)",
    )
    .await
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn events_that_keep_failing_are_parked_until_an_admin_retries_them(#[case] backend: Backend) {
    let receiver = Receiver {
        always_fail: Arc::new(true.into()),
        ..Receiver::default()
    };
    let url = spawn_receiver(receiver.clone()).await;
    let app = spawn_app_with(backend, |c| {
        c.data_platform_url = Some(url);
        c.outbox_max_attempts = 2;
        c.outbox_max_backoff_ms = 40;
    })
    .await;
    let user = app.user_with_balance("kim", 100_000).await;
    let p = app.create_product("p", 1_000, 10).await;
    let (_, order) = app.order(user, &[(p, 1)], None, true).await;
    let order = order["id"].as_i64().unwrap();
    app.wait_for(
        "select count(*) from outbox_events where parked_at is not null",
        1,
    )
    .await;
    // The order's later event must not overtake the parked one.
    let (s, _) = app.cancel(order).await;
    assert_eq!(s, reqwest::StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        app.scalar("select count(*) from outbox_events where attempts > 0")
            .await,
        1
    );

    let (s, failed) = app.get("/api/v1/admin/events?status=failed").await;
    assert_eq!(s, reqwest::StatusCode::OK);
    let items = failed["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["type"], "order.paid");
    assert_eq!(items[0]["status"], "FAILED");
    assert_eq!(items[0]["orderId"], order);
    assert_eq!(items[0]["attempts"], 2);
    assert!(
        items[0]["lastError"].as_str().unwrap().contains("500"),
        "{}",
        items[0]
    );
    let (_, all) = app.get("/api/v1/admin/events").await;
    assert_eq!(all["items"].as_array().unwrap().len(), 2);
    assert_eq!(all["items"][1]["status"], "PENDING");

    let (s, e) = app
        .post_empty(&format!(
            "/api/v1/admin/events/{}/retry",
            uuid::Uuid::now_v7()
        ))
        .await;
    assert_eq!(
        (s, e["code"].as_str().unwrap()),
        (reqwest::StatusCode::NOT_FOUND, "EVENT_NOT_FOUND")
    );
    let (s, e) = app
        .post_empty("/api/v1/admin/events/not-a-uuid/retry")
        .await;
    assert_eq!(
        (s, e["code"].as_str().unwrap()),
        (reqwest::StatusCode::BAD_REQUEST, "INVALID_REQUEST")
    );
    let (s, e) = app.get("/api/v1/admin/events?status=lost").await;
    assert_eq!(
        (s, e["code"].as_str().unwrap()),
        (reqwest::StatusCode::BAD_REQUEST, "INVALID_REQUEST")
    );

    // The receiver recovers; an admin retries the parked event; both go, in order.
    receiver.always_fail.store(false, Ordering::SeqCst);
    let id = items[0]["id"].as_str().unwrap();
    let (s, r) = app
        .post_empty(&format!("/api/v1/admin/events/{id}/retry"))
        .await;
    assert_eq!(
        (s, r["retried"].as_u64()),
        (reqwest::StatusCode::OK, Some(1))
    );
    app.wait_for(
        "select count(*) from outbox_events where delivered_at is null",
        0,
    )
    .await;
    let got = receiver.got.lock().unwrap().clone();
    let kinds: Vec<String> = got
        .iter()
        .map(|(_, body)| {
            serde_json::from_slice::<Value>(body).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(kinds, ["order.paid", "order.cancelled"]);

    // retry-all puts every parked event back in line
    receiver.always_fail.store(true, Ordering::SeqCst);
    app.order(user, &[(p, 1)], None, true).await;
    app.order(user, &[(p, 1)], None, true).await;
    app.wait_for(
        "select count(*) from outbox_events where parked_at is not null",
        2,
    )
    .await;
    receiver.always_fail.store(false, Ordering::SeqCst);
    let (s, r) = app.post_empty("/api/v1/admin/events/retry").await;
    assert_eq!(
        (s, r["retried"].as_u64()),
        (reqwest::StatusCode::OK, Some(2))
    );
    app.wait_for(
        "select count(*) from outbox_events where delivered_at is null",
        0,
    )
    .await;
    assert_eq!(receiver.got.lock().unwrap().len(), 4);
}
