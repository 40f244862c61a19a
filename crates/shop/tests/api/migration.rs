//! tests: migration
//!
//! A database made by the previous release (migrations 0001..=0004, rows as that
//! release wrote them: products holding their own stock) upgrades in place when the
//! server starts: each product becomes one default variant holding its stock, paid
//! orders get their payment record, ledger entries their balance before, and every
//! invariant holds.

use std::borrow::Cow;

use reqwest::StatusCode;
use rstest::rstest;
use serde_json::json;
use sqlx::migrate::Migrator;

use crate::helpers::{Backend, TestDatabase, spawn_app_with};

/// The schema of the previous release: the migrations up to 0004.
fn previous_release(backend: Backend) -> Migrator {
    let all = match backend {
        Backend::Sqlite => sqlx::migrate!("./migrations/sqlite"),
        Backend::Postgres => sqlx::migrate!("./migrations/postgres"),
    };
    let migrations: Vec<_> = all.iter().filter(|m| m.version <= 4).cloned().collect();
    assert_eq!(migrations.len(), 4);
    let mut old = all;
    old.migrations = Cow::Owned(migrations);
    old
}

const T: i64 = 1_796_000_000_000;

/// Rows as the previous release wrote them: a PAID order with a coupon, a PENDING one.
const ROWS: &[&str] = &[
    "insert into users (id, name, balance, created_at) values (1, 'kim', 7000, 1796000000000), (2, 'lee', 0, 1796000000000)",
    "insert into products (id, name, price, stock, created_at, updated_at) values
        (1, 'pen', 1000, 8, 1796000000000, 1796000000000), (2, 'mug', 5000, 4, 1796000000000, 1796000000000)",
    "insert into stock_adjustments (product_id, delta, created_at) values (1, 10, 1796000000000), (2, 5, 1796000000000)",
    "insert into coupons (id, name, discount_type, discount_value, total_quantity, issued_quantity, valid_days, created_at)
        values (1, 'welcome', 'FIXED', 1000, 10, 1, 30, 1796000000000)",
    "insert into user_coupons (id, coupon_id, user_id, issued_at, expires_at, order_id)
        values (1, 1, 1, 1796000000000, 1798592000000, 1)",
    "insert into orders (id, user_id, status, user_coupon_id, total_amount, discount_amount, final_amount, created_at, expires_at, paid_at)
        values (1, 1, 'PAID', 1, 2000, 1000, 1000, 1796000000000, 1796000600000, 1796000000000)",
    "insert into orders (id, user_id, status, total_amount, discount_amount, final_amount, created_at, expires_at)
        values (2, 1, 'PENDING', 5000, 0, 5000, 1796000000000, 1796000600000)",
    "insert into order_items (order_id, product_id, name, unit_price, quantity, amount) values
        (1, 1, 'pen', 1000, 2, 2000), (2, 2, 'mug', 5000, 1, 5000)",
    "insert into balance_ledger (user_id, kind, amount, balance_after, order_id, created_at) values
        (1, 'CHARGE', 8000, 8000, null, 1796000000000), (1, 'PAYMENT', -1000, 7000, 1, 1796000000000)",
    "insert into outbox_events (id, event_type, order_id, payload, created_at, next_attempt_at, delivered_at)
        values ('0192f000-0000-7000-8000-000000000001', 'order.paid', 1, '{}', 1796000000000, 1796000000000, 1796000000000)",
    "insert into product_sales_hourly (hour, product_id, quantity) values (498888, 1, 2)",
];

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn a_database_of_the_previous_release_upgrades_in_place(#[case] backend: Backend) {
    assert_eq!(T / 3_600_000, 498_888);
    let db = TestDatabase::new(backend).await;
    sqlx::any::install_default_drivers();
    let url = match backend {
        Backend::Sqlite => format!("{}?mode=rwc", db.url),
        Backend::Postgres => db.url.clone(),
    };
    {
        let pool = sqlx::AnyPool::connect(&url).await.expect("connect");
        previous_release(backend)
            .run(&pool)
            .await
            .expect("old migrations");
        for sql in ROWS {
            sqlx::query(sql)
                .execute(&pool)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        pool.close().await;
    }

    let app = spawn_app_with(backend, |c| c.database_url = db.url.clone()).await;
    app.check_invariants().await;

    let (s, pen) = app.get("/api/v1/products/1").await;
    assert_eq!(s, StatusCode::OK, "{pen}");
    assert_eq!(pen["stock"], 8);
    assert_eq!(pen["price"], 1000);
    assert_eq!(pen["status"], "ACTIVE");
    assert_eq!(
        pen["variants"],
        json!([{"id": 1, "sku": null, "options": {}, "price": 1000, "stock": 8, "soldOut": false}])
    );

    let (s, order) = app.get("/api/v1/orders/1").await;
    assert_eq!(s, StatusCode::OK, "{order}");
    assert_eq!(order["status"], "PAID");
    assert_eq!(order["items"][0]["variantId"], 1);
    assert_eq!(order["items"][0]["options"], json!({}));
    let (s, payments) = app.get("/api/v1/orders/1/payments").await;
    assert_eq!(s, StatusCode::OK, "{payments}");
    assert_eq!(payments[0]["status"], "SUCCEEDED");
    assert_eq!(payments[0]["amount"], 1000);
    let (_, history) = app.get("/api/v1/users/1/balance/history").await;
    assert_eq!(history["items"][0]["balanceBefore"], 8000);
    assert_eq!(history["items"][1]["balanceBefore"], 0);
    let (_, popular) = app.get("/api/v1/products/popular?days=3").await;
    assert_eq!(
        popular["items"].as_array().map(Vec::len),
        Some(0),
        "sales of long ago"
    );

    // The upgraded rows work as new ones do: the PENDING order, long past its payment
    // window, is expired and gives its mug back; the pen sells.
    let (s, e) = app.pay(2).await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::CONFLICT, Some("ORDER_NOT_PAYABLE")),
        "{e}"
    );
    app.wait_for(
        "select count(*) from orders where id = 2 and status = 'EXPIRED'",
        1,
    )
    .await;
    assert_eq!(app.stock(2).await, 5);
    app.charge(1, 10_000).await;
    let (s, o) = app.order(1, &[(1, 8)], None, true).await;
    assert_eq!(s, StatusCode::CREATED, "{o}");
    assert_eq!(app.stock(1).await, 0);
    let (s, e) = app.order(2, &[(1, 1)], None, false).await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::CONFLICT, Some("INSUFFICIENT_STOCK"))
    );
    app.check_invariants().await;
}
