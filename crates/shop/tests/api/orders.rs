use chrono::TimeDelta;
use reqwest::StatusCode;
use serde_json::{Value, json};

use rstest::rstest;

use crate::helpers::{Backend, spawn_app};

fn code(b: &Value) -> &str {
    b["code"].as_str().unwrap_or("")
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn place_then_pay_takes_the_final_amount_once(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.user_with_balance("kim", 100_000).await;
    let a = app.create_product("a", 10_000, 10).await;
    let b = app.create_product("b", 2_500, 10).await;
    let coupon = app
        .create_coupon(json!({"discountType": "FIXED", "discountValue": 3000}))
        .await;
    let uc = app.issued(coupon, user).await;

    let (s, order) = app
        .order(user, &[(a, 2), (b, 1), (a, 1)], Some(uc), false)
        .await;
    assert_eq!(s, StatusCode::CREATED, "{order}");
    assert_eq!(order["status"], "PENDING");
    assert_eq!(order["userId"], user);
    assert_eq!(order["items"].as_array().unwrap().len(), 3);
    assert_eq!(
        order["items"][0],
        json!({"productId": a, "variantId": a, "name": "a", "options": {}, "unitPrice": 10_000,
            "quantity": 2, "amount": 20_000})
    );
    assert_eq!(order["totalAmount"], 32_500);
    assert_eq!(order["discountAmount"], 3_000);
    assert_eq!(order["finalAmount"], 29_500);
    assert_eq!(order["userCouponId"], uc);
    assert_eq!(order["paidAt"], Value::Null);
    let created =
        chrono::DateTime::parse_from_rfc3339(order["createdAt"].as_str().unwrap()).unwrap();
    let expires =
        chrono::DateTime::parse_from_rfc3339(order["expiresAt"].as_str().unwrap()).unwrap();
    assert_eq!(expires - created, TimeDelta::minutes(5));
    assert_eq!(app.stock(a).await, 7, "demand for a is summed: 2 + 1");
    assert_eq!(app.stock(b).await, 9);
    assert_eq!(app.balance(user).await, 100_000, "placing does not pay");

    let id = order["id"].as_i64().unwrap();
    let (s, paid) = app.pay(id).await;
    assert_eq!(s, StatusCode::OK, "{paid}");
    assert_eq!(paid["status"], "PAID");
    assert!(paid["paidAt"].is_string());
    assert_eq!(app.balance(user).await, 70_500);
    let (s, e) = app.pay(id).await;
    assert_eq!((s, code(&e)), (StatusCode::CONFLICT, "ORDER_NOT_PAYABLE"));
    assert_eq!(app.balance(user).await, 70_500);

    let (s, got) = app.get(&format!("/api/v1/orders/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(got, paid);
    let (_, history) = app
        .get(&format!("/api/v1/users/{user}/balance/history"))
        .await;
    assert_eq!(history["items"][0]["type"], "PAYMENT");
    assert_eq!(history["items"][0]["amount"], -29_500);
    assert_eq!(history["items"][0]["orderId"], id);
    app.check_invariants().await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn insufficient_stock_holds_nothing(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.user_with_balance("kim", 100_000).await;
    let a = app.create_product("a", 100, 10).await;
    let b = app.create_product("b", 100, 1).await;
    let (s, e) = app.order(user, &[(a, 5), (b, 2)], None, false).await;
    assert_eq!((s, code(&e)), (StatusCode::CONFLICT, "INSUFFICIENT_STOCK"));
    assert_eq!(app.stock(a).await, 10, "no stock is held for any item");
    assert_eq!(app.stock(b).await, 1);
    // the same product twice: 1 + 1 > 1
    let (s, e) = app.order(user, &[(b, 1), (b, 1)], None, false).await;
    assert_eq!((s, code(&e)), (StatusCode::CONFLICT, "INSUFFICIENT_STOCK"));
    let (s, e) = app.order(user, &[(a, 1), (999_999, 1)], None, false).await;
    assert_eq!((s, code(&e)), (StatusCode::NOT_FOUND, "PRODUCT_NOT_FOUND"));
    let (s, e) = app.order(999_999, &[(a, 1)], None, false).await;
    assert_eq!((s, code(&e)), (StatusCode::NOT_FOUND, "USER_NOT_FOUND"));
    assert_eq!(app.scalar("select count(*) from orders").await, 0);
    assert_eq!(app.stock(a).await, 10);
    app.check_invariants().await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn insufficient_balance_leaves_the_order_pending_until_a_charge(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.user_with_balance("kim", 5_000).await;
    let p = app.create_product("p", 8_000, 3).await;
    let (_, order) = app.order(user, &[(p, 1)], None, false).await;
    let id = order["id"].as_i64().unwrap();
    let (s, e) = app.pay(id).await;
    assert_eq!(
        (s, code(&e)),
        (StatusCode::CONFLICT, "INSUFFICIENT_BALANCE")
    );
    let (_, got) = app.get(&format!("/api/v1/orders/{id}")).await;
    assert_eq!(got["status"], "PENDING");
    assert_eq!(app.balance(user).await, 5_000);
    app.charge(user, 3_000).await;
    let (s, _) = app.pay(id).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(app.balance(user).await, 0);
    app.check_invariants().await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn pay_true_is_all_or_nothing(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.user_with_balance("kim", 5_000).await;
    let p = app.create_product("p", 8_000, 3).await;
    let coupon = app.create_coupon(json!({"discountValue": 1000})).await;
    let uc = app.issued(coupon, user).await;
    let (s, e) = app.order(user, &[(p, 1)], Some(uc), true).await;
    assert_eq!(
        (s, code(&e)),
        (StatusCode::CONFLICT, "INSUFFICIENT_BALANCE")
    );
    assert_eq!(
        app.scalar("select count(*) from orders").await,
        0,
        "no order exists"
    );
    assert_eq!(app.stock(p).await, 3, "no stock held");
    assert_eq!(
        app.scalar(&format!(
            "select count(*) from user_coupons where id = {uc} and order_id is null"
        ))
        .await,
        1
    );
    assert_eq!(app.balance(user).await, 5_000);

    app.charge(user, 2_000).await;
    let (s, order) = app.order(user, &[(p, 1)], Some(uc), true).await;
    assert_eq!(s, StatusCode::CREATED, "{order}");
    assert_eq!(order["status"], "PAID");
    assert_eq!(order["finalAmount"], 7_000);
    assert_eq!(app.balance(user).await, 0);
    app.check_invariants().await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn coupon_rules_when_ordering(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let kim = app.user_with_balance("kim", 100_000).await;
    let lee = app.user_with_balance("lee", 100_000).await;
    let p = app.create_product("p", 10_000, 100).await;
    let min = app.create_coupon(json!({"minOrderAmount": 20_000})).await;
    let uc = app.issued(min, kim).await;
    let (s, e) = app.order(kim, &[(p, 1)], Some(uc), false).await;
    assert_eq!(
        (s, code(&e)),
        (StatusCode::CONFLICT, "COUPON_NOT_USABLE"),
        "under the minimum"
    );
    let (s, e) = app.order(lee, &[(p, 2)], Some(uc), false).await;
    assert_eq!(
        (s, code(&e)),
        (StatusCode::CONFLICT, "COUPON_NOT_USABLE"),
        "not the user's"
    );
    let (s, e) = app.order(kim, &[(p, 2)], Some(999_999), false).await;
    assert_eq!(
        (s, code(&e)),
        (StatusCode::CONFLICT, "COUPON_NOT_USABLE"),
        "unknown"
    );
    assert_eq!(app.stock(p).await, 100);
    let (s, o) = app.order(kim, &[(p, 2)], Some(uc), true).await;
    assert_eq!(s, StatusCode::CREATED, "{o}");
    let (s, e) = app.order(kim, &[(p, 2)], Some(uc), false).await;
    assert_eq!(
        (s, code(&e)),
        (StatusCode::CONFLICT, "COUPON_NOT_USABLE"),
        "used"
    );

    // RATE rounds down to the won; FIXED never takes the total below zero
    let cheap = app.create_product("cheap", 999, 100).await;
    let rate = app
        .create_coupon(json!({"discountType": "RATE", "discountValue": 15}))
        .await;
    let uc = app.issued(rate, kim).await;
    let (_, o) = app.order(kim, &[(cheap, 1)], Some(uc), false).await;
    assert_eq!(
        (o["discountAmount"].as_i64(), o["finalAmount"].as_i64()),
        (Some(149), Some(850))
    );
    let big = app.create_coupon(json!({"discountValue": 50_000})).await;
    let uc = app.issued(big, lee).await;
    let (s, o) = app.order(lee, &[(cheap, 2)], Some(uc), true).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(
        (o["discountAmount"].as_i64(), o["finalAmount"].as_i64()),
        (Some(1998), Some(0))
    );
    app.check_invariants().await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn cancelling_releases_or_refunds(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.user_with_balance("kim", 50_000).await;
    let p = app.create_product("p", 10_000, 5).await;
    let coupon = app.create_coupon(json!({"discountValue": 2000})).await;
    let uc = app.issued(coupon, user).await;

    // PENDING → CANCELLED: stock and coupon back
    let (_, o) = app.order(user, &[(p, 2)], Some(uc), false).await;
    let id = o["id"].as_i64().unwrap();
    let (s, c) = app.cancel(id).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(c["status"], "CANCELLED");
    assert_eq!(app.stock(p).await, 5);
    assert_eq!(app.balance(user).await, 50_000);
    let (s, e) = app.cancel(id).await;
    assert_eq!(
        (s, code(&e)),
        (StatusCode::CONFLICT, "ORDER_NOT_CANCELLABLE")
    );
    let (s, e) = app.pay(id).await;
    assert_eq!((s, code(&e)), (StatusCode::CONFLICT, "ORDER_NOT_PAYABLE"));

    // PAID → CANCELLED: refund, restock, coupon back
    let (_, o) = app.order(user, &[(p, 3)], Some(uc), true).await;
    let id = o["id"].as_i64().unwrap();
    assert_eq!(app.balance(user).await, 22_000);
    assert_eq!(app.stock(p).await, 2);
    let (s, c) = app.cancel(id).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(c["status"], "CANCELLED");
    assert_eq!(app.balance(user).await, 50_000);
    assert_eq!(app.stock(p).await, 5);
    let (_, history) = app
        .get(&format!("/api/v1/users/{user}/balance/history"))
        .await;
    assert_eq!(history["items"][0]["type"], "REFUND");
    assert_eq!(history["items"][0]["amount"], 28_000);
    assert_eq!(history["items"][0]["orderId"], id);
    let (_, list) = app.get(&format!("/api/v1/users/{user}/coupons")).await;
    assert_eq!(list["items"][0]["status"], "AVAILABLE");
    let (s, e) = app.cancel(999_999).await;
    assert_eq!((s, code(&e)), (StatusCode::NOT_FOUND, "ORDER_NOT_FOUND"));
    app.check_invariants().await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn pending_orders_expire_after_the_ttl_and_release_what_they_hold(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.user_with_balance("kim", 50_000).await;
    let p = app.create_product("p", 1_000, 5).await;
    let coupon = app.create_coupon(json!({"discountValue": 100})).await;
    let uc = app.issued(coupon, user).await;
    let (_, o) = app.order(user, &[(p, 4)], Some(uc), false).await;
    let id = o["id"].as_i64().unwrap();
    let (_, paid) = app.order(user, &[(p, 1)], None, true).await;
    assert_eq!(app.stock(p).await, 0);

    app.clock.advance(TimeDelta::minutes(4));
    assert_eq!(app.expire_now().await, 0, "not yet due");
    app.clock
        .advance(TimeDelta::minutes(1) + TimeDelta::seconds(1));
    // the background worker (on the same clock) does it; wait for it
    app.wait_for(
        &format!("select count(*) from orders where id = {id} and status = 'EXPIRED'"),
        1,
    )
    .await;
    let (_, got) = app.get(&format!("/api/v1/orders/{id}")).await;
    assert_eq!(got["status"], "EXPIRED");
    assert_eq!(app.stock(p).await, 4, "stock released");
    let (_, list) = app.get(&format!("/api/v1/users/{user}/coupons")).await;
    assert_eq!(list["items"][0]["status"], "AVAILABLE", "coupon released");
    let (s, e) = app.pay(id).await;
    assert_eq!((s, code(&e)), (StatusCode::CONFLICT, "ORDER_NOT_PAYABLE"));
    let (s, e) = app.cancel(id).await;
    assert_eq!(
        (s, code(&e)),
        (StatusCode::CONFLICT, "ORDER_NOT_CANCELLABLE")
    );
    let (_, still) = app.get(&format!("/api/v1/orders/{}", paid["id"])).await;
    assert_eq!(still["status"], "PAID", "paid orders never expire");
    assert_eq!(app.balance(user).await, 49_000);
    app.check_invariants().await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn the_order_ttl_is_configurable(#[case] backend: Backend) {
    let app = crate::helpers::spawn_app_with(backend, |c| c.order_ttl_secs = 30).await;
    let user = app.user_with_balance("kim", 50_000).await;
    let p = app.create_product("p", 1_000, 5).await;
    let (_, o) = app.order(user, &[(p, 1)], None, false).await;
    let id = o["id"].as_i64().unwrap();
    app.clock.advance(TimeDelta::seconds(31));
    app.wait_for(
        &format!("select count(*) from orders where id = {id} and status = 'EXPIRED'"),
        1,
    )
    .await;
    assert_eq!(app.stock(p).await, 5);
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn a_users_orders_newest_first_with_paging(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.user_with_balance("kim", 50_000).await;
    let other = app.user_with_balance("lee", 50_000).await;
    let p = app.create_product("p", 100, 50).await;
    let mut ids = Vec::new();
    for q in 1..=5 {
        let (_, o) = app.order(user, &[(p, q)], None, q % 2 == 0).await;
        ids.push(o["id"].as_i64().unwrap());
        app.order(other, &[(p, 1)], None, false).await;
    }
    ids.reverse();
    let (s, page1) = app
        .get(&format!("/api/v1/users/{user}/orders?limit=3"))
        .await;
    assert_eq!(s, StatusCode::OK);
    let got: Vec<i64> = page1["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_i64().unwrap())
        .collect();
    assert_eq!(got, ids[..3]);
    assert_eq!(
        page1["items"][0]["items"][0]["quantity"], 5,
        "orders come with their items"
    );
    let cursor = page1["nextCursor"].as_str().unwrap();
    let (_, page2) = app
        .get(&format!(
            "/api/v1/users/{user}/orders?limit=3&cursor={cursor}"
        ))
        .await;
    let got: Vec<i64> = page2["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_i64().unwrap())
        .collect();
    assert_eq!(got, ids[3..]);
    assert_eq!(page2["nextCursor"], Value::Null);
    let (s, e) = app.get("/api/v1/users/999999/orders").await;
    assert_eq!((s, code(&e)), (StatusCode::NOT_FOUND, "USER_NOT_FOUND"));
}
