use reqwest::StatusCode;
use serde_json::{Value, json};

use rstest::rstest;

use crate::helpers::{Backend, spawn_app};

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn admin_creates_renames_reprices_and_adjusts_stock(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let (s, p) = app
        .post(
            "/api/v1/admin/products",
            json!({"name": "keyboard", "price": 89_000, "stock": 10}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let id = p["id"].as_i64().unwrap();
    let created_at = p["createdAt"].clone();
    let variant = p["variants"][0]["id"].clone();
    assert_eq!(
        p,
        json!({"id": id, "name": "keyboard", "description": "", "status": "ACTIVE",
               "price": 89_000, "stock": 10, "soldOut": false, "images": [], "options": [],
               "variants": [{"id": variant, "sku": null, "options": {}, "price": 89_000,
                             "stock": 10, "soldOut": false}],
               "createdAt": created_at, "updatedAt": created_at}),
        "a product made without options has one default variant holding its price and stock"
    );

    let (s, p) = app
        .patch(
            &format!("/api/v1/admin/products/{id}"),
            json!({"price": 79_000}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(p["price"], 79_000);
    assert_eq!(p["name"], "keyboard");
    let (_, p) = app
        .patch(
            &format!("/api/v1/admin/products/{id}"),
            json!({"name": "clicky keyboard"}),
        )
        .await;
    assert_eq!(p["name"], "clicky keyboard");
    assert_eq!(p["price"], 79_000);

    let (s, p) = app
        .post(
            &format!("/api/v1/admin/products/{id}/stock"),
            json!({"delta": 5}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(p["stock"], 15);
    let (s, p) = app
        .post(
            &format!("/api/v1/admin/products/{id}/stock"),
            json!({"delta": -15}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(p["stock"], 0);
    let (s, e) = app
        .post(
            &format!("/api/v1/admin/products/{id}/stock"),
            json!({"delta": -1}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(e["code"], "STOCK_BELOW_ZERO");
    assert_eq!(app.stock(id).await, 0);

    let (s, got) = app.get(&format!("/api/v1/products/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (
            &got["id"],
            &got["name"],
            &got["price"],
            &got["stock"],
            &got["soldOut"]
        ),
        (
            &json!(id),
            &json!("clicky keyboard"),
            &json!(79_000),
            &json!(0),
            &json!(true)
        )
    );
    assert_eq!(got["variants"][0]["price"], 79_000);
    assert_eq!(got["variants"][0]["stock"], 0);
    app.check_invariants().await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn stock_shown_is_what_can_be_ordered_now(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.user_with_balance("kim", 100_000).await;
    let p = app.create_product("mouse", 1_000, 10).await;
    let (s, _) = app.order(user, &[(p, 3)], None, false).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(app.stock(p).await, 7, "a pending order holds its stock");
    let (s, _) = app.order(user, &[(p, 2)], None, true).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(app.stock(p).await, 5);
    app.check_invariants().await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn product_list_pages_with_an_opaque_cursor(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.push(app.create_product(&format!("p{i}"), 100 * (i + 1), i).await);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            None => "/api/v1/products?limit=3".to_string(),
            Some(c) => format!("/api/v1/products?limit=3&cursor={c}"),
        };
        let (s, page) = app.get(&path).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        pages += 1;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 3);
        seen.extend(items.iter().map(|p| p["id"].as_i64().unwrap()));
        match &page["nextCursor"] {
            Value::Null => break,
            Value::String(c) => cursor = Some(c.clone()),
            other => panic!("nextCursor {other}"),
        }
    }
    assert_eq!(pages, 3);
    // Newest first, by default.
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);

    // default page size is 20
    let (_, page) = app.get("/api/v1/products").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 7);
    assert_eq!(page["nextCursor"], Value::Null);
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn placed_orders_keep_the_price_they_were_placed_at(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.user_with_balance("kim", 100_000).await;
    let p = app.create_product("lamp", 10_000, 5).await;
    let (_, order) = app.order(user, &[(p, 1)], None, false).await;
    let (s, _) = app
        .patch(
            &format!("/api/v1/admin/products/{p}"),
            json!({"price": 20_000}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, paid) = app.pay(order["id"].as_i64().unwrap()).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(paid["finalAmount"], 10_000);
    assert_eq!(app.balance(user).await, 90_000);
}
