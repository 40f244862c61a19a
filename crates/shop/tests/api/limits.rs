//! Limits: per-user and per-client rate limits (429 `RATE_LIMITED` with
//! `Retry-After`) and the in-flight limit (503 `OVERLOADED`). A refused request
//! changes nothing.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, spawn_app, spawn_app_with};

/// Sends `n` charges of 1,000 won for `user` back to back; their statuses, and the
/// first 429's `Retry-After` and body.
async fn charges(
    app: &crate::helpers::TestApp,
    user: i64,
    n: usize,
) -> (Vec<StatusCode>, Option<(String, Value)>) {
    let mut statuses = Vec::new();
    let mut refusal = None;
    for _ in 0..n {
        let res = app
            .client
            .post(app.url(&format!("/api/v1/users/{user}/balance/charge")))
            .bearer_auth(app.user_token(user))
            .json(&json!({"amount": 1000}))
            .send()
            .await
            .unwrap();
        let status = res.status();
        if status == StatusCode::TOO_MANY_REQUESTS && refusal.is_none() {
            let retry = res.headers()["retry-after"].to_str().unwrap().to_string();
            refusal = Some((retry, res.json().await.unwrap()));
        }
        statuses.push(status);
    }
    (statuses, refusal)
}

#[tokio::test]
async fn a_user_over_its_rate_is_refused_with_429_and_nothing_changes() {
    let app = spawn_app_with(Backend::Sqlite, |c| c.rate_limit_per_user = Some(1)).await;
    let (a, b) = (app.create_user("a").await, app.create_user("b").await);
    let (statuses, refusal) = charges(&app, a, 5).await;
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let limited = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(ok + limited, 5, "{statuses:?}");
    assert!(limited >= 1, "{statuses:?}");
    let (retry_after, body) = refusal.unwrap();
    assert!(retry_after.parse::<u64>().unwrap() >= 1);
    assert_eq!(body["code"], "RATE_LIMITED");
    // only the accepted charges were applied
    let balance = app
        .scalar(&format!("select balance from users where id = {a}"))
        .await;
    assert_eq!(balance, 1000 * ok as i64);
    app.check_invariants().await;
    // another user has a budget of its own
    let (statuses, _) = charges(&app, b, 1).await;
    assert_eq!(statuses, [StatusCode::OK]);
}

#[tokio::test]
async fn a_client_over_its_rate_is_refused_with_429() {
    let app = spawn_app_with(Backend::Sqlite, |c| c.rate_limit_per_client = Some(1)).await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let (s, b) = app.get("/api/v1/products").await;
        if s == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(b["code"], "RATE_LIMITED");
        }
        statuses.push(s);
    }
    assert!(statuses.contains(&StatusCode::OK), "{statuses:?}");
    assert!(
        statuses.contains(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn limits_are_off_by_default() {
    let app = spawn_app(Backend::Sqlite).await;
    let user = app.create_user("a").await;
    let (statuses, _) = charges(&app, user, 20).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_in_flight_limit_requests_are_shed_with_503() {
    let app = std::sync::Arc::new(spawn_app_with(Backend::Sqlite, |c| c.max_in_flight = 1).await);
    let user = app.create_user("a").await;
    // Hold the one SQLite writer, so a charge stays in flight.
    let hold = app.state.db.begin().await.unwrap();
    let first = {
        let app = app.clone();
        tokio::spawn(async move { app.charge(user, 1000).await })
    };
    let mut shed = None;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let res = app
            .client
            .get(app.url("/api/v1/products"))
            .send()
            .await
            .unwrap();
        if res.status() == StatusCode::SERVICE_UNAVAILABLE {
            let retry = res.headers()["retry-after"].to_str().unwrap().to_string();
            shed = Some((retry, res.json::<Value>().await.unwrap()));
            break;
        }
    }
    drop(hold);
    let (retry, body) = shed.expect("a request beyond the limit was shed");
    assert_eq!(body["code"], "OVERLOADED");
    assert_eq!(retry, "1");
    let (s, b) = first.await.unwrap();
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(app.balance(user).await, 1000);
}
