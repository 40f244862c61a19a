//! tests: catalog
//!
//! Products with content, status, options and variants (stock per variant), search
//! and sort, and races per variant, on both backends.

use std::collections::BTreeMap;
use std::sync::Arc;

use reqwest::StatusCode;
use rstest::rstest;
use serde_json::{Value, json};

use crate::helpers::{Answer, Backend, TestApp, race, spawn_app};

/// A T-shirt in sizes S, M, L and colours white, black: six variants of 10 units,
/// priced 19,000 (S), 21,000 (M), 23,000 (L). Returns the product and its variant
/// ids by "size/colour".
async fn tshirt(app: &TestApp, name: &str) -> (i64, BTreeMap<String, i64>) {
    let mut variants = Vec::new();
    for (size, price) in [("S", 19_000), ("M", 21_000), ("L", 23_000)] {
        for colour in ["white", "black"] {
            variants.push(json!({"options": {"size": size, "colour": colour},
                                 "price": price, "stock": 10,
                                 "sku": format!("TS-{size}-{colour}")}));
        }
    }
    let (s, p) = app
        .post(
            "/api/v1/admin/products",
            json!({"name": name, "description": "Soft cotton.",
                   "images": [{"url": "/static/img/tshirt.svg", "alt": "a T-shirt"}],
                   "options": [{"name": "size", "values": ["S", "M", "L"]},
                               {"name": "colour", "values": ["white", "black"]}],
                   "variants": variants}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    let ids = p["variants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                format!(
                    "{}/{}",
                    v["options"]["size"].as_str().unwrap(),
                    v["options"]["colour"].as_str().unwrap()
                ),
                v["id"].as_i64().unwrap(),
            )
        })
        .collect();
    (p["id"].as_i64().unwrap(), ids)
}

async fn variant_stock(app: &TestApp, variant: i64) -> i64 {
    app.scalar(&format!("select stock from variants where id = {variant}"))
        .await
}

async fn order_variant(
    app: &TestApp,
    user: i64,
    product: i64,
    variant: i64,
    quantity: i64,
    pay: bool,
) -> Answer {
    app.post(
        "/api/v1/orders",
        json!({"userId": user, "pay": pay,
               "items": [{"productId": product, "variantId": variant, "quantity": quantity}]}),
    )
    .await
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn a_product_with_options_is_sold_per_variant(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let (product, v) = tshirt(&app, "Classic T-shirt").await;

    let (s, p) = app.get(&format!("/api/v1/products/{product}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(p["price"], 19_000, "the lowest variant price");
    assert_eq!(p["stock"], 60, "the sum of the variants' stock");
    assert_eq!(p["description"], "Soft cotton.");
    assert_eq!(p["status"], "ACTIVE");
    assert_eq!(p["images"][0]["url"], "/static/img/tshirt.svg");
    assert_eq!(
        p["options"][0],
        json!({"name": "size", "values": ["S", "M", "L"]})
    );
    assert_eq!(p["variants"].as_array().unwrap().len(), 6);

    let user = app.user_with_balance("kim", 100_000).await;
    let (s, o) = order_variant(&app, user, product, v["M/black"], 2, true).await;
    assert_eq!(s, StatusCode::CREATED, "{o}");
    assert_eq!(o["status"], "PAID");
    assert_eq!(
        o["items"][0],
        json!({"productId": product, "variantId": v["M/black"], "name": "Classic T-shirt",
               "options": {"size": "M", "colour": "black"}, "unitPrice": 21_000,
               "quantity": 2, "amount": 42_000})
    );
    assert_eq!(variant_stock(&app, v["M/black"]).await, 8);
    assert_eq!(
        variant_stock(&app, v["M/white"]).await,
        10,
        "other variants keep theirs"
    );
    assert_eq!(app.stock(product).await, 58);
    assert_eq!(app.balance(user).await, 100_000 - 42_000);

    // Demand is summed per variant: two lines of one variant ask for their sum.
    let (s, e) = app
        .post(
            "/api/v1/orders",
            json!({"userId": user, "items": [
                {"productId": product, "variantId": v["S/white"], "quantity": 6},
                {"productId": product, "variantId": v["S/white"], "quantity": 5}]}),
        )
        .await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::CONFLICT, Some("INSUFFICIENT_STOCK"))
    );

    // A product with several variants needs the variant named; another product's
    // variant is not found.
    let (s, e) = app.order(user, &[(product, 1)], None, false).await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("INVALID_REQUEST"))
    );
    let mug = app.create_product("mug", 9_000, 5).await;
    let (s, e) = order_variant(&app, user, mug, v["S/white"], 1, false).await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("VARIANT_NOT_FOUND"))
    );
    // A one-variant product may leave the variant out, as before.
    let (s, o) = app.order(user, &[(mug, 1)], None, false).await;
    assert_eq!(s, StatusCode::CREATED, "{o}");
    let (_, m) = app.get(&format!("/api/v1/products/{mug}")).await;
    assert_eq!(
        o["items"][0]["variantId"], m["variants"][0]["id"],
        "its default variant"
    );

    // Stock per variant, by the admin; the product route refuses a product of several.
    let (s, p) = app
        .post(
            &format!("/api/v1/admin/variants/{}/stock", v["L/white"]),
            json!({"delta": 5}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(variant_stock(&app, v["L/white"]).await, 15);
    let (s, e) = app
        .post(
            &format!("/api/v1/admin/variants/{}/stock", v["L/white"]),
            json!({"delta": -16}),
        )
        .await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::CONFLICT, Some("STOCK_BELOW_ZERO"))
    );
    let (s, e) = app
        .post(
            &format!("/api/v1/admin/products/{product}/stock"),
            json!({"delta": 1}),
        )
        .await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("INVALID_REQUEST"))
    );

    // A variant's price; the product's price follows the lowest.
    let (s, p) = app
        .patch(
            &format!("/api/v1/admin/variants/{}", v["S/white"]),
            json!({"price": 15_000}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(p["price"], 15_000);
    app.check_invariants().await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn variants_are_added_once_per_combination(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let (s, p) = app
        .post(
            "/api/v1/admin/products",
            json!({"name": "cap", "options": [{"name": "colour", "values": ["red", "blue"]}],
                   "variants": [{"options": {"colour": "red"}, "price": 12_000, "stock": 3}]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    let product = p["id"].as_i64().unwrap();
    let path = format!("/api/v1/admin/products/{product}/variants");
    let (s, p) = app
        .post(
            &path,
            json!({"options": {"colour": "blue"}, "price": 12_500, "stock": 4}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    assert_eq!(p["variants"].as_array().unwrap().len(), 2);
    assert_eq!(p["stock"], 7);
    let (s, e) = app
        .post(
            &path,
            json!({"options": {"colour": "blue"}, "price": 1, "stock": 1}),
        )
        .await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::CONFLICT, Some("VARIANT_EXISTS"))
    );
    assert_eq!(app.scalar("select count(*) from variants").await, 2);
    app.check_invariants().await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn bad_products_and_variants_are_refused_and_change_nothing(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let (product, _) = tshirt(&app, "tee").await;
    let options = json!([{"name": "size", "values": ["S", "M"]}]);
    let cases: Vec<(&str, String, Value, u16, &str)> = vec![
        (
            "unknown option value",
            "/api/v1/admin/products".into(),
            json!({"name": "x", "options": options, "variants": [
             {"options": {"size": "XL"}, "price": 1000, "stock": 1}]}),
            400,
            "INVALID_REQUEST",
        ),
        (
            "a variant missing an option",
            "/api/v1/admin/products".into(),
            json!({"name": "x", "options": [{"name": "size", "values": ["S"]}, {"name": "colour", "values": ["red"]}],
                "variants": [{"options": {"size": "S"}, "price": 1000, "stock": 1}]}),
            400,
            "INVALID_REQUEST",
        ),
        (
            "two variants with the same values",
            "/api/v1/admin/products".into(),
            json!({"name": "x", "options": options, "variants": [
             {"options": {"size": "S"}, "price": 1000, "stock": 1},
             {"options": {"size": "S"}, "price": 2000, "stock": 1}]}),
            409,
            "VARIANT_EXISTS",
        ),
        (
            "options without variants",
            "/api/v1/admin/products".into(),
            json!({"name": "x", "options": options}),
            400,
            "INVALID_REQUEST",
        ),
        (
            "an image that is not a URL",
            "/api/v1/admin/products".into(),
            json!({"name": "x", "price": 1000, "images": [{"url": "javascript:alert(1)", "alt": ""}]}),
            400,
            "INVALID_REQUEST",
        ),
        (
            "a price of 0",
            "/api/v1/admin/products".into(),
            json!({"name": "x", "price": 0, "stock": 1}),
            400,
            "INVALID_REQUEST",
        ),
        (
            "a variant price of 0",
            format!("/api/v1/admin/products/{product}/variants"),
            json!({"options": {"size": "S", "colour": "white"}, "price": 0, "stock": 1}),
            400,
            "INVALID_REQUEST",
        ),
        (
            "a variant of an unknown value",
            format!("/api/v1/admin/products/{product}/variants"),
            json!({"options": {"size": "XXL", "colour": "white"}, "price": 10, "stock": 1}),
            400,
            "INVALID_REQUEST",
        ),
        (
            "an existing combination",
            format!("/api/v1/admin/products/{product}/variants"),
            json!({"options": {"size": "S", "colour": "white"}, "price": 10, "stock": 1}),
            409,
            "VARIANT_EXISTS",
        ),
    ];
    let count = "select count(*) + coalesce(cast(sum(stock) as bigint), 0) from variants";
    let before = (
        app.scalar("select count(*) from products").await,
        app.scalar(count).await,
    );
    for (what, path, body, status, code) in cases {
        let (s, e) = app.post(&path, body).await;
        assert_eq!(
            (s.as_u16(), e["code"].as_str()),
            (status, Some(code)),
            "{what}: {e}"
        );
        let after = (
            app.scalar("select count(*) from products").await,
            app.scalar(count).await,
        );
        assert_eq!(before, after, "{what} changed nothing");
    }
    let (s, e) = app
        .patch(
            &format!("/api/v1/admin/products/{product}"),
            json!({"images": [{"url": "not a url"}]}),
        )
        .await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("INVALID_REQUEST"))
    );
    let (s, e) = app
        .patch(
            &format!("/api/v1/admin/products/{product}"),
            json!({"price": 5}),
        )
        .await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("INVALID_REQUEST")),
        "price of a product of several variants"
    );
}

fn names(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect()
}

/// Every page of `path` (which has a `?`), following the cursors.
async fn all_pages(app: &TestApp, path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{path}&limit=2&cursor={c}"),
            None => format!("{path}&limit=2"),
        };
        let (s, page) = app.get(&url).await;
        assert_eq!(s, StatusCode::OK, "{url}: {page}");
        out.extend(names(&page));
        match page["nextCursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn lists_search_sort_and_hide_inactive_products(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let mut ids = BTreeMap::new();
    for (name, price) in [
        ("Blue Mug", 9_000),
        ("Red mug", 7_000),
        ("Tote bag", 12_000),
        ("mugwort tea", 7_000),
        ("Cap", 15_000),
    ] {
        ids.insert(name, app.create_product(name, price, 3).await);
    }
    // Case-insensitive, anywhere in the name; short queries too; LIKE characters are text.
    assert_eq!(
        all_pages(&app, "/api/v1/products?q=MUG").await,
        ["mugwort tea", "Red mug", "Blue Mug"]
    );
    assert_eq!(
        all_pages(&app, "/api/v1/products?q=ug").await,
        ["mugwort tea", "Red mug", "Blue Mug"]
    );
    assert_eq!(
        all_pages(&app, "/api/v1/products?q=%25").await,
        Vec::<String>::new()
    );
    assert_eq!(
        all_pages(&app, "/api/v1/products?q=_").await,
        Vec::<String>::new()
    );
    assert_eq!(
        all_pages(&app, "/api/v1/products?sort=price_asc").await,
        ["Red mug", "mugwort tea", "Blue Mug", "Tote bag", "Cap"],
        "ties by id"
    );
    assert_eq!(
        all_pages(&app, "/api/v1/products?sort=price_desc").await,
        ["Cap", "Tote bag", "Blue Mug", "mugwort tea", "Red mug"]
    );
    assert_eq!(
        all_pages(&app, "/api/v1/products?sort=newest").await,
        ["Cap", "mugwort tea", "Tote bag", "Red mug", "Blue Mug"]
    );
    let by_name = all_pages(&app, "/api/v1/products?sort=name").await;
    let mut sorted = by_name.clone();
    sorted.sort();
    assert_eq!(by_name, sorted);
    let (s, e) = app.get("/api/v1/products?sort=cheapest").await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("INVALID_REQUEST"))
    );

    // INACTIVE: gone from the public list, shown to the admin, detail still answers,
    // and it cannot be ordered.
    let red = ids["Red mug"];
    let (s, p) = app
        .patch(
            &format!("/api/v1/admin/products/{red}"),
            json!({"status": "INACTIVE"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    assert_eq!(
        all_pages(&app, "/api/v1/products?q=mug").await,
        ["mugwort tea", "Blue Mug"]
    );
    assert_eq!(
        all_pages(&app, "/api/v1/admin/products?status=INACTIVE").await,
        ["Red mug"]
    );
    assert_eq!(
        all_pages(&app, "/api/v1/admin/products?q=mug").await.len(),
        3
    );
    let (s, p) = app.get(&format!("/api/v1/products/{red}")).await;
    assert_eq!(
        (s, p["status"].as_str()),
        (StatusCode::OK, Some("INACTIVE"))
    );
    let user = app.user_with_balance("kim", 50_000).await;
    let (s, e) = app.order(user, &[(red, 1)], None, true).await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::CONFLICT, Some("PRODUCT_NOT_AVAILABLE"))
    );
    assert_eq!(app.scalar("select count(*) from orders").await, 0);
    let (s, p) = app
        .patch(
            &format!("/api/v1/admin/products/{red}"),
            json!({"status": "ACTIVE"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    let (s, o) = app.order(user, &[(red, 1)], None, true).await;
    assert_eq!(s, StatusCode::CREATED, "{o}");
    app.check_invariants().await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_buyers_for_ten_units_of_one_variant_while_another_sells_freely(
    #[case] backend: Backend,
) {
    let app = Arc::new(spawn_app(backend).await);
    let (product, v) = tshirt(&app, "flash tee").await;
    let (scarce, plenty) = (v["M/white"], v["M/black"]);
    app.post(
        &format!("/api/v1/admin/variants/{plenty}/stock"),
        json!({"delta": 90}),
    )
    .await;
    let mut users = Vec::new();
    for i in 0..60 {
        users.push(app.user_with_balance(&format!("buyer{i}"), 21_000).await);
    }
    let users = Arc::new(users);
    let answers = race(60, |i| {
        let (app, users) = (app.clone(), users.clone());
        let variant = if i % 2 == 0 { scarce } else { plenty };
        async move {
            (
                variant,
                order_variant(&app, users[i], product, variant, 1, true).await,
            )
        }
    })
    .await;
    let won = |variant: i64| {
        answers
            .iter()
            .filter(|(v, a)| *v == variant && a.0 == StatusCode::CREATED)
            .count() as i64
    };
    assert_eq!(
        won(scarce),
        10,
        "exactly the ten units of the scarce variant sell"
    );
    assert_eq!(won(plenty), 30, "the other variant sells to every buyer");
    for (variant, (s, e)) in &answers {
        if *variant == scarce && *s != StatusCode::CREATED {
            assert_eq!(e["code"], "INSUFFICIENT_STOCK");
        }
    }
    assert_eq!(variant_stock(&app, scarce).await, 0);
    assert_eq!(variant_stock(&app, plenty).await, 100 - 30);
    assert_eq!(
        app.scalar(&format!("select cast(coalesce(sum(quantity), 0) as bigint) from order_items where variant_id = {scarce}")).await,
        10
    );
    assert_eq!(
        app.scalar("select count(*) from orders where status = 'PAID'")
            .await,
        40
    );
    app.check_invariants().await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_order_is_placed_after_a_product_is_made_inactive(#[case] backend: Backend) {
    let app = Arc::new(spawn_app(backend).await);
    let product = app.create_product("limited", 1_000, 1_000).await;
    let mut users = Vec::new();
    for i in 0..40 {
        users.push(app.user_with_balance(&format!("buyer{i}"), 10_000).await);
    }
    let users = Arc::new(users);
    // Forty orders race the status change; the change is one of the racers.
    let answers = race(41, |i| {
        let (app, users) = (app.clone(), users.clone());
        async move {
            if i == 40 {
                app.patch(
                    &format!("/api/v1/admin/products/{product}"),
                    json!({"status": "INACTIVE"}),
                )
                .await
            } else {
                app.order(users[i], &[(product, 1)], None, true).await
            }
        }
    })
    .await;
    assert_eq!(answers[40].0, StatusCode::OK, "{}", answers[40].1);
    let placed = answers[..40]
        .iter()
        .filter(|a| a.0 == StatusCode::CREATED)
        .count() as i64;
    for a in &answers[..40] {
        assert!(
            a.0 == StatusCode::CREATED || a.1["code"] == "PRODUCT_NOT_AVAILABLE",
            "{} {}",
            a.0,
            a.1
        );
    }
    assert_eq!(app.scalar("select count(*) from orders").await, placed);
    // Once the change has answered, every order is refused.
    for &user in users.iter().take(5) {
        let (s, e) = app.order(user, &[(product, 1)], None, true).await;
        assert_eq!(
            (s, e["code"].as_str()),
            (StatusCode::CONFLICT, Some("PRODUCT_NOT_AVAILABLE"))
        );
    }
    assert_eq!(app.scalar("select count(*) from orders").await, placed);
    app.check_invariants().await;
}
