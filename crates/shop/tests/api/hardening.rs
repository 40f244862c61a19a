//! Input that looks almost right: bodies that are JSON but not objects, tokens whose
//! id is written another way, names with characters that hide or reorder text. Each
//! is refused and changes nothing.

use reqwest::StatusCode;
use rstest::rstest;
use serde_json::json;

use crate::helpers::{Backend, TestApp, spawn_app};

/// Rows that a refused request must not have touched.
async fn counts(app: &TestApp) -> (i64, i64, i64, i64, i64) {
    (
        app.scalar("select count(*) from users").await,
        app.scalar("select count(*) from orders").await,
        app.scalar("select count(*) from balance_ledger").await,
        app.scalar("select cast(coalesce(sum(balance), 0) as bigint) from users")
            .await,
        app.scalar("select cast(coalesce(sum(stock), 0) as bigint) from variants")
            .await,
    )
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn bodies_must_be_json_objects(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.user_with_balance("kim", 10_000).await;
    let product = app.create_product("pen", 1_000, 10).await;
    let before = counts(&app).await;
    let charge = format!("/api/v1/users/{user}/balance/charge");
    // serde reads a struct from the sequence of its fields: `[100]` would be a charge
    let order = format!("[{user},[[{product},1]],null,true]");
    for (path, body) in [
        (charge.as_str(), "[100]"),
        (charge.as_str(), " \n [100]"),
        (charge.as_str(), "100"),
        (charge.as_str(), "null"),
        ("/api/v1/orders", order.as_str()),
        ("/api/v1/orders", "\"order\""),
    ] {
        let (s, b) = app.post_raw(path, "application/json", body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path} {body}: {b}");
        assert_eq!(b["code"], "INVALID_REQUEST", "{path} {body}: {b}");
    }
    assert_eq!(counts(&app).await, before, "a refused body changed nothing");
    assert_eq!(app.balance(user).await, 10_000);
    // the same request as an object is served
    let (s, b) = app.charge(user, 100).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    app.check_invariants().await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn a_token_names_its_user_one_way_only(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.user_with_balance("kim", 5_000).await;
    let token = app.user_token(user);
    let (id, sig) = token.split_once('.').unwrap();
    let balance = format!("/api/v1/users/{user}/balance");
    let charge = format!("/api/v1/users/{user}/balance/charge");
    for odd in [format!("+{id}"), format!("0{id}"), format!("00{id}")] {
        let odd_token = format!("{odd}.{sig}");
        let res = app
            .client
            .get(app.url(&balance))
            .bearer_auth(&odd_token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{odd_token}");
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["code"], "UNAUTHENTICATED");
        let res = app
            .client
            .post(app.url(&charge))
            .bearer_auth(&odd_token)
            .json(&json!({"amount": 1000}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{odd_token}");
    }
    assert_eq!(
        app.balance(user).await,
        5_000,
        "no odd token charged anything"
    );
    let res = app
        .client
        .get(app.url(&balance))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn names_that_hide_or_reorder_text_are_refused(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let product = app.create_product("pen", 1_000, 10).await;
    let before = counts(&app).await;
    let coupons = app.scalar("select count(*) from coupons").await;
    for hidden in [
        '\u{202E}', '\u{202A}', '\u{2066}', '\u{2069}', '\u{200E}', '\u{200F}', '\u{061C}',
        '\u{200B}', '\u{200D}', '\u{2060}', '\u{FEFF}', '\u{00AD}',
    ] {
        let name = format!("kim{hidden}gpj.exe");
        let (s, b) = app.post("/api/v1/users", json!({ "name": name })).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "U+{:04X}: {b}", hidden as u32);
        assert_eq!(b["code"], "INVALID_REQUEST");
        let (s, b) = app
            .post(
                "/api/v1/admin/products",
                json!({ "name": name, "price": 1000, "stock": 1 }),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "U+{:04X}: {b}", hidden as u32);
        let (s, b) = app
            .patch(
                &format!("/api/v1/admin/products/{product}"),
                json!({ "name": name }),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "U+{:04X}: {b}", hidden as u32);
        let (s, b) = app
            .post(
                "/api/v1/admin/coupons",
                json!({ "name": name, "discountType": "FIXED", "discountValue": 100, "totalQuantity": 1 }),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "U+{:04X}: {b}", hidden as u32);
    }
    assert_eq!(counts(&app).await, before);
    assert_eq!(app.scalar("select count(*) from coupons").await, coupons);
    let (_, b) = app.get(&format!("/api/v1/products/{product}")).await;
    assert_eq!(b["name"], "pen");
    // names in any script are welcome
    for name in ["김철수", "Zoë", "مرحبا"] {
        let (s, b) = app.post("/api/v1/users", json!({ "name": name })).await;
        assert_eq!(s, StatusCode::CREATED, "{name}: {b}");
        assert_eq!(b["name"], name);
    }
}
