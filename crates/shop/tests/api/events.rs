//! Data-platform events through NATS JetStream, received by the reference consumer.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use rstest::rstest;
use tokio_util::sync::CancellationToken;

use crate::helpers::{
    Backend, Nats, TestApp, assert_each_order_in_order, launch_instance, spawn_app_with,
    start_instance,
};

/// The reference consumer, running in this process against its own SQLite file.
pub struct Consumer {
    store: sqlx::AnyPool,
    stop: CancellationToken,
}

impl Consumer {
    pub async fn start(nats: &Nats, dir: &std::path::Path) -> Consumer {
        let config = shop::consumer::ConsumerConfig {
            nats_url: nats.url.clone(),
            database_url: format!("sqlite://{}", dir.join("consumer.db").display()),
            name: "test-platform".into(),
        };
        let store = shop::consumer::open_store(&config.database_url)
            .await
            .unwrap();
        let stop = CancellationToken::new();
        let token = stop.clone();
        tokio::spawn(async move { shop::consumer::run(&config, token).await });
        Consumer { store, stop }
    }

    async fn count(&self) -> i64 {
        let (n,): (i64,) = sqlx::query_as("select count(*) from received_events")
            .fetch_one(&self.store)
            .await
            .unwrap();
        n
    }

    /// (order id, event type) in stream order.
    pub async fn received(&self) -> Vec<(String, i64, String)> {
        sqlx::query_as(
            "select event_id, order_id, event_type from received_events order by stream_seq",
        )
        .fetch_all(&self.store)
        .await
        .unwrap()
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Waits until every outbox event is delivered and the consumer holds them all.
pub async fn wait_until_received(app: &TestApp, consumer: &Consumer, secs: u64) {
    let total = app.scalar("select count(*) from outbox_events").await;
    let undelivered = "select count(*) from outbox_events where delivered_at is null";
    for _ in 0..secs * 20 {
        if app.scalar(undelivered).await == 0 && consumer.count().await == total {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "after {secs} s the consumer has {} of {total} events, {} undelivered",
        consumer.count().await,
        app.scalar(undelivered).await
    );
}

/// Every outbox event arrived once, and each order's events in the order they happened.
async fn check_received(app: &TestApp, consumer: &Consumer, nats: &Nats) {
    let received = consumer.received().await;
    let total = app.scalar("select count(*) from outbox_events").await;
    assert_eq!(received.len() as i64, total);
    let ids: HashSet<&str> = received.iter().map(|(id, _, _)| id.as_str()).collect();
    assert_eq!(ids.len(), received.len(), "an event arrived twice");
    let outbox: Vec<(String,)> = sqlx::query_as("select id from outbox_events")
        .fetch_all(app.state.db.read())
        .await
        .unwrap();
    for (id,) in &outbox {
        assert!(ids.contains(id.as_str()), "event {id} never arrived");
    }
    let mut per_order: HashMap<i64, Vec<&str>> = HashMap::new();
    for (_, order, kind) in &received {
        per_order.entry(*order).or_default().push(kind);
    }
    assert_each_order_in_order(per_order);
    assert_eq!(
        nats.stream_messages().await as i64,
        total,
        "the stream holds each event once"
    );
}

/// Places `n` orders for `user`: pays most, cancels some paid and some pending.
async fn traffic(app: &TestApp, user: i64, product: i64, n: usize) {
    for i in 0..n {
        let (s, o) = app.order(user, &[(product, 1)], None, i % 5 != 0).await;
        assert_eq!(s, StatusCode::CREATED, "{o}");
        if i % 3 == 0 {
            let (s, _) = app.cancel(o["id"].as_i64().unwrap()).await;
            assert_eq!(s, StatusCode::OK);
        }
    }
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_event_reaches_the_consumer_once_in_order(#[case] backend: Backend) {
    let nats = Nats::start().await;
    let url = nats.url.clone();
    let app = spawn_app_with(backend, |c| c.nats_url = Some(url)).await;
    let consumer = Consumer::start(&nats, app.dir.path()).await;
    let user = app.user_with_balance("kim", 1_000_000).await;
    let p = app.create_product("p", 1_000, 1_000).await;
    traffic(&app, user, p, 60).await;
    wait_until_received(&app, &consumer, 30).await;
    check_received(&app, &consumer, &nats).await;
    // subjects are shop.events.<type>
    let client = async_nats::connect(nats.url.as_str()).await.unwrap();
    let jetstream = async_nats::jetstream::new(client);
    let mut stream = jetstream.get_stream("SHOP_EVENTS").await.unwrap();
    let info = stream.info().await.unwrap();
    assert_eq!(info.config.subjects, vec!["shop.events.>".to_string()]);
    let paid = stream
        .get_last_raw_message_by_subject("shop.events.order.paid")
        .await
        .unwrap();
    let event: serde_json::Value = serde_json::from_slice(&paid.payload).unwrap();
    assert_eq!(event["type"], "order.paid");
    let headers = paid.headers;
    assert_eq!(
        headers.get("Nats-Msg-Id").unwrap().as_str(),
        event["id"].as_str().unwrap()
    );
    app.check_invariants().await;
}

/// NATS down for more than a minute during a payment storm: payments keep succeeding;
/// once it is back every event arrives, none lost, none doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_nats_outage_loses_nothing_and_fails_no_payment() {
    let mut nats = Nats::start().await;
    let url = nats.url.clone();
    let app = Arc::new(
        spawn_app_with(Backend::Postgres, |c| {
            c.nats_url = Some(url);
            c.outbox_max_backoff_ms = 2_000;
        })
        .await,
    );
    let consumer = Consumer::start(&nats, app.dir.path()).await;
    let mut users = Vec::new();
    for i in 0..4 {
        users.push(app.user_with_balance(&format!("u{i}"), 100_000_000).await);
    }
    let p = app.create_product("p", 100, 1_000_000).await;
    traffic(&app, users[0], p, 10).await;
    wait_until_received(&app, &consumer, 30).await;

    nats.stop();
    let outage = std::time::Instant::now();
    let storm: Vec<_> = users
        .iter()
        .map(|&user| {
            let app = app.clone();
            tokio::spawn(async move {
                let mut paid = 0;
                while outage.elapsed() < Duration::from_secs(65) {
                    let (s, o) = app.order(user, &[(p, 1)], None, true).await;
                    assert_eq!(
                        s,
                        StatusCode::CREATED,
                        "a payment failed during the outage: {o}"
                    );
                    paid += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                paid
            })
        })
        .collect();
    let mut paid = 0;
    for task in storm {
        paid += task.await.unwrap();
    }
    assert!(paid > 100, "the storm paid {paid} orders");
    let waiting = app
        .scalar("select count(*) from outbox_events where delivered_at is null")
        .await;
    assert_eq!(
        waiting, paid as i64,
        "every event of the outage waits in the outbox"
    );

    nats.restart().await;
    let back = std::time::Instant::now();
    wait_until_received(&app, &consumer, 120).await;
    println!(
        "{paid} events of the outage drained {:?} after NATS came back",
        back.elapsed()
    );
    check_received(&app, &consumer, &nats).await;
    app.check_invariants().await;
}

/// An instance killed between publishing and marking delivered: the next one sends
/// again, and JetStream drops the re-sends by their Nats-Msg-Id.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_between_publish_and_mark_is_absorbed_by_the_dedupe_id() {
    let nats = Nats::start().await;
    // This process's own relay stays idle: the instances below do the relaying.
    let app = spawn_app_with(Backend::Postgres, |c| c.outbox_interval_ms = 3_600_000).await;
    let consumer = Consumer::start(&nats, app.dir.path()).await;
    let user = app.user_with_balance("kim", 1_000_000).await;
    let p = app.create_product("p", 1_000, 1_000).await;
    for _ in 0..10 {
        let (s, _) = app.order(user, &[(p, 1)], None, true).await;
        assert_eq!(s, StatusCode::CREATED);
    }
    // It may die before it would answer a readiness probe.
    let mut crashing = launch_instance(
        &app,
        &[
            ("SHOP_NATS_URL", nats.url.as_str()),
            ("SHOP_FAULT_EXIT_AFTER_PUBLISH", "4"),
        ],
    );
    let status = tokio::task::spawn_blocking(move || {
        let status = crashing.child.wait().unwrap();
        drop(crashing);
        status
    })
    .await
    .unwrap();
    assert_eq!(
        status.code(),
        Some(86),
        "the instance died right after publishing"
    );
    // Each order is in a partition of its own, marked after its publish: three were
    // marked, the fourth was published and then the process died.
    assert_eq!(
        app.scalar("select count(*) from outbox_events where delivered_at is null")
            .await,
        7
    );
    assert_eq!(
        nats.stream_messages().await,
        4,
        "the fourth is in the stream, unmarked"
    );

    let _survivor = start_instance(&app, &[("SHOP_NATS_URL", nats.url.as_str())]).await;
    wait_until_received(&app, &consumer, 30).await;
    check_received(&app, &consumer, &nats).await;
}
