use reqwest::StatusCode;
use serde_json::json;

use rstest::rstest;

use crate::helpers::{Backend, spawn_app};

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn create_user_charge_and_read_history(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let (s, user) = app.post("/api/v1/users", json!({"name": "kim"})).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(user["name"], "kim");
    assert!(user["id"].as_i64().unwrap() > 0);
    assert!(user["createdAt"].as_str().unwrap().ends_with('Z'));
    let id = user["id"].as_i64().unwrap();

    assert_eq!(app.balance(id).await, 0);
    let (s, b) = app.charge(id, 10_000).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b, json!({"userId": id, "balance": 10_000}));
    let (_, b) = app.charge(id, 5_000).await;
    assert_eq!(b["balance"], 15_000);

    let (s, h) = app
        .get(&format!("/api/v1/users/{id}/balance/history"))
        .await;
    assert_eq!(s, StatusCode::OK);
    let items = h["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["type"], "CHARGE");
    assert_eq!(items[0]["amount"], 5_000);
    assert_eq!(items[0]["balanceAfter"], 15_000);
    assert_eq!(items[0]["orderId"], serde_json::Value::Null);
    assert_eq!(items[1]["balanceAfter"], 10_000);
    assert_eq!(h["nextCursor"], serde_json::Value::Null);
    app.check_invariants().await;
}
