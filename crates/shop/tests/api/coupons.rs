use chrono::{TimeDelta, Utc};
use reqwest::StatusCode;
use serde_json::json;

use rstest::rstest;

use crate::helpers::{Backend, spawn_app};

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn admin_creates_a_coupon_and_users_get_one_each(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let (s, c) = app
        .post(
            "/api/v1/admin/coupons",
            json!({"name": "10% off", "discountType": "RATE", "discountValue": 10, "totalQuantity": 2,
                   "minOrderAmount": 5000}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let id = c["id"].as_i64().unwrap();
    assert_eq!(c["discountType"], "RATE");
    assert_eq!(c["issuedQuantity"], 0);
    assert_eq!(c["minOrderAmount"], 5000);
    assert_eq!(c["validDays"], 30);
    assert_eq!(c["issueStartsAt"], serde_json::Value::Null);

    let kim = app.create_user("kim").await;
    let lee = app.create_user("lee").await;
    let park = app.create_user("park").await;
    let (s, uc) = app.issue(id, kim).await;
    assert_eq!(s, StatusCode::CREATED, "{uc}");
    assert_eq!(uc["couponId"], id);
    assert_eq!(uc["userId"], kim);
    assert_eq!(uc["status"], "AVAILABLE");
    let issued = chrono::DateTime::parse_from_rfc3339(uc["issuedAt"].as_str().unwrap()).unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(uc["expiresAt"].as_str().unwrap()).unwrap();
    assert_eq!(expires - issued, TimeDelta::days(30));

    // (while coupons remain: once sold out, the Redis gate answers COUPON_SOLD_OUT first)
    let (s, e) = app.issue(id, 999_999).await;
    assert_eq!(
        (s, e["code"].as_str().unwrap()),
        (StatusCode::NOT_FOUND, "USER_NOT_FOUND")
    );
    let (s, e) = app.issue(id, kim).await;
    assert_eq!(
        (s, e["code"].as_str().unwrap()),
        (StatusCode::CONFLICT, "COUPON_ALREADY_ISSUED")
    );
    let (s, _) = app.issue(id, lee).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, e) = app.issue(id, park).await;
    assert_eq!(
        (s, e["code"].as_str().unwrap()),
        (StatusCode::CONFLICT, "COUPON_SOLD_OUT")
    );

    let (_, c) = app.get(&format!("/api/v1/coupons/{id}")).await;
    assert_eq!(c["issuedQuantity"], 2);
    assert_eq!(c["totalQuantity"], 2);

    let (s, list) = app.get(&format!("/api/v1/users/{kim}/coupons")).await;
    assert_eq!(s, StatusCode::OK);
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["status"], "AVAILABLE");
    assert_eq!(items[0]["name"], "10% off");
    assert_eq!(items[0]["discountType"], "RATE");
    assert_eq!(items[0]["discountValue"], 10);
    app.check_invariants().await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn issue_window_is_enforced(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.create_user("kim").await;
    let now = Utc::now();
    let later = app
        .create_coupon(
            json!({"issueStartsAt": (now + TimeDelta::hours(1)).to_rfc3339(),
                              "issueEndsAt": (now + TimeDelta::hours(2)).to_rfc3339()}),
        )
        .await;
    let (s, e) = app.issue(later, user).await;
    assert_eq!(
        (s, e["code"].as_str().unwrap()),
        (StatusCode::CONFLICT, "COUPON_NOT_IN_ISSUE_PERIOD")
    );
    app.clock.advance(TimeDelta::minutes(61));
    let (s, _) = app.issue(later, user).await;
    assert_eq!(s, StatusCode::CREATED);

    let closed = app
        .create_coupon(json!({"issueEndsAt": (app_now(&app) + TimeDelta::minutes(1)).to_rfc3339()}))
        .await;
    app.clock.advance(TimeDelta::minutes(2));
    let (s, e) = app.issue(closed, user).await;
    assert_eq!(
        (s, e["code"].as_str().unwrap()),
        (StatusCode::CONFLICT, "COUPON_NOT_IN_ISSUE_PERIOD")
    );
    assert_eq!(
        app.scalar(&format!(
            "select issued_quantity from coupons where id = {closed}"
        ))
        .await,
        0
    );
}

fn app_now(app: &crate::helpers::TestApp) -> chrono::DateTime<Utc> {
    shop::clock::Clock::now(&*app.clock)
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn user_coupon_status_follows_orders_and_expiry(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.user_with_balance("kim", 100_000).await;
    let p = app.create_product("cup", 10_000, 10).await;
    let coupon = app.create_coupon(json!({"validDays": 1})).await;
    let uc = app.issued(coupon, user).await;
    let (s, order) = app.order(user, &[(p, 1)], Some(uc), false).await;
    assert_eq!(s, StatusCode::CREATED, "{order}");
    assert_eq!(
        coupon_status(&app, user).await,
        "USED",
        "held by a PENDING order"
    );
    let (s, _) = app.cancel(order["id"].as_i64().unwrap()).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        coupon_status(&app, user).await,
        "AVAILABLE",
        "released by the cancel"
    );
    app.clock
        .advance(TimeDelta::days(1) + TimeDelta::seconds(1));
    assert_eq!(coupon_status(&app, user).await, "EXPIRED");
    let (s, e) = app.order(user, &[(p, 1)], Some(uc), false).await;
    assert_eq!(
        (s, e["code"].as_str().unwrap()),
        (StatusCode::CONFLICT, "COUPON_NOT_USABLE")
    );
    app.check_invariants().await;
}

async fn coupon_status(app: &crate::helpers::TestApp, user: i64) -> String {
    let (_, list) = app.get(&format!("/api/v1/users/{user}/coupons")).await;
    list["items"][0]["status"].as_str().unwrap().to_string()
}
