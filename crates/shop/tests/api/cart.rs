//! tests: cart
//!
//! A user's cart at current prices, its checkout through the write path (all or
//! nothing, the ordered lines removed in the same commit), and checkout races.

use std::sync::Arc;

use reqwest::StatusCode;
use rstest::rstest;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, race, spawn_app};

fn cart(user: i64) -> String {
    format!("/api/v1/users/{user}/cart")
}

fn line(user: i64, variant: i64) -> String {
    format!("/api/v1/users/{user}/cart/items/{variant}")
}

/// A product of two colours (red 10,000 won, blue 12,000 won, `stock` each).
async fn two_colour_product(app: &TestApp, stock: i64) -> (i64, i64, i64) {
    let (s, p) = app
        .post(
            "/api/v1/admin/products",
            json!({"name": "hoodie", "images": [{"url": "/static/img/hoodie.svg", "alt": ""}],
                   "options": [{"name": "colour", "values": ["red", "blue"]}],
                   "variants": [{"options": {"colour": "red"}, "price": 10_000, "stock": stock},
                                {"options": {"colour": "blue"}, "price": 12_000, "stock": stock}]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    let variant = |colour: &str| {
        p["variants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["options"]["colour"] == colour)
            .unwrap()["id"]
            .as_i64()
            .unwrap()
    };
    (p["id"].as_i64().unwrap(), variant("red"), variant("blue"))
}

async fn lines(app: &TestApp, user: i64) -> Vec<(i64, i64)> {
    let (s, c) = app.get(&cart(user)).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    c["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["variantId"].as_i64().unwrap(),
                i["quantity"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn a_cart_holds_lines_at_current_prices_and_no_stock(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let (product, red, blue) = two_colour_product(&app, 5).await;
    let user = app.create_user("kim").await;

    let (s, c) = app.get(&cart(user)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        c,
        json!({"userId": user, "items": [], "totalAmount": 0, "updatedAt": null})
    );

    let (s, c) = app.put(&line(user, red), json!({"quantity": 2})).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    let (s, c) = app.put(&line(user, blue), json!({"quantity": 1})).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(
        c["items"][0],
        json!({"productId": product, "variantId": red, "name": "hoodie",
               "options": {"colour": "red"}, "image": "/static/img/hoodie.svg",
               "unitPrice": 10_000, "quantity": 2, "amount": 20_000, "available": true})
    );
    assert_eq!(c["totalAmount"], 32_000);
    assert!(c["updatedAt"].is_string());
    assert_eq!(app.stock(product).await, 10, "a cart holds no stock");

    // Setting a line again sets its quantity (it does not add a second line).
    let (s, c) = app.put(&line(user, red), json!({"quantity": 3})).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(lines(&app, user).await, [(red, 3), (blue, 1)]);

    // Current prices and availability.
    app.patch(
        &format!("/api/v1/admin/variants/{red}"),
        json!({"price": 9_000}),
    )
    .await;
    let (_, c) = app.get(&cart(user)).await;
    assert_eq!(c["items"][0]["unitPrice"], 9_000);
    assert_eq!(c["totalAmount"], 27_000 + 12_000);
    app.put(&line(user, red), json!({"quantity": 6})).await;
    let (_, c) = app.get(&cart(user)).await;
    assert_eq!(c["items"][0]["available"], false, "6 asked, 5 in stock");
    assert_eq!(c["items"][1]["available"], true);
    app.patch(
        &format!("/api/v1/admin/products/{product}"),
        json!({"status": "INACTIVE"}),
    )
    .await;
    let (_, c) = app.get(&cart(user)).await;
    assert_eq!(c["items"][1]["available"], false, "the product is INACTIVE");
    app.patch(
        &format!("/api/v1/admin/products/{product}"),
        json!({"status": "ACTIVE"}),
    )
    .await;

    let (s, _) = app.delete(&line(user, red)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(lines(&app, user).await, [(blue, 1)]);
    let (s, _) = app.delete(&line(user, red)).await;
    assert_eq!(s, StatusCode::OK, "removing an absent line changes nothing");
    let (s, c) = app.delete(&cart(user)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(c["items"], json!([]));
    assert_eq!(c["totalAmount"], 0);
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn checkout_orders_the_cart_and_pays_it_in_one_commit(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let (product, red, blue) = two_colour_product(&app, 5).await;
    let user = app.user_with_balance("kim", 100_000).await;
    let coupon = app.create_coupon(json!({"discountValue": 2_000})).await;
    let user_coupon = app.issued(coupon, user).await;

    app.put(&line(user, red), json!({"quantity": 2})).await;
    app.put(&line(user, blue), json!({"quantity": 1})).await;
    let (s, o) = app
        .post_with_key(
            &format!("{}/checkout", cart(user)),
            json!({"userCouponId": user_coupon, "pay": true}),
            "checkout-1",
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{o}");
    assert_eq!(o["status"], "PAID");
    assert_eq!(o["totalAmount"], 32_000);
    assert_eq!(o["discountAmount"], 2_000);
    assert_eq!(o["finalAmount"], 30_000);
    let items: Vec<(i64, i64, i64)> = o["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["productId"].as_i64().unwrap(),
                i["variantId"].as_i64().unwrap(),
                i["quantity"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(items, [(product, red, 2), (product, blue, 1)]);
    assert_eq!(app.balance(user).await, 70_000);
    assert_eq!(
        lines(&app, user).await,
        [],
        "the ordered lines left the cart"
    );
    assert_eq!(app.stock(product).await, 7);

    // The key replays the order; a second checkout finds the cart empty.
    let (s, again) = app
        .post_with_key(
            &format!("{}/checkout", cart(user)),
            json!({"userCouponId": user_coupon, "pay": true}),
            "checkout-1",
        )
        .await;
    assert_eq!((s, &again), (StatusCode::CREATED, &o));
    let (s, e) = app
        .post(&format!("{}/checkout", cart(user)), json!({}))
        .await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::CONFLICT, Some("CART_EMPTY"))
    );
    assert_eq!(app.scalar("select count(*) from orders").await, 1);
    app.check_invariants().await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn a_refused_checkout_leaves_the_cart_as_it_was(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let (product, red, blue) = two_colour_product(&app, 5).await;
    let user = app.user_with_balance("kim", 15_000).await;
    app.put(&line(user, red), json!({"quantity": 1})).await;
    app.put(&line(user, blue), json!({"quantity": 6})).await;
    let checkout = format!("{}/checkout", cart(user));

    let (s, e) = app.post(&checkout, json!({"pay": true})).await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::CONFLICT, Some("INSUFFICIENT_STOCK"))
    );
    assert_eq!(lines(&app, user).await, [(red, 1), (blue, 6)]);

    app.put(&line(user, blue), json!({"quantity": 1})).await;
    let (s, e) = app.post(&checkout, json!({"pay": true})).await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::CONFLICT, Some("INSUFFICIENT_BALANCE"))
    );
    assert_eq!(lines(&app, user).await, [(red, 1), (blue, 1)]);

    app.patch(
        &format!("/api/v1/admin/products/{product}"),
        json!({"status": "INACTIVE"}),
    )
    .await;
    let (s, e) = app.post(&checkout, json!({})).await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::CONFLICT, Some("PRODUCT_NOT_AVAILABLE"))
    );
    assert_eq!(lines(&app, user).await, [(red, 1), (blue, 1)]);

    assert_eq!(
        app.scalar("select count(*) from orders where status <> 'PENDING'")
            .await,
        0
    );
    assert_eq!(app.stock(product).await, 10);
    assert_eq!(app.balance(user).await, 15_000);
    app.check_invariants().await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn bad_cart_requests_are_refused_and_change_nothing(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, red, _) = two_colour_product(&app, 5).await;
    let user = app.create_user("kim").await;
    let other = app.create_user("lee").await;
    app.put(&line(user, red), json!({"quantity": 1})).await;
    let state =
        "select count(*) * 1000000 + coalesce(cast(sum(quantity) as bigint), 0) from cart_items";
    let before = app.scalar(state).await;

    let cases: Vec<(String, Value, u16, &str)> = vec![
        (
            line(user, red),
            json!({"quantity": 0}),
            400,
            "INVALID_REQUEST",
        ),
        (
            line(user, red),
            json!({"quantity": 1_001}),
            400,
            "INVALID_REQUEST",
        ),
        (
            line(user, red),
            json!({"quantity": "2"}),
            400,
            "INVALID_REQUEST",
        ),
        (
            line(user, red),
            json!({"quantity": 2, "price": 1}),
            400,
            "INVALID_REQUEST",
        ),
        (line(user, red), json!([2]), 400, "INVALID_REQUEST"),
        (
            line(user, 999_999),
            json!({"quantity": 1}),
            404,
            "VARIANT_NOT_FOUND",
        ),
        (
            format!("/api/v1/users/{user}/cart/items/x"),
            json!({"quantity": 1}),
            400,
            "INVALID_REQUEST",
        ),
    ];
    for (path, body, status, code) in cases {
        let (s, e) = app.put(&path, body.clone()).await;
        assert_eq!(
            (s.as_u16(), e["code"].as_str()),
            (status, Some(code)),
            "PUT {path} {body}: {e}"
        );
        assert_eq!(
            app.scalar(state).await,
            before,
            "PUT {path} {body} changed nothing"
        );
    }
    let (s, e) = app
        .post(
            &format!("{}/checkout", cart(user)),
            json!({"userCouponId": 0}),
        )
        .await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("INVALID_REQUEST"))
    );

    // Another user's cart: 403 for its owner's routes; no token: 401.
    let req = app
        .client
        .put(app.url(&line(other, red)))
        .bearer_auth(app.user_token(user))
        .json(&json!({"quantity": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(req.status(), StatusCode::FORBIDDEN);
    let req = app.client.get(app.url(&cart(user))).send().await.unwrap();
    assert_eq!(req.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.scalar(state).await, before);
    assert_eq!(
        app.scalar("select count(*) from carts").await,
        1,
        "no cart made for lee"
    );

    // 50 lines at most.
    for i in 0..49 {
        let (s, p) = app
            .post(
                "/api/v1/admin/products",
                json!({"name": format!("p{i}"), "price": 100, "stock": 1}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
        let (s, c) = app
            .put(
                &line(user, p["id"].as_i64().unwrap()),
                json!({"quantity": 1}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{c}");
    }
    let p = app.create_product("one too many", 100, 1).await;
    let (s, e) = app.put(&line(user, p), json!({"quantity": 1})).await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::CONFLICT, Some("CART_FULL"))
    );
    assert_eq!(lines(&app, user).await.len(), 50);
    // A line already in a full cart can still change.
    let (s, _) = app.put(&line(user, red), json!({"quantity": 3})).await;
    assert_eq!(s, StatusCode::OK);
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_checkouts_of_one_cart_make_one_order(#[case] backend: Backend) {
    let app = Arc::new(spawn_app(backend).await);
    let (product, red, blue) = two_colour_product(&app, 50).await;
    let mut users = Vec::new();
    for i in 0..10 {
        let user = app.user_with_balance(&format!("u{i}"), 100_000).await;
        app.put(&line(user, red), json!({"quantity": 2})).await;
        app.put(&line(user, blue), json!({"quantity": 1})).await;
        users.push(user);
    }
    let users = Arc::new(users);
    // Each cart checked out twice at once (without keys: two distinct requests).
    let answers = race(20, |i| {
        let (app, users) = (app.clone(), users.clone());
        async move {
            app.post(
                &format!("{}/checkout", cart(users[i / 2])),
                json!({"pay": true}),
            )
            .await
        }
    })
    .await;
    for pair in answers.chunks(2) {
        let mut outcomes: Vec<_> = pair
            .iter()
            .map(|a| (a.0.as_u16(), a.1["code"].as_str().map(String::from)))
            .collect();
        outcomes.sort();
        assert_eq!(
            outcomes,
            [(201, None), (409, Some("CART_EMPTY".into()))],
            "{pair:?}"
        );
    }
    assert_eq!(app.scalar("select count(*) from orders").await, 10);
    assert_eq!(app.scalar("select count(*) from cart_items").await, 0);
    assert_eq!(app.stock(product).await, 100 - 30);
    for &user in users.iter() {
        assert_eq!(app.balance(user).await, 100_000 - 32_000);
    }
    app.check_invariants().await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn checkouts_race_direct_orders_for_one_variant(#[case] backend: Backend) {
    let app = Arc::new(spawn_app(backend).await);
    let (product, red, _) = two_colour_product(&app, 10).await;
    let mut users = Vec::new();
    for i in 0..30 {
        let user = app.user_with_balance(&format!("u{i}"), 10_000).await;
        if i % 2 == 0 {
            app.put(&line(user, red), json!({"quantity": 1})).await;
        }
        users.push(user);
    }
    let users = Arc::new(users);
    let answers = race(30, |i| {
        let (app, users) = (app.clone(), users.clone());
        async move {
            if i % 2 == 0 {
                app.post(
                    &format!("{}/checkout", cart(users[i])),
                    json!({"pay": true}),
                )
                .await
            } else {
                app.post(
                    "/api/v1/orders",
                    json!({"userId": users[i], "pay": true,
                           "items": [{"productId": product, "variantId": red, "quantity": 1}]}),
                )
                .await
            }
        }
    })
    .await;
    let won = answers
        .iter()
        .filter(|a| a.0 == StatusCode::CREATED)
        .count();
    assert_eq!(won, 10, "ten units, ten orders");
    for a in answers.iter().filter(|a| a.0 != StatusCode::CREATED) {
        assert_eq!(a.1["code"], "INSUFFICIENT_STOCK", "{}", a.1);
    }
    assert_eq!(
        app.scalar(&format!("select stock from variants where id = {red}"))
            .await,
        0
    );
    assert_eq!(
        app.scalar("select count(*) from orders where status = 'PAID'")
            .await,
        10
    );
    // A refused checkout kept its cart line; a successful one removed it.
    for (i, a) in answers.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
        let want = if a.0 == StatusCode::CREATED { 0 } else { 1 };
        assert_eq!(lines(&app, users[i]).await.len(), want, "user {i}");
    }
    app.check_invariants().await;
}
