use reqwest::StatusCode;

use rstest::rstest;

use crate::helpers::{Backend, spawn_app};

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn health_endpoints_answer(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let (s, body) = app.get("/health/live").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["status"], "ok");
    let (s, body) = app.get("/health/ready").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["checks"]["database"], "ok");
    let redis = match backend {
        Backend::Sqlite => "off",
        Backend::Postgres => "ok",
    };
    assert_eq!(body["checks"]["redis"], redis, "{body}");
    let sink = &body["checks"]["eventSink"];
    assert_eq!(sink["status"], "ok", "{body}");
    assert_eq!(sink["backlog"], 0, "{body}");
    assert_eq!(sink["oldestUndeliveredAgeSeconds"], 0.0, "{body}");
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn metrics_count_requests_by_route_and_status(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.user_with_balance("kim", 10_000).await;
    let p = app.create_product("p", 100, 10).await;
    app.order(user, &[(p, 1)], None, true).await;
    app.get("/api/v1/products/999999").await;
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // The recorder is process-wide (tests share it), so look for lines, not values.
    for needle in [
        "http_requests_total{method=\"POST\",route=\"/api/v1/orders\",status=\"201\"}",
        "http_requests_total{method=\"GET\",route=\"/api/v1/products/{productId}\",status=\"404\"}",
        "http_request_duration_seconds_bucket{",
        "shop_orders_paid_total",
        "shop_outbox_backlog",
        "shop_outbox_oldest_age_seconds",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn swagger_ui_and_the_openapi_document_are_served(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let res = app.client.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await.unwrap().contains("swagger"));
    let res = app
        .client
        .get(app.url("/docs/swagger-ui.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "assets are served from the binary"
    );
    let (s, doc) = app.get("/api-docs/openapi.json").await;
    assert_eq!(s, StatusCode::OK);
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/api/v1/users", "post"),
        ("/api/v1/users/{userId}/balance", "get"),
        ("/api/v1/users/{userId}/balance/charge", "post"),
        ("/api/v1/users/{userId}/balance/history", "get"),
        ("/api/v1/products", "get"),
        ("/api/v1/products/{productId}", "get"),
        ("/api/v1/products/popular", "get"),
        ("/api/v1/admin/products", "post"),
        ("/api/v1/admin/products/{productId}", "patch"),
        ("/api/v1/admin/products/{productId}/stock", "post"),
        ("/api/v1/admin/coupons", "post"),
        ("/api/v1/coupons/{couponId}", "get"),
        ("/api/v1/coupons/{couponId}/issue", "post"),
        ("/api/v1/users/{userId}/coupons", "get"),
        ("/api/v1/orders", "post"),
        ("/api/v1/orders/{orderId}/payment", "post"),
        ("/api/v1/orders/{orderId}/cancel", "post"),
        ("/api/v1/orders/{orderId}", "get"),
        ("/api/v1/users/{userId}/orders", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing"
        );
    }
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
}

#[tokio::test]
async fn demo_data_seeds_an_empty_embedded_database_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("demo.db").display());
    for _ in 0..2 {
        let mut config = shop::config::Config::defaults();
        config.database_url = url.clone();
        let state = shop::app::AppState::new(config, shop::clock::ManualClock::new())
            .await
            .unwrap();
        let (users,): (i64,) = sqlx::query_as("select count(*) from users")
            .fetch_one(state.db.read())
            .await
            .unwrap();
        let (coupons,): (i64,) = sqlx::query_as("select count(*) from coupons")
            .fetch_one(state.db.read())
            .await
            .unwrap();
        assert_eq!(
            (users, coupons),
            (3, 1),
            "seeded once, not again on restart"
        );
        state.db.close().await;
    }
}

/// The `/metrics` text.
async fn scrape(app: &crate::helpers::TestApp) -> String {
    let res = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.text().await.unwrap()
}

/// Each family's `# TYPE` and whether it has a `# HELP`.
fn families(text: &str) -> Vec<(String, String, bool)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let (name, kind) = l.split_once(' ').unwrap();
            let help = text
                .lines()
                .any(|h| h.starts_with(&format!("# HELP {name} ")));
            (name.to_string(), kind.to_string(), help)
        })
        .collect()
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn every_metric_is_described_and_histograms_are_histograms(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.user_with_balance("kim", 10_000).await;
    let p = app.create_product("p", 100, 10).await;
    let (s, b) = app.order(user, &[(p, 1)], None, true).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let coupon = app.create_coupon(serde_json::json!({})).await;
    app.issued(coupon, user).await;
    let text = scrape(&app).await;
    let families = families(&text);
    for (name, kind, help) in &families {
        assert!(help, "{name} has no # HELP in\n{text}");
        assert_ne!(kind, "summary", "{name} is a summary");
    }
    for (name, kind) in [
        ("http_requests_total", "counter"),
        ("http_request_duration_seconds", "histogram"),
        ("http_requests_in_flight", "gauge"),
        ("http_connections_open", "gauge"),
        ("shop_batch_size", "histogram"),
        ("shop_orders_paid_total", "counter"),
        ("shop_coupons_issued_total", "counter"),
        ("shop_redis_errors_total", "counter"),
        ("shop_outbox_backlog", "gauge"),
        ("shop_outbox_oldest_age_seconds", "gauge"),
        ("shop_outbox_delivered_total", "counter"),
        ("shop_outbox_failures_total", "counter"),
        ("shop_outbox_parked_total", "counter"),
        ("shop_build_info", "gauge"),
        ("shop_db_pool_connections", "gauge"),
        ("shop_db_pool_max_connections", "gauge"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_open_fds", "gauge"),
        ("process_cpu_seconds_total", "counter"),
    ] {
        assert!(
            families.iter().any(|(n, k, _)| n == name && k == kind),
            "no {kind} {name} in\n{text}"
        );
    }
    let backend_label = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    for needle in [
        format!(
            "shop_build_info{{version=\"{}\",backend=\"{backend_label}\"}} 1",
            env!("CARGO_PKG_VERSION")
        ),
        "shop_batch_size_bucket{le=\"1\"}".to_string(),
        "state=\"in_use\"".to_string(),
        "state=\"idle\"".to_string(),
        // the scrape itself is in flight while it renders
        "http_requests_in_flight 1".to_string(),
    ] {
        assert!(text.contains(&needle), "missing {needle} in\n{text}");
    }
}

#[tokio::test]
async fn made_up_methods_and_paths_do_not_grow_the_metrics() {
    let app = spawn_app(Backend::Sqlite).await;
    let send = |method: &str, path: &str| {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        app.client.request(method, app.url(path)).send()
    };
    // one of each kind first, so that their `other` series exist
    for (method, path) in [
        ("BREW", "/coffee"),
        ("BREW", "/api/v1/products"),
        ("GET", "/coffee"),
        ("DELETE", "/coffee"),
    ] {
        send(method, path).await.unwrap();
    }
    scrape(&app).await;
    let before = scrape(&app).await;
    let mut made_up = Vec::new();
    for i in 0..300 {
        let method = format!("X{}{}", fastrand::u64(..), "Q".repeat(i % 50));
        let path = format!("/r{}/{}", fastrand::u64(..), "p".repeat(i % 90));
        let (method, path) = match i % 3 {
            0 => (method, path),
            1 => (method, "/api/v1/products".to_string()),
            _ => ("GET".to_string(), path),
        };
        let res = send(&method, &path).await.unwrap();
        assert!(
            res.status().is_client_error(),
            "{method} {path}: {}",
            res.status()
        );
        made_up.push((method, path));
    }
    let after = scrape(&app).await;
    // The series requests are labelled in (background workers may add series of
    // their own in the meantime, e.g. the first expiry batch's).
    let http = |text: &str| -> String {
        text.lines()
            .filter(|l| l.starts_with("http_"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let grown = http(&after).len() as i64 - http(&before).len() as i64;
    assert!(
        grown.abs() < 1024,
        "the request series of /metrics grew by {grown} bytes:\n{after}"
    );
    assert_eq!(
        before.lines().filter(|l| !l.starts_with('#')).count(),
        after.lines().filter(|l| !l.starts_with('#')).count(),
        "no new series"
    );
    for (method, path) in &made_up {
        if method != "GET" {
            assert!(
                !after.contains(method.as_str()),
                "{method} is in the metrics"
            );
        }
        if let Some(random) = path.strip_prefix("/r") {
            let random = random.split('/').next().unwrap();
            assert!(!after.contains(random), "{path} is in the metrics");
        }
    }
    assert!(after.contains("method=\"other\""), "{after}");
    assert!(after.contains("route=\"other\""), "{after}");
}

#[tokio::test]
async fn a_request_id_comes_back_and_an_odd_one_is_replaced() {
    let app = spawn_app(Backend::Sqlite).await;
    let id_of =
        |res: &reqwest::Response| res.headers()["x-request-id"].to_str().unwrap().to_string();
    let res = app
        .client
        .get(app.url("/api/v1/products"))
        .header("x-request-id", "checkout-7f3a.1")
        .send()
        .await
        .unwrap();
    assert_eq!(id_of(&res), "checkout-7f3a.1");
    for odd in ["has space", "quote\"d", &"a".repeat(200)] {
        let res = app
            .client
            .get(app.url("/api/v1/products"))
            .header("x-request-id", odd)
            .send()
            .await
            .unwrap();
        let id = id_of(&res);
        assert_ne!(id, odd);
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    }
    // a new one for every request without one, on errors too
    let (a, b) = (
        app.client.get(app.url("/nowhere")).send().await.unwrap(),
        app.client
            .get(app.url("/health/live"))
            .send()
            .await
            .unwrap(),
    );
    assert_eq!(a.status(), StatusCode::NOT_FOUND);
    assert_ne!(id_of(&a), id_of(&b));
    assert!(uuid::Uuid::parse_str(&id_of(&a)).is_ok());
}

/// `/health/ready`'s body, once `pred` holds for it (up to 10 s).
async fn ready_when(
    app: &crate::helpers::TestApp,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    for _ in 0..600 {
        let (s, body) = app.get("/health/ready").await;
        assert_eq!(s, StatusCode::OK, "{body}");
        if pred(&body) {
            return body;
        }
        last = body;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("readiness never became as expected; last: {last}");
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn readiness_reports_the_event_sink_and_is_degraded_while_it_is_down(
    #[case] backend: Backend,
) {
    let mut nats = crate::helpers::Nats::start().await;
    let url = nats.url.clone();
    let app = crate::helpers::spawn_app_with(backend, |c| c.nats_url = Some(url)).await;
    let body = ready_when(&app, |b| b["checks"]["eventSink"]["status"] == "ok").await;
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(body["checks"]["eventSink"]["kind"], "nats");
    assert_eq!(body["checks"]["eventSink"]["backlog"], 0);

    nats.stop();
    let body = ready_when(&app, |b| b["status"] == "degraded").await;
    assert_eq!(body["checks"]["eventSink"]["status"], "down", "{body}");
    assert_eq!(body["checks"]["database"], "ok");
    // payments go on; their events wait, and readiness says how many and how long
    let user = app.user_with_balance("kim", 10_000).await;
    let p = app.create_product("p", 100, 10).await;
    let (s, b) = app.order(user, &[(p, 1)], None, true).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    app.clock.advance(chrono::TimeDelta::seconds(90));
    let body = ready_when(&app, |b| b["checks"]["eventSink"]["backlog"] == 1).await;
    let age = body["checks"]["eventSink"]["oldestUndeliveredAgeSeconds"]
        .as_f64()
        .unwrap();
    assert!(age >= 90.0, "{body}");
    assert_eq!(body["status"], "degraded");

    nats.restart().await;
    let body = ready_when(&app, |b| {
        b["status"] == "ok" && b["checks"]["eventSink"]["backlog"] == 0
    })
    .await;
    assert_eq!(body["checks"]["eventSink"]["status"], "ok");
    assert_eq!(nats.stream_messages().await, 1);
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn an_events_file_that_cannot_be_written_makes_readiness_degraded(#[case] backend: Backend) {
    let app = crate::helpers::spawn_app_with(backend, |c| {
        c.events_file = Some(std::path::PathBuf::from(
            "/nonexistent-shop-dir/events.jsonl",
        ));
    })
    .await;
    let body = ready_when(&app, |b| b["checks"]["eventSink"]["kind"] == "file").await;
    assert_eq!(body["status"], "ok", "nothing failed yet: {body}");
    let user = app.user_with_balance("kim", 10_000).await;
    let p = app.create_product("p", 100, 10).await;
    let (s, b) = app.order(user, &[(p, 1)], None, true).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let body = ready_when(&app, |b| b["status"] == "degraded").await;
    assert_eq!(body["checks"]["eventSink"]["status"], "down", "{body}");
    assert_eq!(body["checks"]["eventSink"]["backlog"], 1, "{body}");
    // While the event waits for its next attempt (the relay passes every 20 ms and
    // tries nothing), the sink is still down: readiness says so until an attempt works.
    for _ in 0..10 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let (s, body) = app.get("/health/ready").await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "degraded", "{body}");
        assert_eq!(body["checks"]["eventSink"]["status"], "down", "{body}");
    }
}
