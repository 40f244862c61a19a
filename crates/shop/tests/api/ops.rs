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
