use chrono::TimeDelta;
use reqwest::StatusCode;
use serde_json::{Value, json};

use rstest::rstest;

use crate::helpers::{Backend, TestApp, spawn_app_with};

async fn popular(app: &TestApp, query: &str) -> Vec<(i64, i64)> {
    let (s, body) = app.get(&format!("/api/v1/products/popular{query}")).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, item)| {
            assert_eq!(item["rank"], i as i64 + 1);
            (
                item["productId"].as_i64().unwrap(),
                item["soldQuantity"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn top_five_by_paid_quantity_in_the_last_three_days(#[case] backend: Backend) {
    // no cache: every read sees the database
    let app = spawn_app_with(backend, |c| c.popular_cache_secs = 0).await;
    let user = app.user_with_balance("kim", 10_000_000).await;
    let mut products = Vec::new();
    for i in 0..7 {
        products.push(app.create_product(&format!("p{i}"), 100, 1_000).await);
    }
    assert!(popular(&app, "").await.is_empty());

    // an old sale, 4 days ago, of a lot of p6
    let (s, _) = app.order(user, &[(products[6], 500)], None, true).await;
    assert_eq!(s, StatusCode::CREATED);
    app.clock.advance(TimeDelta::days(4));

    // recent sales: p0 10, p1 7 (+ a pending 100 that does not count), p2 7, p3 3,
    // p4 2, p5 1; a cancelled paid sale of p5 does not count
    for (i, q) in [(0, 4), (1, 7), (2, 7), (3, 3), (4, 2), (5, 1), (0, 6)] {
        let (s, _) = app.order(user, &[(products[i], q)], None, true).await;
        assert_eq!(s, StatusCode::CREATED);
    }
    app.order(user, &[(products[1], 100)], None, false).await;
    let (_, cancelled) = app.order(user, &[(products[5], 50)], None, true).await;
    let (s, _) = app.cancel(cancelled["id"].as_i64().unwrap()).await;
    assert_eq!(s, StatusCode::OK);

    let top = popular(&app, "").await;
    assert_eq!(
        top,
        vec![
            (products[0], 10),
            (products[1], 7),
            (products[2], 7),
            (products[3], 3),
            (products[4], 2)
        ],
        "ties are broken by the lower product id"
    );
    let (_, body) = app.get("/api/v1/products/popular").await;
    assert_eq!(
        body["items"][0],
        json!({"rank": 1, "productId": products[0], "name": "p0", "price": 100, "soldQuantity": 10,
               "salesAmount": 1_000})
    );

    assert_eq!(popular(&app, "?limit=2").await.len(), 2);
    let week = popular(&app, "?days=7&limit=10").await;
    assert_eq!(
        week[0],
        (products[6], 500),
        "the old sale counts in a 7-day window"
    );
    assert_eq!(week.len(), 7);

    // three days later the recent sales fall out of the default window
    app.clock
        .advance(TimeDelta::days(3) + TimeDelta::minutes(1));
    assert!(popular(&app, "").await.is_empty());
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn popular_is_cached_briefly_and_validates_its_query(#[case] backend: Backend) {
    let app = spawn_app_with(backend, |c| c.popular_cache_secs = 10).await;
    let user = app.user_with_balance("kim", 100_000).await;
    let p = app.create_product("p", 100, 100).await;
    assert!(popular(&app, "").await.is_empty());
    app.order(user, &[(p, 1)], None, true).await;
    // served from the cache for up to 10 s: still empty right after the sale...
    assert!(popular(&app, "").await.is_empty());
    // ...while another key is computed fresh
    assert_eq!(popular(&app, "?limit=6").await, vec![(p, 1)]);
    for bad in ["?days=0", "?days=31", "?limit=0", "?limit=101", "?days=x"] {
        let (s, body) = app.get(&format!("/api/v1/products/popular{bad}")).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(body["code"], Value::from("INVALID_REQUEST"));
    }
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn the_window_is_exactly_72_hours_whatever_the_hour(#[case] backend: Backend) {
    let app = spawn_app_with(backend, |c| c.popular_cache_secs = 0).await;
    let user = app.user_with_balance("kim", 1_000_000).await;
    let p = app.create_product("p", 100, 1_000).await;
    let (s, o) = app.order(user, &[(p, 2)], None, true).await;
    assert_eq!(s, StatusCode::CREATED);
    let paid_at = chrono::DateTime::parse_from_rfc3339(o["paidAt"].as_str().unwrap()).unwrap();
    // just inside the window: one second before 72 hours have passed
    let now = shop::clock::Clock::now(&*app.clock);
    app.clock.advance(
        paid_at.with_timezone(&chrono::Utc) + TimeDelta::hours(72) - TimeDelta::seconds(1) - now,
    );
    assert_eq!(popular(&app, "").await, vec![(p, 2)]);
    // and just outside it
    app.clock.advance(TimeDelta::seconds(2));
    assert!(popular(&app, "").await.is_empty());
    assert_eq!(popular(&app, "?days=4").await, vec![(p, 2)]);
}
