//! Bad input: every refused request answers the contract's error shape
//! `{"code", "message"}` with the exact status and code, and changes nothing in the
//! database. No input, however odd, may produce a 5xx.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use rstest::rstest;

use crate::helpers::{Backend, TestApp, spawn_app};

/// The default body limit (`SHOP_MAX_BODY_BYTES`).
const LIMIT: usize = 64 * 1024;

/// An id that no fresh database holds.
const UNKNOWN: i64 = 999_999;

/// What a request answered: status, JSON body (`Null` when not JSON) and raw text.
struct Reply {
    status: StatusCode,
    body: Value,
    text: String,
}

/// Sends `body` with `method` to `path`, with the given content type (none when
/// `None`).
async fn send(
    app: &TestApp,
    method: &Method,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Reply {
    let body = (!body.is_empty() || content_type.is_some()).then_some(body);
    let mut req = app.request(method.clone(), path, body).await;
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let res = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = res.status();
    let bytes = res.bytes().await.expect("body");
    Reply {
        status,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        text: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// Whether `body` is exactly the error shape: `code` and `message`, both strings.
fn is_error_shape(body: &Value) -> bool {
    body.as_object().is_some_and(|o| {
        o.len() == 2
            && o.get("code").is_some_and(Value::is_string)
            && o.get("message").is_some_and(Value::is_string)
    })
}

// ---- the database before and after ----

const SNAPSHOT: &[&str] = &[
    "select count(*) from users",
    "select coalesce(cast(sum(balance) as bigint), 0) from users",
    "select coalesce(cast(sum(length(name)) as bigint), 0) from users",
    "select count(*) from balance_ledger",
    "select coalesce(cast(sum(amount) as bigint), 0) from balance_ledger",
    "select count(*) from products",
    "select coalesce(cast(sum(stock) as bigint), 0) from variants",
    "select coalesce(cast(sum(price) as bigint), 0) from products",
    "select coalesce(cast(sum(length(name)) as bigint), 0) from products",
    "select coalesce(cast(max(updated_at) as bigint), 0) from products",
    "select count(*) from stock_adjustments",
    "select count(*) from coupons",
    "select coalesce(cast(sum(issued_quantity) as bigint), 0) from coupons",
    "select count(*) from user_coupons",
    "select count(*) from user_coupons where order_id is not null",
    "select count(*) from orders",
    "select count(*) from orders where status = 'PENDING'",
    "select count(*) from orders where status = 'PAID'",
    "select count(*) from orders where status = 'CANCELLED'",
    "select count(*) from orders where status = 'EXPIRED'",
    "select count(*) from order_items",
    "select count(*) from outbox_events",
    "select count(*) from idempotency_keys",
];

async fn snapshot(app: &TestApp) -> Vec<(&'static str, i64)> {
    let mut out = Vec::with_capacity(SNAPSHOT.len());
    for sql in SNAPSHOT {
        out.push((*sql, app.scalar(sql).await));
    }
    out
}

fn diff(before: &[(&str, i64)], after: &[(&str, i64)]) -> Vec<String> {
    before
        .iter()
        .zip(after)
        .filter(|(b, a)| b.1 != a.1)
        .map(|(b, a)| format!("`{}`: {} -> {}", b.0, b.1, a.1))
        .collect()
}

// ---- the table ----

/// One refused request and what it must answer.
struct Case {
    method: Method,
    path: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
}

const JSON: Option<&str> = Some("application/json");

fn post(
    path: impl Into<String>,
    body: impl Into<Vec<u8>>,
    status: u16,
    code: &'static str,
) -> Case {
    Case {
        method: Method::POST,
        path: path.into(),
        content_type: JSON,
        body: body.into(),
        status,
        code,
    }
}

fn patch(
    path: impl Into<String>,
    body: impl Into<Vec<u8>>,
    status: u16,
    code: &'static str,
) -> Case {
    Case {
        method: Method::PATCH,
        ..post(path, body, status, code)
    }
}

fn get(path: impl Into<String>, status: u16, code: &'static str) -> Case {
    Case {
        method: Method::GET,
        path: path.into(),
        content_type: None,
        body: Vec::new(),
        status,
        code,
    }
}

fn raw(
    method: Method,
    path: impl Into<String>,
    content_type: Option<&'static str>,
    body: impl Into<Vec<u8>>,
    status: u16,
    code: &'static str,
) -> Case {
    Case {
        method,
        path: path.into(),
        content_type,
        body: body.into(),
        status,
        code,
    }
}

const BAD: &str = "INVALID_REQUEST";

/// Sends every case; each must answer its status, the error shape and its code, and
/// leave the database as it was. Reports every failing case at once.
async fn run(app: &TestApp, cases: Vec<Case>) {
    let mut failures = Vec::new();
    for case in &cases {
        let before = snapshot(app).await;
        let reply = send(
            app,
            &case.method,
            &case.path,
            case.content_type,
            case.body.clone(),
        )
        .await;
        let after = snapshot(app).await;
        let shown_body = String::from_utf8_lossy(&case.body);
        let shown_body: String = shown_body.chars().take(160).collect();
        let what = format!(
            "{} {} [{}] {shown_body:?}",
            case.method,
            case.path,
            case.content_type.unwrap_or("no content type")
        );
        if reply.status.as_u16() != case.status {
            failures.push(format!(
                "{what}: status {} (want {}), body {}",
                reply.status.as_u16(),
                case.status,
                reply.text
            ));
        } else if !is_error_shape(&reply.body) {
            failures.push(format!("{what}: not the error shape: {}", reply.text));
        } else if reply.body["code"] != case.code {
            failures.push(format!(
                "{what}: code {} (want {})",
                reply.body["code"], case.code
            ));
        }
        let changed = diff(&before, &after);
        if !changed.is_empty() {
            failures.push(format!("{what}: changed the database: {changed:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    app.check_invariants().await;
}

/// What the refusals run against.
struct World {
    user: i64,
    /// 1,000 won, stock 10 (a PENDING and a PAID order each hold 1).
    product: i64,
    /// 1,000,000 won, stock 5.
    dear: i64,
    coupon: i64,
    /// The user's coupon of `coupon`, AVAILABLE.
    user_coupon: i64,
    pending: i64,
    paid: i64,
    cancelled: i64,
}

async fn world(app: &TestApp) -> World {
    let user = app.user_with_balance("kim", 50_000).await;
    let product = app.create_product("pen", 1_000, 10).await;
    let dear = app.create_product("watch", 1_000_000, 5).await;
    let coupon = app.create_coupon(json!({})).await;
    let user_coupon = app.issued(coupon, user).await;
    let (s, o) = app.order(user, &[(product, 1)], None, false).await;
    assert_eq!(s, StatusCode::CREATED, "{o}");
    let pending = o["id"].as_i64().unwrap();
    let (s, o) = app.order(user, &[(product, 1)], None, true).await;
    assert_eq!(s, StatusCode::CREATED, "{o}");
    let paid = o["id"].as_i64().unwrap();
    let (s, o) = app.order(user, &[(product, 1)], None, false).await;
    assert_eq!(s, StatusCode::CREATED, "{o}");
    let cancelled = o["id"].as_i64().unwrap();
    let (s, o) = app.cancel(cancelled).await;
    assert_eq!(s, StatusCode::OK, "{o}");
    World {
        user,
        product,
        dear,
        coupon,
        user_coupon,
        pending,
        paid,
        cancelled,
    }
}

/// Path segments that are not positive 64-bit ids.
const BAD_IDS: &[&str] = &[
    "0",
    "-1",
    "abc",
    "1.5",
    "1e3",
    "9223372036854775808",
    "99999999999999999999999",
    "-9223372036854775809",
    "%20",
    "0x10",
];

// ---- the tests ----

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn malformed_bodies_are_refused_with_400_and_change_nothing(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let w = world(&app).await;
    let charge = format!("/api/v1/users/{}/balance/charge", w.user);
    let users = "/api/v1/users";
    let mut cases = vec![
        // malformed and truncated JSON
        post(users, r#"{name: "kim"}"#, 400, BAD),
        post(users, r#"{"name": "kim""#, 400, BAD),
        post(users, r#"{"name": "ki"#, 400, BAD),
        post(users, r#"{"name" "kim"}"#, 400, BAD),
        post(users, r#"{"name": "kim",}"#, 400, BAD),
        post(users, r#"{'name': 'kim'}"#, 400, BAD),
        post(users, r#"{"name": "kim"} trailing"#, 400, BAD),
        post(users, r#"{"name": "kim"}{"name": "lee"}"#, 400, BAD),
        post(&charge, r#"{"amount": 1000"#, 400, BAD),
        post(&charge, r#"{"amount": "#, 400, BAD),
        post(&charge, "{", 400, BAD),
        // empty or not an object
        post(users, "", 400, BAD),
        post(&charge, "", 400, BAD),
        post(users, "   ", 400, BAD),
        post(users, "null", 400, BAD),
        post(users, "[]", 400, BAD),
        post(users, r#""kim""#, 400, BAD),
        post(&charge, "1000", 400, BAD),
        post(&charge, "{}", 400, BAD),
        // bytes that are not UTF-8 JSON
        post(users, b"\xff\xfe{\"name\": \"kim\"}".to_vec(), 400, BAD),
        post(users, b"{\"name\": \"k\xffm\"}".to_vec(), 400, BAD),
        post(users, b"{\"name\": \"k\x00m\"}".to_vec(), 400, BAD),
        post(users, b"\x00".to_vec(), 400, BAD),
        // payment and cancel take no body: an odd body does not matter, but a bad id does
        post("/api/v1/orders/0/payment", "{", 400, BAD),
    ];
    // a number that is not JSON
    for n in [
        "NaN",
        "Infinity",
        "-Infinity",
        "01000",
        "+1000",
        "0x3e8",
        "1_000",
        "1000.",
    ] {
        cases.push(post(&charge, format!(r#"{{"amount": {n}}}"#), 400, BAD));
    }
    run(&app, cases).await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn a_body_that_is_not_json_is_refused_with_415_and_changes_nothing(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let w = world(&app).await;
    let charge = format!("/api/v1/users/{}/balance/charge", w.user);
    let valid_user = r#"{"name": "kim"}"#;
    let valid_charge = r#"{"amount": 1000}"#;
    let mut cases = Vec::new();
    for ct in [
        Some("text/plain"),
        Some("text/plain; charset=utf-8"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/xml"),
        Some("application/jsonx"),
        Some("json"),
        Some(""),
        None,
    ] {
        cases.push(raw(
            Method::POST,
            "/api/v1/users",
            ct,
            valid_user,
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ));
        cases.push(raw(
            Method::POST,
            &charge,
            ct,
            valid_charge,
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ));
    }
    cases.push(raw(
        Method::POST,
        "/api/v1/admin/products",
        Some("text/plain"),
        r#"{"name": "pen", "price": 1000, "stock": 1}"#,
        415,
        "UNSUPPORTED_MEDIA_TYPE",
    ));
    cases.push(raw(
        Method::PATCH,
        format!("/api/v1/admin/products/{}", w.product),
        None,
        r#"{"price": 5}"#,
        415,
        "UNSUPPORTED_MEDIA_TYPE",
    ));
    cases.push(raw(
        Method::POST,
        "/api/v1/orders",
        Some("text/html"),
        format!(
            r#"{{"userId": {}, "items": [{{"productId": {}, "quantity": 1}}]}}"#,
            w.user, w.product
        ),
        415,
        "UNSUPPORTED_MEDIA_TYPE",
    ));
    // no content type and no body at all
    cases.push(raw(
        Method::POST,
        "/api/v1/users",
        None,
        "",
        415,
        "UNSUPPORTED_MEDIA_TYPE",
    ));
    cases.push(raw(
        Method::POST,
        &charge,
        None,
        "",
        415,
        "UNSUPPORTED_MEDIA_TYPE",
    ));
    run(&app, cases).await;
    // the same through the shared helper
    let users = app.scalar("select count(*) from users").await;
    let (s, b) = app
        .post_raw("/api/v1/users", "text/plain", r#"{"name": "kim"}"#)
        .await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{b}");
    assert!(is_error_shape(&b), "{b}");
    assert_eq!(b["code"], "UNSUPPORTED_MEDIA_TYPE");
    assert_eq!(app.scalar("select count(*) from users").await, users);
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn wrong_types_floats_and_overflow_are_refused_with_400(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let w = world(&app).await;
    let charge = format!("/api/v1/users/{}/balance/charge", w.user);
    let mut cases = Vec::new();
    // not an integer: strings, floats (even integral ones), overflow, other types
    let not_integers = [
        r#""1000""#,
        r#""""#,
        "1.5",
        "1.0",
        "1e3",
        "1E3",
        "1000.0",
        "-0.0",
        "1e400",
        "9223372036854775808",
        "18446744073709551616",
        "99999999999999999999999999999999",
        "-9223372036854775809",
        "null",
        "true",
        "[1000]",
        r#"{"value": 1000}"#,
    ];
    for v in not_integers {
        cases.push(post(&charge, format!(r#"{{"amount": {v}}}"#), 400, BAD));
        cases.push(post(
            "/api/v1/admin/products",
            format!(r#"{{"name": "pen", "price": {v}, "stock": 1}}"#),
            400,
            BAD,
        ));
        cases.push(post(
            "/api/v1/admin/products",
            format!(r#"{{"name": "pen", "price": 1, "stock": {v}}}"#),
            400,
            BAD,
        ));
        cases.push(post(
            format!("/api/v1/admin/products/{}/stock", w.product),
            format!(r#"{{"delta": {v}}}"#),
            400,
            BAD,
        ));
        cases.push(post(
            format!("/api/v1/coupons/{}/issue", w.coupon),
            format!(r#"{{"userId": {v}}}"#),
            400,
            BAD,
        ));
        cases.push(post(
            "/api/v1/orders",
            format!(
                r#"{{"userId": {}, "items": [{{"productId": {}, "quantity": {v}}}]}}"#,
                w.user, w.product
            ),
            400,
            BAD,
        ));
        cases.push(post(
            "/api/v1/orders",
            format!(
                r#"{{"userId": {}, "items": [{{"productId": {v}, "quantity": 1}}]}}"#,
                w.user
            ),
            400,
            BAD,
        ));
        cases.push(post(
            "/api/v1/orders",
            format!(
                r#"{{"userId": {v}, "items": [{{"productId": {}, "quantity": 1}}]}}"#,
                w.product
            ),
            400,
            BAD,
        ));
        cases.push(post(
            "/api/v1/admin/coupons",
            format!(r#"{{"name": "c", "discountType": "FIXED", "discountValue": {v}, "totalQuantity": 10}}"#),
            400,
            BAD,
        ));
        cases.push(post(
            "/api/v1/admin/coupons",
            format!(r#"{{"name": "c", "discountType": "FIXED", "discountValue": 10, "totalQuantity": {v}}}"#),
            400,
            BAD,
        ));
        if v != "null" {
            // optional fields: null means absent there
            cases.push(patch(
                format!("/api/v1/admin/products/{}", w.product),
                format!(r#"{{"price": {v}}}"#),
                400,
                BAD,
            ));
            cases.push(post(
                "/api/v1/admin/coupons",
                format!(r#"{{"name": "c", "discountType": "FIXED", "discountValue": 10, "totalQuantity": 10, "validDays": {v}}}"#),
                400,
                BAD,
            ));
            cases.push(post(
                "/api/v1/admin/coupons",
                format!(r#"{{"name": "c", "discountType": "FIXED", "discountValue": 10, "totalQuantity": 10, "minOrderAmount": {v}}}"#),
                400,
                BAD,
            ));
            cases.push(post(
                "/api/v1/orders",
                format!(r#"{{"userId": {}, "items": [{{"productId": {}, "quantity": 1}}], "userCouponId": {v}}}"#, w.user, w.product),
                400,
                BAD,
            ));
        }
    }
    // not a string where a string belongs
    for v in [
        "5",
        "1.5",
        "null",
        "true",
        r#"["kim"]"#,
        r#"{"first": "kim"}"#,
    ] {
        cases.push(post(
            "/api/v1/users",
            format!(r#"{{"name": {v}}}"#),
            400,
            BAD,
        ));
        cases.push(post(
            "/api/v1/admin/products",
            format!(r#"{{"name": {v}, "price": 1, "stock": 1}}"#),
            400,
            BAD,
        ));
        cases.push(post(
            "/api/v1/admin/coupons",
            format!(
                r#"{{"name": "c", "discountType": {v}, "discountValue": 10, "totalQuantity": 10}}"#
            ),
            400,
            BAD,
        ));
        if v != "null" {
            cases.push(patch(
                format!("/api/v1/admin/products/{}", w.product),
                format!(r#"{{"name": {v}}}"#),
                400,
                BAD,
            ));
        }
    }
    // items that are not a list of items; pay that is not a boolean
    for items in [
        "null",
        "{}",
        r#"{"productId": 1, "quantity": 1}"#,
        "[1, 2]",
        r#""all""#,
        "[null]",
    ] {
        cases.push(post(
            "/api/v1/orders",
            format!(r#"{{"userId": {}, "items": {items}}}"#, w.user),
            400,
            BAD,
        ));
    }
    for pay in [r#""yes""#, "1", "0"] {
        cases.push(post(
            "/api/v1/orders",
            format!(
                r#"{{"userId": {}, "items": [{{"productId": {}, "quantity": 1}}], "pay": {pay}}}"#,
                w.user, w.product
            ),
            400,
            BAD,
        ));
    }
    // timestamps that are not RFC 3339
    for at in [
        r#""tomorrow""#,
        r#""2030-01-01""#,
        r#""2030-13-01T00:00:00Z""#,
        "1893456000",
        r#""""#,
    ] {
        cases.push(post(
            "/api/v1/admin/coupons",
            format!(r#"{{"name": "c", "discountType": "FIXED", "discountValue": 10, "totalQuantity": 10, "issueStartsAt": {at}}}"#),
            400,
            BAD,
        ));
    }
    run(&app, cases).await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn unknown_and_missing_fields_are_refused_with_400(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let w = world(&app).await;
    let cases = vec![
        post(
            "/api/v1/users",
            r#"{"name": "kim", "admin": true}"#,
            400,
            BAD,
        ),
        post(
            "/api/v1/users",
            r#"{"name": "kim", "balance": 1000000}"#,
            400,
            BAD,
        ),
        post("/api/v1/users", r#"{"Name": "kim"}"#, 400, BAD),
        post("/api/v1/users", "{}", 400, BAD),
        post(
            format!("/api/v1/users/{}/balance/charge", w.user),
            r#"{"amount": 1000, "note": "x"}"#,
            400,
            BAD,
        ),
        post(
            format!("/api/v1/users/{}/balance/charge", w.user),
            r#"{"amount": 1000, "amount": 2000}"#,
            400,
            BAD,
        ),
        post(
            format!("/api/v1/users/{}/balance/charge", w.user),
            r#"{"value": 1000}"#,
            400,
            BAD,
        ),
        post(
            "/api/v1/admin/products",
            r#"{"name": "pen", "price": 1000, "stock": 1, "id": 7}"#,
            400,
            BAD,
        ),
        post(
            "/api/v1/admin/products",
            r#"{"name": "pen", "stock": 1}"#,
            400,
            BAD,
        ),
        post(
            "/api/v1/admin/products",
            r#"{"price": 1000, "stock": 1}"#,
            400,
            BAD,
        ),
        patch(
            format!("/api/v1/admin/products/{}", w.product),
            r#"{"stock": 500}"#,
            400,
            BAD,
        ),
        patch(
            format!("/api/v1/admin/products/{}", w.product),
            r#"{"price": 5, "id": 2}"#,
            400,
            BAD,
        ),
        post(
            format!("/api/v1/admin/products/{}/stock", w.product),
            r#"{"delta": 1, "reason": "x"}"#,
            400,
            BAD,
        ),
        post(
            format!("/api/v1/admin/products/{}/stock", w.product),
            "{}",
            400,
            BAD,
        ),
        post(
            "/api/v1/admin/coupons",
            r#"{"name": "c", "discountType": "FIXED", "discountValue": 10, "totalQuantity": 10, "issuedQuantity": 5}"#,
            400,
            BAD,
        ),
        post(
            "/api/v1/admin/coupons",
            r#"{"name": "c", "discountType": "FIXED", "discountValue": 10}"#,
            400,
            BAD,
        ),
        post(
            "/api/v1/admin/coupons",
            r#"{"name": "c", "discount_type": "FIXED", "discountValue": 10, "totalQuantity": 10}"#,
            400,
            BAD,
        ),
        post(
            format!("/api/v1/coupons/{}/issue", w.coupon),
            r#"{"userId": 1, "couponId": 1}"#,
            400,
            BAD,
        ),
        post(
            format!("/api/v1/coupons/{}/issue", w.coupon),
            "{}",
            400,
            BAD,
        ),
        post(
            "/api/v1/orders",
            format!(
                r#"{{"userId": {}, "items": [{{"productId": {}, "quantity": 1}}], "discount": 1000}}"#,
                w.user, w.product
            ),
            400,
            BAD,
        ),
        post(
            "/api/v1/orders",
            format!(
                r#"{{"userId": {}, "items": [{{"productId": {}, "quantity": 1, "unitPrice": 1}}]}}"#,
                w.user, w.product
            ),
            400,
            BAD,
        ),
        post(
            "/api/v1/orders",
            format!(
                r#"{{"userId": {}, "items": [{{"productId": {}}}]}}"#,
                w.user, w.product
            ),
            400,
            BAD,
        ),
        post(
            "/api/v1/orders",
            format!(r#"{{"userId": {}, "items": [{{"quantity": 1}}]}}"#, w.user),
            400,
            BAD,
        ),
        post(
            "/api/v1/orders",
            format!(
                r#"{{"items": [{{"productId": {}, "quantity": 1}}]}}"#,
                w.product
            ),
            400,
            BAD,
        ),
        post(
            "/api/v1/orders",
            format!(r#"{{"userId": {}}}"#, w.user),
            400,
            BAD,
        ),
    ];
    run(&app, cases).await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn out_of_range_values_are_refused_with_400(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let w = world(&app).await;
    let charge = format!("/api/v1/users/{}/balance/charge", w.user);
    let mut cases = Vec::new();
    for amount in [
        "0",
        "-1",
        "-1000",
        "-9223372036854775808",
        "1000001",
        "9223372036854775807",
    ] {
        cases.push(post(
            &charge,
            format!(r#"{{"amount": {amount}}}"#),
            400,
            BAD,
        ));
    }
    // names: empty, blank, too long, control characters
    let long_user = "k".repeat(101);
    let long_product = "p".repeat(201);
    for name in [
        "",
        "   ",
        "\\u0000",
        "a\\u0000b",
        "tab\\there",
        "line\\nbreak",
        "\\u001b[31m",
        long_user.as_str(),
    ] {
        cases.push(post(
            "/api/v1/users",
            format!(r#"{{"name": "{name}"}}"#),
            400,
            BAD,
        ));
    }
    for name in ["", "  ", "a\\u0000b", long_product.as_str()] {
        cases.push(post(
            "/api/v1/admin/products",
            format!(r#"{{"name": "{name}", "price": 1, "stock": 1}}"#),
            400,
            BAD,
        ));
        cases.push(patch(
            format!("/api/v1/admin/products/{}", w.product),
            format!(r#"{{"name": "{name}"}}"#),
            400,
            BAD,
        ));
    }
    for (price, stock) in [
        ("-1", "1"),
        ("1", "-1"),
        ("1000000001", "1"),
        ("1", "1000000001"),
        ("-9223372036854775808", "1"),
    ] {
        cases.push(post(
            "/api/v1/admin/products",
            format!(r#"{{"name": "pen", "price": {price}, "stock": {stock}}}"#),
            400,
            BAD,
        ));
    }
    for price in ["-1", "1000000001"] {
        cases.push(patch(
            format!("/api/v1/admin/products/{}", w.product),
            format!(r#"{{"price": {price}}}"#),
            400,
            BAD,
        ));
    }
    // stock adjustments: zero, out of range, above the largest stock
    let stock = format!("/api/v1/admin/products/{}/stock", w.product);
    for delta in [
        "0",
        "-0",
        "1000000001",
        "-1000000001",
        "9223372036854775807",
        "-9223372036854775808",
        "999999999",
    ] {
        cases.push(post(&stock, format!(r#"{{"delta": {delta}}}"#), 400, BAD));
    }
    // coupon definitions
    let coupon = |extra: &str| {
        post(
            "/api/v1/admin/coupons",
            format!(r#"{{"name": "c", {extra}}}"#),
            400,
            BAD,
        )
    };
    for extra in [
        r#""discountType": "RATE", "discountValue": 101, "totalQuantity": 10"#,
        r#""discountType": "RATE", "discountValue": 0, "totalQuantity": 10"#,
        r#""discountType": "RATE", "discountValue": -5, "totalQuantity": 10"#,
        r#""discountType": "FIXED", "discountValue": 0, "totalQuantity": 10"#,
        r#""discountType": "FIXED", "discountValue": -1000, "totalQuantity": 10"#,
        r#""discountType": "FIXED", "discountValue": 1000000001, "totalQuantity": 10"#,
        r#""discountType": "FIXED", "discountValue": 1000, "totalQuantity": 0"#,
        r#""discountType": "FIXED", "discountValue": 1000, "totalQuantity": -1"#,
        r#""discountType": "FIXED", "discountValue": 1000, "totalQuantity": 100000001"#,
        r#""discountType": "FIXED", "discountValue": 1000, "totalQuantity": 10, "minOrderAmount": -1"#,
        r#""discountType": "FIXED", "discountValue": 1000, "totalQuantity": 10, "validDays": 0"#,
        r#""discountType": "FIXED", "discountValue": 1000, "totalQuantity": 10, "validDays": -30"#,
        r#""discountType": "FIXED", "discountValue": 1000, "totalQuantity": 10, "validDays": 3651"#,
        r#""discountType": "FIXED", "discountValue": 1000, "totalQuantity": 10, "issueStartsAt": "2030-01-02T00:00:00Z", "issueEndsAt": "2030-01-01T00:00:00Z""#,
        r#""discountType": "FIXED", "discountValue": 1000, "totalQuantity": 10, "issueStartsAt": "2030-01-01T00:00:00Z", "issueEndsAt": "2030-01-01T00:00:00Z""#,
        r#""discountType": "PERCENT", "discountValue": 10, "totalQuantity": 10"#,
        r#""discountType": "rate", "discountValue": 10, "totalQuantity": 10"#,
        r#""discountType": "", "discountValue": 10, "totalQuantity": 10"#,
    ] {
        cases.push(coupon(extra));
    }
    cases.push(post(
        "/api/v1/admin/coupons",
        r#"{"name": "", "discountType": "FIXED", "discountValue": 10, "totalQuantity": 10}"#,
        400,
        BAD,
    ));
    // issue to a non-positive user id
    for user in ["0", "-1"] {
        cases.push(post(
            format!("/api/v1/coupons/{}/issue", w.coupon),
            format!(r#"{{"userId": {user}}}"#),
            400,
            BAD,
        ));
    }
    run(&app, cases).await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn order_shapes_out_of_range_are_refused_with_400(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let w = world(&app).await;
    let order = |items: Vec<Value>| {
        post(
            "/api/v1/orders",
            json!({ "userId": w.user, "items": items }).to_string(),
            400,
            BAD,
        )
    };
    let item = |p: i64, q: i64| json!({ "productId": p, "quantity": q });
    let mut cases = vec![
        order(vec![]),
        order(vec![item(w.product, 1); 51]),
        order(vec![item(w.product, 1); 1000]),
        order(vec![item(w.product, 1001)]),
        order(vec![item(w.product, 0)]),
        order(vec![item(w.product, -1)]),
        order(vec![item(w.product, i64::MIN)]),
        order(vec![item(w.product, i64::MAX)]),
        order(vec![item(w.product, 1), item(w.product, 1001)]),
        order(vec![item(w.product, 1), item(w.product, 0)]),
        order(vec![item(0, 1)]),
        order(vec![item(-1, 1)]),
        order(vec![item(w.product, 1), item(0, 1)]),
    ];
    for (user, coupon) in [(0, None), (-1, None), (w.user, Some(0)), (w.user, Some(-1))] {
        let mut body = json!({ "userId": user, "items": [item(w.product, 1)] });
        if let Some(c) = coupon {
            body["userCouponId"] = json!(c);
        }
        cases.push(post("/api/v1/orders", body.to_string(), 400, BAD));
    }
    // the same with "pay": true
    cases.push(post(
        "/api/v1/orders",
        json!({ "userId": w.user, "items": [], "pay": true }).to_string(),
        400,
        BAD,
    ));
    cases.push(post(
        "/api/v1/orders",
        json!({ "userId": w.user, "items": [item(w.product, 1001)], "pay": true }).to_string(),
        400,
        BAD,
    ));
    run(&app, cases).await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn order_limits_are_inclusive(#[case] backend: Backend) {
    // The boundaries of the refusals above are accepted.
    let app = spawn_app(backend).await;
    let user = app.user_with_balance("kim", 1_000_000).await;
    let product = app.create_product("bolt", 1, 100_000).await;
    let (s, o) = app.order(user, &[(product, 1); 50], None, false).await;
    assert_eq!(s, StatusCode::CREATED, "{o}");
    assert_eq!(o["items"].as_array().unwrap().len(), 50);
    let (s, o) = app.order(user, &[(product, 1_000)], None, false).await;
    assert_eq!(s, StatusCode::CREATED, "{o}");
    assert_eq!(o["totalAmount"], 1_000);
    assert_eq!(app.stock(product).await, 100_000 - 50 - 1_000);
    app.check_invariants().await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn unknown_ids_are_404_with_their_code_and_change_nothing(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let w = world(&app).await;
    let item = json!([{ "productId": w.product, "quantity": 1 }]);
    let mut cases = Vec::new();
    for id in [UNKNOWN, i64::MAX] {
        cases.extend([
            get(format!("/api/v1/users/{id}/balance"), 404, "USER_NOT_FOUND"),
            get(format!("/api/v1/users/{id}/balance/history"), 404, "USER_NOT_FOUND"),
            get(format!("/api/v1/users/{id}/orders"), 404, "USER_NOT_FOUND"),
            get(format!("/api/v1/users/{id}/coupons"), 404, "USER_NOT_FOUND"),
            post(format!("/api/v1/users/{id}/balance/charge"), r#"{"amount": 1000}"#, 404, "USER_NOT_FOUND"),
            post(format!("/api/v1/coupons/{}/issue", w.coupon), format!(r#"{{"userId": {id}}}"#), 404, "USER_NOT_FOUND"),
            post("/api/v1/orders", json!({ "userId": id, "items": item }).to_string(), 404, "USER_NOT_FOUND"),
            post("/api/v1/orders", json!({ "userId": id, "items": item, "pay": true }).to_string(), 404, "USER_NOT_FOUND"),
            get(format!("/api/v1/products/{id}"), 404, "PRODUCT_NOT_FOUND"),
            patch(format!("/api/v1/admin/products/{id}"), r#"{"price": 5}"#, 404, "PRODUCT_NOT_FOUND"),
            post(format!("/api/v1/admin/products/{id}/stock"), r#"{"delta": 5}"#, 404, "PRODUCT_NOT_FOUND"),
            post(
                "/api/v1/orders",
                json!({ "userId": w.user, "items": [{ "productId": id, "quantity": 1 }] }).to_string(),
                404,
                "PRODUCT_NOT_FOUND",
            ),
            // all or nothing: a known product first, then an unknown one
            post(
                "/api/v1/orders",
                json!({ "userId": w.user, "items": [{ "productId": w.product, "quantity": 1 }, { "productId": id, "quantity": 1 }] }).to_string(),
                404,
                "PRODUCT_NOT_FOUND",
            ),
            post(
                "/api/v1/orders",
                json!({ "userId": w.user, "items": [{ "productId": w.product, "quantity": 1 }, { "productId": id, "quantity": 1 }], "pay": true }).to_string(),
                404,
                "PRODUCT_NOT_FOUND",
            ),
            get(format!("/api/v1/coupons/{id}"), 404, "COUPON_NOT_FOUND"),
            post(format!("/api/v1/coupons/{id}/issue"), format!(r#"{{"userId": {}}}"#, w.user), 404, "COUPON_NOT_FOUND"),
            get(format!("/api/v1/orders/{id}"), 404, "ORDER_NOT_FOUND"),
            raw(Method::POST, format!("/api/v1/orders/{id}/payment"), None, "", 404, "ORDER_NOT_FOUND"),
            raw(Method::POST, format!("/api/v1/orders/{id}/cancel"), None, "", 404, "ORDER_NOT_FOUND"),
        ]);
    }
    run(&app, cases).await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn business_refusals_are_409_and_change_nothing(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let w = world(&app).await;
    // a second user with a coupon of their own and a coupon not yet open
    let other = app.create_user("lee").await;
    let others_coupon = app.issued(w.coupon, other).await;
    let later = app
        .create_coupon(json!({ "issueStartsAt": "2999-01-01T00:00:00Z" }))
        .await;
    let closed = app
        .create_coupon(json!({ "issueStartsAt": "2000-01-01T00:00:00Z", "issueEndsAt": "2000-01-02T00:00:00Z" }))
        .await;
    let stock_now = app.stock(w.product).await;
    let cases = vec![
        post(
            format!("/api/v1/admin/products/{}/stock", w.product),
            format!(r#"{{"delta": {}}}"#, -(stock_now + 1)),
            409,
            "STOCK_BELOW_ZERO",
        ),
        post(
            format!("/api/v1/admin/products/{}/stock", w.product),
            r#"{"delta": -1000000000}"#,
            409,
            "STOCK_BELOW_ZERO",
        ),
        post(
            "/api/v1/orders",
            json!({ "userId": w.user, "items": [{ "productId": w.product, "quantity": stock_now + 1 }] }).to_string(),
            409,
            "INSUFFICIENT_STOCK",
        ),
        // demand is summed per product
        post(
            "/api/v1/orders",
            json!({ "userId": w.user, "items": [{ "productId": w.product, "quantity": stock_now }, { "productId": w.product, "quantity": 1 }] }).to_string(),
            409,
            "INSUFFICIENT_STOCK",
        ),
        // all or nothing: the first product has stock, the second not
        post(
            "/api/v1/orders",
            json!({ "userId": w.user, "items": [{ "productId": w.product, "quantity": 1 }, { "productId": w.dear, "quantity": 6 }] }).to_string(),
            409,
            "INSUFFICIENT_STOCK",
        ),
        // create-and-pay without the money: nothing is held
        post(
            "/api/v1/orders",
            json!({ "userId": w.user, "items": [{ "productId": w.product, "quantity": 1 }, { "productId": w.dear, "quantity": 1 }], "pay": true }).to_string(),
            409,
            "INSUFFICIENT_BALANCE",
        ),
        // the same with the user's coupon: the coupon is not held either
        post(
            "/api/v1/orders",
            json!({ "userId": w.user, "items": [{ "productId": w.dear, "quantity": 1 }], "userCouponId": w.user_coupon, "pay": true }).to_string(),
            409,
            "INSUFFICIENT_BALANCE",
        ),
        // the user's coupon with too little stock: neither is held
        post(
            "/api/v1/orders",
            json!({ "userId": w.user, "items": [{ "productId": w.product, "quantity": 1 }, { "productId": w.dear, "quantity": 6 }], "userCouponId": w.user_coupon }).to_string(),
            409,
            "INSUFFICIENT_STOCK",
        ),
        post(
            "/api/v1/orders",
            json!({ "userId": w.user, "items": [{ "productId": w.product, "quantity": 1 }], "userCouponId": UNKNOWN }).to_string(),
            409,
            "COUPON_NOT_USABLE",
        ),
        post(
            "/api/v1/orders",
            json!({ "userId": w.user, "items": [{ "productId": w.product, "quantity": 1 }], "userCouponId": others_coupon }).to_string(),
            409,
            "COUPON_NOT_USABLE",
        ),
        raw(Method::POST, format!("/api/v1/orders/{}/payment", w.paid), None, "", 409, "ORDER_NOT_PAYABLE"),
        raw(Method::POST, format!("/api/v1/orders/{}/payment", w.cancelled), None, "", 409, "ORDER_NOT_PAYABLE"),
        raw(Method::POST, format!("/api/v1/orders/{}/cancel", w.cancelled), None, "", 409, "ORDER_NOT_CANCELLABLE"),
        post(format!("/api/v1/coupons/{}/issue", w.coupon), format!(r#"{{"userId": {}}}"#, w.user), 409, "COUPON_ALREADY_ISSUED"),
        post(format!("/api/v1/coupons/{later}/issue"), format!(r#"{{"userId": {}}}"#, w.user), 409, "COUPON_NOT_IN_ISSUE_PERIOD"),
        post(format!("/api/v1/coupons/{closed}/issue"), format!(r#"{{"userId": {}}}"#, w.user), 409, "COUPON_NOT_IN_ISSUE_PERIOD"),
    ];
    run(&app, cases).await;

    // payment without the money leaves the order PENDING and the balance untouched
    let (s, o) = app.order(w.user, &[(w.dear, 1)], None, false).await;
    assert_eq!(s, StatusCode::CREATED, "{o}");
    let dear_order = o["id"].as_i64().unwrap();
    run(
        &app,
        vec![raw(
            Method::POST,
            format!("/api/v1/orders/{dear_order}/payment"),
            None,
            "",
            409,
            "INSUFFICIENT_BALANCE",
        )],
    )
    .await;
    let (_, o) = app.get(&format!("/api/v1/orders/{dear_order}")).await;
    assert_eq!(o["status"], "PENDING");
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn charges_above_the_limits_are_refused(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.user_with_balance("rich", 99_500_000).await;
    let charge = format!("/api/v1/users/{user}/balance/charge");
    run(
        &app,
        vec![
            post(&charge, r#"{"amount": 1000001}"#, 400, BAD),
            post(
                &charge,
                r#"{"amount": 500001}"#,
                409,
                "BALANCE_LIMIT_EXCEEDED",
            ),
            post(
                &charge,
                r#"{"amount": 1000000}"#,
                409,
                "BALANCE_LIMIT_EXCEEDED",
            ),
        ],
    )
    .await;
    assert_eq!(app.balance(user).await, 99_500_000);
    // exactly the limit is allowed, one won more is not
    let (s, b) = app.charge(user, 500_000).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["balance"], 100_000_000);
    run(
        &app,
        vec![post(
            &charge,
            r#"{"amount": 1}"#,
            409,
            "BALANCE_LIMIT_EXCEEDED",
        )],
    )
    .await;
    assert_eq!(app.balance(user).await, 100_000_000);

    // the largest single charge is allowed
    let other = app.create_user("lee").await;
    let (s, b) = app.charge(other, 1_000_000).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["balance"], 1_000_000);
    app.check_invariants().await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn bad_ids_in_paths_are_refused_with_400(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let w = world(&app).await;
    let mut cases = Vec::new();
    for id in BAD_IDS {
        cases.extend([
            get(format!("/api/v1/users/{id}/balance"), 400, BAD),
            get(format!("/api/v1/users/{id}/balance/history"), 400, BAD),
            get(format!("/api/v1/users/{id}/orders"), 400, BAD),
            get(format!("/api/v1/users/{id}/coupons"), 400, BAD),
            post(
                format!("/api/v1/users/{id}/balance/charge"),
                r#"{"amount": 1000}"#,
                400,
                BAD,
            ),
            get(format!("/api/v1/products/{id}"), 400, BAD),
            patch(
                format!("/api/v1/admin/products/{id}"),
                r#"{"price": 5}"#,
                400,
                BAD,
            ),
            post(
                format!("/api/v1/admin/products/{id}/stock"),
                r#"{"delta": 5}"#,
                400,
                BAD,
            ),
            get(format!("/api/v1/coupons/{id}"), 400, BAD),
            post(
                format!("/api/v1/coupons/{id}/issue"),
                format!(r#"{{"userId": {}}}"#, w.user),
                400,
                BAD,
            ),
            get(format!("/api/v1/orders/{id}"), 400, BAD),
            raw(
                Method::POST,
                format!("/api/v1/orders/{id}/payment"),
                None,
                "",
                400,
                BAD,
            ),
            raw(
                Method::POST,
                format!("/api/v1/orders/{id}/cancel"),
                None,
                "",
                400,
                BAD,
            ),
        ]);
    }
    run(&app, cases).await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn bad_paging_and_ranking_parameters_are_refused_with_400(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let w = world(&app).await;
    let lists = [
        "/api/v1/products".to_string(),
        format!("/api/v1/users/{}/balance/history", w.user),
        format!("/api/v1/users/{}/orders", w.user),
        format!("/api/v1/users/{}/coupons", w.user),
    ];
    let mut cases = Vec::new();
    for list in &lists {
        for query in [
            "limit=0",
            "limit=101",
            "limit=-1",
            "limit=abc",
            "limit=1.5",
            "limit=1e1",
            "limit=99999999999999999999",
            "limit=1&limit=2",
            "cursor=garbage!!",
            "cursor=%00",
            "cursor=eDE",                          // base64 of "x1"
            "cursor=azEyYQ",                       // base64 of "k12a"
            "cursor=azk5OTk5OTk5OTk5OTk5OTk5OTk5", // base64 of "k" and 20 nines
            "limit=10&cursor=not-a-cursor",
        ] {
            cases.push(get(format!("{list}?{query}"), 400, BAD));
        }
    }
    for query in [
        "days=0",
        "days=31",
        "days=-1",
        "days=abc",
        "days=1.5",
        "limit=0",
        "limit=101",
        "limit=abc",
        "days=3&limit=101",
    ] {
        cases.push(get(format!("/api/v1/products/popular?{query}"), 400, BAD));
    }
    run(&app, cases).await;

    // the boundaries are accepted
    for path in [
        "/api/v1/products?limit=1",
        "/api/v1/products?limit=100",
        "/api/v1/products/popular?days=1",
        "/api/v1/products/popular?days=30&limit=100",
        "/api/v1/products/popular?limit=1",
    ] {
        let (s, b) = app.get(path).await;
        assert_eq!(s, StatusCode::OK, "{path}: {b}");
    }
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn a_body_over_the_size_limit_is_413_and_changes_nothing(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let w = world(&app).await;
    let charge = format!("/api/v1/users/{}/balance/charge", w.user);
    // a valid JSON document padded with spaces to an exact size
    let padded = |doc: &str, size: usize| {
        let mut body = doc.as_bytes().to_vec();
        body.resize(size, b' ');
        body
    };
    let long_name = format!(r#"{{"name": "{}"}}"#, "k".repeat(LIMIT));
    run(
        &app,
        vec![
            post(&charge, padded(r#"{"amount": 1000}"#, LIMIT + 1), 413, "PAYLOAD_TOO_LARGE"),
            post(&charge, padded(r#"{"amount": 1000}"#, 4 * LIMIT), 413, "PAYLOAD_TOO_LARGE"),
            post("/api/v1/users", long_name, 413, "PAYLOAD_TOO_LARGE"),
            post(
                "/api/v1/orders",
                padded(&json!({ "userId": w.user, "items": [{ "productId": w.product, "quantity": 1 }] }).to_string(), LIMIT + 1),
                413,
                "PAYLOAD_TOO_LARGE",
            ),
        ],
    )
    .await;
    // exactly the limit is read
    let before = app.balance(w.user).await;
    let reply = send(
        &app,
        &Method::POST,
        &charge,
        JSON,
        padded(r#"{"amount": 1000}"#, LIMIT),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.body["balance"], before + 1_000);
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let w = world(&app).await;
    let u = w.user;
    let p = w.product;
    let o = w.pending;
    let mut cases = vec![
        get("/nope", 404, "NOT_FOUND"), // `/` is the storefront (src/web.rs)
        get("/api", 404, "NOT_FOUND"),
        get("/api/v1", 404, "NOT_FOUND"),
        get("/api/v1/nope", 404, "NOT_FOUND"),
        get("/api/v2/products", 404, "NOT_FOUND"),
        get(format!("/api/v1/users/{u}/nope"), 404, "NOT_FOUND"),
        get(
            format!("/api/v1/users/{u}/balance/charge/extra"),
            404,
            "NOT_FOUND",
        ),
        post(format!("/api/v1/orders/{o}/refund"), "{}", 404, "NOT_FOUND"),
        post(
            "/api/v1/admin/users",
            r#"{"name": "kim"}"#,
            404,
            "NOT_FOUND",
        ),
        post("/api/v1/admin/nope", "{}", 404, "NOT_FOUND"),
        get("/API/V1/PRODUCTS", 404, "NOT_FOUND"),
    ];
    let mut wrong = |method: Method, path: String| {
        cases.push(raw(method, path, JSON, "{}", 405, "METHOD_NOT_ALLOWED"));
    };
    wrong(Method::GET, "/api/v1/users".into());
    wrong(Method::DELETE, "/api/v1/users".into());
    wrong(Method::PUT, "/api/v1/users".into());
    wrong(Method::PUT, format!("/api/v1/users/{u}"));
    wrong(Method::GET, "/api/v1/sessions".into());
    wrong(Method::GET, "/api/v1/sessions/current".into());
    wrong(Method::POST, format!("/api/v1/users/{u}/balance"));
    wrong(Method::DELETE, format!("/api/v1/users/{u}/balance"));
    wrong(Method::GET, format!("/api/v1/users/{u}/balance/charge"));
    wrong(Method::PUT, format!("/api/v1/users/{u}/balance/charge"));
    wrong(Method::POST, format!("/api/v1/users/{u}/balance/history"));
    wrong(Method::POST, "/api/v1/products".into());
    wrong(Method::DELETE, format!("/api/v1/products/{p}"));
    wrong(Method::PATCH, format!("/api/v1/products/{p}"));
    wrong(Method::POST, "/api/v1/products/popular".into());
    wrong(Method::DELETE, "/api/v1/admin/products".into());
    wrong(Method::DELETE, format!("/api/v1/admin/products/{p}"));
    wrong(Method::PUT, format!("/api/v1/admin/products/{p}"));
    wrong(Method::GET, format!("/api/v1/admin/products/{p}/stock"));
    wrong(Method::DELETE, "/api/v1/admin/coupons".into());
    wrong(Method::DELETE, format!("/api/v1/coupons/{}", w.coupon));
    wrong(Method::GET, format!("/api/v1/coupons/{}/issue", w.coupon));
    wrong(Method::GET, "/api/v1/orders".into());
    wrong(Method::DELETE, format!("/api/v1/orders/{o}"));
    wrong(Method::GET, format!("/api/v1/orders/{o}/payment"));
    wrong(Method::PUT, format!("/api/v1/orders/{o}/payment"));
    wrong(Method::GET, format!("/api/v1/orders/{o}/cancel"));
    wrong(Method::POST, format!("/api/v1/users/{u}/orders"));
    wrong(Method::POST, format!("/api/v1/users/{u}/coupons"));
    run(&app, cases).await;
    // the pending order was not touched by a wrong method on its payment route
    let (_, order) = app.get(&format!("/api/v1/orders/{o}")).await;
    assert_eq!(order["status"], "PENDING");
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn no_input_makes_the_server_fail(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let w = world(&app).await;
    let u = w.user;
    let p = w.product;
    let deep_arrays = format!("{}{}", "[".repeat(30_000), "]".repeat(30_000));
    let deep_objects = format!("{}1{}", r#"{"a":"#.repeat(10_000), "}".repeat(10_000));
    let unclosed = "[".repeat(60_000);
    let long_ascii = "x".repeat(60_000);
    let long_hangul = "가".repeat(20_000); // 60,000 bytes
    let escapes = "\\u0000".repeat(10_000);
    let emoji = "😀".repeat(100);
    let combining = format!("e{}", "\u{301}".repeat(99));
    let mut bodies: Vec<(Method, String, Option<&'static str>, Vec<u8>)> = Vec::new();
    let mut odd = |method: Method, path: String, ct: Option<&'static str>, body: Vec<u8>| {
        bodies.push((method, path, ct, body));
    };
    let json_paths = [
        "/api/v1/users".to_string(),
        format!("/api/v1/users/{u}/balance/charge"),
        "/api/v1/admin/products".to_string(),
        format!("/api/v1/admin/products/{p}/stock"),
        "/api/v1/admin/coupons".to_string(),
        format!("/api/v1/coupons/{}/issue", w.coupon),
        "/api/v1/orders".to_string(),
    ];
    for path in &json_paths {
        for body in [
            deep_arrays.clone(),
            deep_objects.clone(),
            unclosed.clone(),
            format!(r#"{{"name": {deep_arrays}}}"#),
            format!(r#"{{"name": "{long_ascii}"}}"#),
            format!(r#"{{"name": "{long_hangul}"}}"#),
            format!(r#"{{"name": "{escapes}"}}"#),
            r#"{"name": "\ud800"}"#.to_string(),
            r#"{"name": "\udfff\ud800"}"#.to_string(),
            format!("\u{feff}{{\"name\": \"{emoji}\"}}"),
            format!(r#"{{"amount": {}}}"#, "9".repeat(10_000)),
            format!(r#"{{"amount": 0.{}1}}"#, "0".repeat(10_000)),
            format!(r#"{{"amount": 1e{}}}"#, "9".repeat(1_000)),
            format!(r#"{{"delta": -{}}}"#, "9".repeat(100)),
            format!(r#"{{"userId": {u}, "items": {deep_arrays}}}"#),
        ] {
            odd(Method::POST, path.clone(), JSON, body.into_bytes());
        }
        odd(Method::POST, path.clone(), JSON, vec![0; 1_000]);
        odd(
            Method::POST,
            path.clone(),
            JSON,
            (0..=255u8).cycle().take(10_000).collect(),
        );
    }
    // odd but valid requests: they may succeed, they must not fail
    let hangul_100 = "가".repeat(100);
    for name in [
        emoji.as_str(),
        combining.as_str(),
        hangul_100.as_str(),
        "'; drop table users; --",
        "<script>alert(1)</script>",
        "null",
        "%00",
        "a\u{202e}b",
    ] {
        odd(
            Method::POST,
            "/api/v1/users".into(),
            JSON,
            json!({ "name": name }).to_string().into_bytes(),
        );
        odd(
            Method::POST,
            "/api/v1/admin/products".into(),
            JSON,
            json!({ "name": name, "price": 1, "stock": 1 })
                .to_string()
                .into_bytes(),
        );
    }
    odd(
        Method::POST,
        "/api/v1/admin/products".into(),
        JSON,
        json!({ "name": "max", "price": 1_000_000_000, "stock": 1_000_000_000 })
            .to_string()
            .into_bytes(),
    );
    odd(
        Method::POST,
        format!("/api/v1/admin/products/{p}/stock"),
        JSON,
        json!({ "delta": 1_000_000_000 }).to_string().into_bytes(),
    );
    odd(
        Method::POST,
        "/api/v1/orders".into(),
        JSON,
        json!({ "userId": u, "items": vec![json!({"productId": p, "quantity": 1000}); 50] })
            .to_string()
            .into_bytes(),
    );
    odd(Method::POST, "/api/v1/orders".into(), JSON, json!({ "userId": u, "items": vec![json!({"productId": i64::MAX, "quantity": 1000}); 50], "pay": true }).to_string().into_bytes());
    odd(Method::POST, "/api/v1/orders".into(), JSON, json!({ "userId": u, "items": [{"productId": p, "quantity": 1}], "userCouponId": i64::MAX }).to_string().into_bytes());
    for (starts, ends) in [
        ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"),
        (
            "9999-12-31T23:59:59.999999999Z",
            "9999-12-31T23:59:59.999999999Z",
        ),
        ("+262143-01-01T00:00:00Z", "+262143-12-31T00:00:00Z"),
        ("1970-01-01T00:00:00+23:59", "1970-01-01T00:00:00-23:59"),
        ("2024-02-30T00:00:00Z", "2024-02-31T00:00:00Z"),
        ("2016-12-31T23:59:60Z", "2017-01-01T00:00:00Z"),
    ] {
        odd(
            Method::POST,
            "/api/v1/admin/coupons".into(),
            JSON,
            json!({ "name": "odd", "discountType": "RATE", "discountValue": 100, "totalQuantity": 100_000_000, "validDays": 3650, "issueStartsAt": starts, "issueEndsAt": ends }).to_string().into_bytes(),
        );
    }
    // odd paths and queries
    for path in [
        "/api/v1/orders//payment".to_string(),
        "/api/v1/orders/%00".to_string(),
        "/api/v1/products/%F0%9F%98%80".to_string(),
        "/api/v1/products/%FF".to_string(),
        format!("/api/v1/products/{}", "9".repeat(5_000)),
        format!("/api/v1/users/{u}/balance/history?cursor=%FF%FE"),
        format!(
            "/api/v1/users/{u}/balance/history?cursor={}",
            "A".repeat(5_000)
        ),
        format!("/api/v1/users/{u}/orders?limit={}", "9".repeat(5_000)),
        format!("/api/v1/users/{u}/orders?cursor=ay05MjIzMzcyMDM2ODU0Nzc1ODA4"), // "k-9223372036854775808"
        format!("/api/v1/users/{u}/orders?cursor=azkyMjMzNzIwMzY4NTQ3NzU4MDc"), // "k9223372036854775807"
        "/api/v1/products/popular?days=%00&limit=%FF".to_string(),
        "/api/v1/products/popular?days[]=1".to_string(),
        "/api/v1/products?limit=10&&&&==&cursor".to_string(),
        "/api/v1/../../etc/passwd".to_string(),
        "/api/v1/products/1/../../users".to_string(),
    ] {
        odd(Method::GET, path.clone(), None, Vec::new());
        odd(Method::POST, path, JSON, b"{}".to_vec());
    }
    for ct in [
        "application/json; charset=utf-16",
        "APPLICATION/JSON",
        "application/vnd.api+json",
        "application/json;;;",
        "application/json; charset=\u{0}",
    ] {
        odd(
            Method::POST,
            "/api/v1/users".into(),
            Some(ct),
            br#"{"name": "ct"}"#.to_vec(),
        );
    }

    let mut failures = Vec::new();
    for (method, path, ct, body) in &bodies {
        let mut req = app.request(method.clone(), path, Some(body.clone())).await;
        if let Some(ct) = ct
            && let Ok(v) = reqwest::header::HeaderValue::from_str(ct)
        {
            req = req.header("content-type", v);
        }
        let res = match req.send().await {
            Ok(res) => res,
            Err(e) => {
                failures.push(format!("{method} {path}: no answer: {e}"));
                continue;
            }
        };
        let status = res.status();
        let bytes = res.bytes().await.unwrap_or_default();
        let shown: String = String::from_utf8_lossy(body).chars().take(80).collect();
        if status.is_server_error() {
            failures.push(format!(
                "{method} {path} {shown:?}: {status} {}",
                String::from_utf8_lossy(&bytes)
            ));
        } else if status.is_client_error() {
            let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            if !is_error_shape(&v) {
                failures.push(format!(
                    "{method} {path} {shown:?}: {status} without the error shape: {}",
                    String::from_utf8_lossy(&bytes)
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} odd requests failed:\n{}",
        failures.len(),
        bodies.len(),
        failures.join("\n")
    );

    // the server still answers, reads and writes
    let (s, b) = app.get("/health/live").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = app.get("/health/ready").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let after = app.create_user("after").await;
    let (s, b) = app.charge(after, 1_000).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    app.check_invariants().await;
}
