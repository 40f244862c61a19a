//! Authentication and ownership: every route × {no token, a bad token, another
//! user's token, the user's own token, the admin token, a suspended user's token},
//! and that a refused request changes nothing. Who may call a route (anyone, a user,
//! the admin) is read from the OpenAPI document's `security`, the route's own
//! declaration; a route the matrix calls must be in the document, and every route of
//! the document must be in the matrix.

use reqwest::{Method, StatusCode};
use rstest::rstest;
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app, spawn_app_with};

/// Who sends the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum As {
    Nobody,
    BadToken,
    OtherUser,
    Owner,
    Admin,
    /// A suspended user's valid token: refused with 403 `USER_SUSPENDED` wherever a
    /// token is needed.
    Suspended,
}

const CALLERS: [As; 6] = [
    As::Nobody,
    As::BadToken,
    As::OtherUser,
    As::Owner,
    As::Admin,
    As::Suspended,
];

struct World {
    owner: i64,
    other: i64,
    suspended: i64,
    /// The owner's session's access token (for the routes of the session itself).
    session: String,
}

impl World {
    fn token(&self, app: &TestApp, who: As, access: Access) -> Option<String> {
        match who {
            As::Owner if matches!(access, Access::SessionOwner) => Some(self.session.clone()),
            As::Suspended => Some(app.user_token(self.suspended)),
            As::Nobody => None,
            // the owner's id with another user's signature
            As::BadToken => {
                let forged = app.user_token(self.other);
                let sig = forged.split_once('.').unwrap().1;
                Some(format!("{}.{sig}", self.owner))
            }
            As::OtherUser => Some(app.user_token(self.other)),
            As::Owner => Some(app.user_token(self.owner)),
            As::Admin => Some(app.admin_token.clone()),
        }
    }
}

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (StatusCode, Value) {
    let mut req = app.client.request(method.clone(), app.url(path));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req.json(body);
    }
    let res = req.send().await.expect("request");
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Everything a refused request could have changed.
async fn footprint(app: &TestApp) -> Vec<i64> {
    let mut out = Vec::new();
    for sql in [
        "select count(*) from users",
        "select count(*) from balance_ledger",
        "select cast(coalesce(sum(balance), 0) as bigint) from users",
        "select count(*) from orders",
        "select count(*) from orders where status = 'PAID'",
        "select count(*) from orders where status = 'CANCELLED'",
        "select count(*) from user_coupons",
        "select count(*) from products",
        "select cast(coalesce(sum(stock), 0) as bigint) from variants",
        "select count(*) from coupons",
        "select cast(coalesce(sum(total_quantity), 0) as bigint) from coupons",
        "select count(*) from orders where status in ('SHIPPED', 'DELIVERED')",
        "select count(*) from outbox_events",
        "select count(*) from idempotency_keys",
        "select count(*) from users where status <> 'ACTIVE'",
        "select count(*) from users where email is not null",
        "select count(*) from sessions",
        "select count(*) from sessions where ended_at is not null",
        "select count(*) from refresh_tokens",
        "select count(*) from revocations",
        "select count(*) from cart_items",
        "select cast(coalesce(sum(quantity), 0) as bigint) from cart_items",
        "select count(*) from variants",
        "select cast(coalesce(sum(price), 0) as bigint) from variants",
    ] {
        out.push(app.scalar(sql).await);
    }
    out
}

/// Who may use a route.
#[derive(Debug, Clone, Copy)]
enum Access {
    Public,
    OwnerOnly,
    /// The owner's only, reached by its own sequential id (an order): another user
    /// is told 404, as for a missing one, so ids cannot be probed.
    OwnerById,
    AdminOnly,
    /// The owner's, with a session's access token (an API token is 403).
    SessionOwner,
}

/// What the document does not say: how a user route finds the user it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// By the path's `{userId}` or the body's `userId` (or not a user route).
    Named,
    /// By an order's own id ([`Access::OwnerById`]).
    ById,
    /// The session of the token itself ([`Access::SessionOwner`]).
    Session,
}

/// Who may call what, as `/api-docs/openapi.json` declares it.
struct Document {
    /// (method, path template) → the names of the security schemes it asks for.
    operations: Vec<(String, String, Vec<String>)>,
}

impl Document {
    async fn fetch(app: &TestApp) -> Document {
        let (s, doc) = call(app, Method::GET, "/api-docs/openapi.json", None, None).await;
        assert_eq!(s, StatusCode::OK, "{doc}");
        let mut operations = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().unwrap() {
                if !["get", "put", "post", "delete", "patch"].contains(&method.as_str()) {
                    continue;
                }
                let schemes = op["security"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|requirement| requirement.as_object().unwrap().keys().cloned())
                    .collect();
                operations.push((method.to_uppercase(), path.clone(), schemes));
            }
        }
        Document { operations }
    }

    fn operations(&self) -> std::collections::BTreeSet<(String, String)> {
        self.operations
            .iter()
            .map(|(m, p, _)| (m.clone(), p.clone()))
            .collect()
    }

    /// The template `path` is an instance of (the most literal one: `/products/popular`
    /// before `/products/{productId}`), and who may call it. Panics when the document
    /// does not have the route.
    fn access(&self, method: &Method, path: &str, owner: Owner) -> (String, Access) {
        let segments: Vec<&str> = path.split('/').collect();
        let (template, schemes) = self
            .operations
            .iter()
            .filter(|(m, _, _)| m == method.as_str())
            .filter_map(|(_, template, schemes)| {
                let parts: Vec<&str> = template.split('/').collect();
                let fits = parts.len() == segments.len()
                    && parts
                        .iter()
                        .zip(&segments)
                        .all(|(t, s)| t == s || t.starts_with('{'));
                let literal = parts.iter().filter(|t| !t.starts_with('{')).count();
                fits.then_some((literal, template, schemes))
            })
            .max_by_key(|(literal, _, _)| *literal)
            .map(|(_, t, s)| (t.clone(), s.clone()))
            .unwrap_or_else(|| panic!("{method} {path} is a route but not in the document"));
        let admin = template.starts_with("/api/v1/admin/");
        let access = match (schemes.as_slice(), owner) {
            ([], Owner::Named) => Access::Public,
            ([s], Owner::Named) if s == "admin" && admin => Access::AdminOnly,
            ([s], Owner::Named) if s == "bearer" && !admin => Access::OwnerOnly,
            ([s], Owner::ById) if s == "bearer" && !admin => Access::OwnerById,
            ([s], Owner::Session) if s == "bearer" && !admin => Access::SessionOwner,
            _ => panic!("{method} {template}: security {schemes:?} for a route of {owner:?}"),
        };
        (template, access)
    }
}

fn expected(access: Access, who: As, success: StatusCode) -> StatusCode {
    match (access, who) {
        (Access::Public, _) => success,
        (_, As::Nobody | As::BadToken) => StatusCode::UNAUTHORIZED,
        (Access::OwnerOnly | Access::OwnerById | Access::SessionOwner, As::Owner)
        | (Access::AdminOnly, As::Admin) => success,
        (Access::OwnerById, As::OtherUser) => StatusCode::NOT_FOUND,
        _ => StatusCode::FORBIDDEN,
    }
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn every_route_admits_exactly_its_rightful_callers(#[case] backend: Backend) {
    // The login route is called once per kind of caller, more than one email may try
    // in a minute by default.
    let app = spawn_app_with(backend, |c| c.login_attempts_per_minute = 100).await;
    let owner = app.user_with_balance("owner", 100_000).await;
    let other = app.user_with_balance("other", 100_000).await;
    let product = app.create_product("pen", 1_000, 100).await;
    let coupon = app.create_coupon(json!({"totalQuantity": 10})).await;
    let suspended = app.create_user("suspended").await;
    let (s, b) = call(
        &app,
        Method::PATCH,
        &format!("/api/v1/admin/users/{suspended}"),
        Some(&app.admin_token),
        Some(&json!({"status": "SUSPENDED"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // The owner logs in (a session for logout); another account logs in on the route.
    let password = "owner's password";
    let credentials = json!({"email": "owner@example.com", "password": password});
    let (s, b) = call(
        &app,
        Method::PATCH,
        &format!("/api/v1/users/{owner}"),
        Some(&app.user_token(owner)),
        Some(&credentials),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, session) = call(
        &app,
        Method::POST,
        "/api/v1/sessions",
        None,
        Some(&credentials),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{session}");
    let login = json!({"name": "login", "email": "login@example.com", "password": password});
    let (s, b) = app.post("/api/v1/users", login).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    // Each call of the refresh route spends the token the one before it got.
    let mut refresh_token = session["refreshToken"].clone();
    let w = World {
        owner,
        other,
        suspended,
        session: session["accessToken"].as_str().unwrap().to_string(),
    };
    // A PENDING order to pay and a PAID one to cancel, both the owner's.
    let (s, pending) = app.order(owner, &[(product, 1)], None, false).await;
    assert_eq!(s, StatusCode::CREATED, "{pending}");
    let (s, paid) = app.order(owner, &[(product, 1)], None, true).await;
    assert_eq!(s, StatusCode::CREATED, "{paid}");
    let (pending, paid) = (
        pending["id"].as_i64().unwrap(),
        paid["id"].as_i64().unwrap(),
    );
    // A PAID order to ship and a SHIPPED one to deliver; a coupon the owner holds.
    let (s, to_ship) = app.order(owner, &[(product, 1)], None, true).await;
    assert_eq!(s, StatusCode::CREATED, "{to_ship}");
    let (s, to_deliver) = app.order(owner, &[(product, 1)], None, true).await;
    assert_eq!(s, StatusCode::CREATED, "{to_deliver}");
    let (to_ship, to_deliver) = (
        to_ship["id"].as_i64().unwrap(),
        to_deliver["id"].as_i64().unwrap(),
    );
    let (s, b) = app
        .post(
            &format!("/api/v1/admin/orders/{to_deliver}/ship"),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let held = app.create_coupon(json!({"totalQuantity": 10})).await;
    let held = app.issued(held, owner).await;
    // The pen's one variant, and a product with a size that has no variant yet.
    let (s, pen) = app.get(&format!("/api/v1/products/{product}")).await;
    assert_eq!(s, StatusCode::OK, "{pen}");
    let variant = pen["variants"][0]["id"].as_i64().expect("a variant");
    let (s, tee) = app
        .post(
            "/api/v1/admin/products",
            json!({"name": "tee", "options": [{"name": "size", "values": ["S", "M"]}],
                   "variants": [{"options": {"size": "S"}, "price": 1_000, "stock": 5}]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{tee}");
    let tee = tee["id"].as_i64().unwrap();

    let order_body = json!({"userId": owner, "items": [{"productId": product, "quantity": 1}]});
    // Routes that revoke the owner's tokens come last.
    let routes: Vec<(Method, String, Option<Value>, Owner, StatusCode)> = vec![
        (
            Method::POST,
            "/api/v1/users".into(),
            Some(json!({"name": "new"})),
            Owner::Named,
            StatusCode::CREATED,
        ),
        (
            Method::GET,
            format!("/api/v1/users/{owner}"),
            None,
            Owner::Named,
            StatusCode::OK,
        ),
        (
            Method::PATCH,
            format!("/api/v1/users/{owner}"),
            Some(json!({"name": "owner"})),
            Owner::Named,
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/api/v1/sessions".into(),
            Some(json!({"email": "login@example.com", "password": password})),
            Owner::Named,
            StatusCode::CREATED,
        ),
        (
            Method::POST,
            "/api/v1/sessions/refresh".into(),
            Some(json!({"refreshToken": "(the latest)"})),
            Owner::Named,
            StatusCode::CREATED,
        ),
        (
            Method::GET,
            format!("/api/v1/users/{owner}/balance"),
            None,
            Owner::Named,
            StatusCode::OK,
        ),
        (
            Method::POST,
            format!("/api/v1/users/{owner}/balance/charge"),
            Some(json!({"amount": 1000})),
            Owner::Named,
            StatusCode::OK,
        ),
        (
            Method::GET,
            format!("/api/v1/users/{owner}/balance/history"),
            None,
            Owner::Named,
            StatusCode::OK,
        ),
        (
            Method::GET,
            format!("/api/v1/users/{owner}/coupons"),
            None,
            Owner::Named,
            StatusCode::OK,
        ),
        (
            Method::GET,
            format!("/api/v1/users/{owner}/orders"),
            None,
            Owner::Named,
            StatusCode::OK,
        ),
        (
            Method::GET,
            "/api/v1/products".into(),
            None,
            Owner::Named,
            StatusCode::OK,
        ),
        (
            Method::GET,
            format!("/api/v1/products/{product}"),
            None,
            Owner::Named,
            StatusCode::OK,
        ),
        (
            Method::GET,
            "/api/v1/products/popular".into(),
            None,
            Owner::Named,
            StatusCode::OK,
        ),
        (
            Method::GET,
            format!("/api/v1/coupons/{coupon}"),
            None,
            Owner::Named,
            StatusCode::OK,
        ),
        (
            Method::POST,
            format!("/api/v1/coupons/{coupon}/issue"),
            Some(json!({"userId": owner})),
            Owner::Named,
            StatusCode::CREATED,
        ),
        (
            Method::POST,
            "/api/v1/orders".into(),
            Some(order_body),
            Owner::Named,
            StatusCode::CREATED,
        ),
        (
            Method::GET,
            format!("/api/v1/orders/{pending}"),
            None,
            Owner::ById,
            StatusCode::OK,
        ),
        (
            Method::POST,
            format!("/api/v1/orders/{pending}/payment"),
            None,
            Owner::ById,
            StatusCode::OK,
        ),
        (
            Method::POST,
            format!("/api/v1/orders/{paid}/cancel"),
            None,
            Owner::ById,
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/api/v1/admin/products".into(),
            Some(json!({"name": "cup", "price": 500, "stock": 5})),
            Owner::Named,
            StatusCode::CREATED,
        ),
        (
            Method::PATCH,
            format!("/api/v1/admin/products/{product}"),
            Some(json!({"name": "fountain pen"})),
            Owner::Named,
            StatusCode::OK,
        ),
        (
            Method::POST,
            format!("/api/v1/admin/products/{product}/stock"),
            Some(json!({"delta": 10})),
            Owner::Named,
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/api/v1/admin/coupons".into(),
            Some(
                json!({"name": "c", "discountType": "FIXED", "discountValue": 100, "totalQuantity": 5}),
            ),
            Owner::Named,
            StatusCode::CREATED,
        ),
        (
            Method::GET,
            "/api/v1/coupons".into(),
            None,
            Owner::Named,
            StatusCode::OK,
        ),
        (
            Method::GET,
            format!("/api/v1/users/{owner}/coupons/{held}/history"),
            None,
            Owner::Named,
            StatusCode::OK,
        ),
        (
            Method::GET,
            format!("/api/v1/orders/{paid}/payments"),
            None,
            Owner::ById,
            StatusCode::OK,
        ),
        (
            Method::GET,
            "/api/v1/admin/coupons".into(),
            None,
            Owner::Named,
            StatusCode::OK,
        ),
        (
            Method::PATCH,
            format!("/api/v1/admin/coupons/{coupon}"),
            Some(json!({"totalQuantity": 20})),
            Owner::Named,
            StatusCode::OK,
        ),
        (
            Method::GET,
            "/api/v1/admin/orders".into(),
            None,
            Owner::Named,
            StatusCode::OK,
        ),
        (
            Method::POST,
            format!("/api/v1/admin/orders/{to_ship}/ship"),
            Some(json!({"trackingNumber": "CJ-1"})),
            Owner::Named,
            StatusCode::OK,
        ),
        (
            Method::POST,
            format!("/api/v1/admin/orders/{to_deliver}/deliver"),
            None,
            Owner::Named,
            StatusCode::OK,
        ),
        (
            Method::GET,
            "/api/v1/admin/events".into(),
            None,
            Owner::Named,
            StatusCode::OK,
        ),
        (
            Method::POST,
            "/api/v1/admin/events/retry".into(),
            None,
            Owner::Named,
            StatusCode::OK,
        ),
        (
            Method::POST,
            format!("/api/v1/admin/events/{}/retry", uuid::Uuid::now_v7()),
            None,
            Owner::Named,
            StatusCode::NOT_FOUND,
        ),
        (
            Method::GET,
            "/api/v1/admin/products".into(),
            None,
            Owner::Named,
            StatusCode::OK,
        ),
        (
            Method::POST,
            format!("/api/v1/admin/products/{tee}/variants"),
            Some(json!({"options": {"size": "M"}, "price": 1_000, "stock": 5})),
            Owner::Named,
            StatusCode::CREATED,
        ),
        (
            Method::PATCH,
            format!("/api/v1/admin/variants/{variant}"),
            Some(json!({"price": 1_100})),
            Owner::Named,
            StatusCode::OK,
        ),
        (
            Method::POST,
            format!("/api/v1/admin/variants/{variant}/stock"),
            Some(json!({"delta": 3})),
            Owner::Named,
            StatusCode::OK,
        ),
        (
            Method::GET,
            format!("/api/v1/users/{owner}/cart"),
            None,
            Owner::Named,
            StatusCode::OK,
        ),
        (
            Method::PUT,
            format!("/api/v1/users/{owner}/cart/items/{variant}"),
            Some(json!({"quantity": 1})),
            Owner::Named,
            StatusCode::OK,
        ),
        (
            Method::POST,
            format!("/api/v1/users/{owner}/cart/checkout"),
            Some(json!({})),
            Owner::Named,
            StatusCode::CREATED,
        ),
        (
            Method::PUT,
            format!("/api/v1/users/{owner}/cart/items/{variant}"),
            Some(json!({"quantity": 2})),
            Owner::Named,
            StatusCode::OK,
        ),
        (
            Method::DELETE,
            format!("/api/v1/users/{owner}/cart/items/{variant}"),
            None,
            Owner::Named,
            StatusCode::OK,
        ),
        (
            Method::DELETE,
            format!("/api/v1/users/{owner}/cart"),
            None,
            Owner::Named,
            StatusCode::OK,
        ),
        (
            Method::PATCH,
            format!("/api/v1/admin/users/{owner}"),
            Some(json!({"status": "ACTIVE"})),
            Owner::Named,
            StatusCode::OK,
        ),
        (
            Method::DELETE,
            "/api/v1/sessions/current".into(),
            None,
            Owner::Session,
            StatusCode::NO_CONTENT,
        ),
        (
            Method::POST,
            format!("/api/v1/users/{owner}/token"),
            None,
            Owner::Named,
            StatusCode::CREATED,
        ),
    ];

    // Who may call each route is the document's word: its `security`.
    let doc = Document::fetch(&app).await;
    let mut covered = std::collections::BTreeSet::new();
    let mut checked = 0;
    for (method, path, body, owner, success) in &routes {
        let (template, access) = doc.access(method, path, *owner);
        covered.insert((method.to_string(), template));
        // The rightful caller goes last, so every refusal is checked against an
        // unchanged world.
        let mut callers: Vec<As> = CALLERS.to_vec();
        callers.sort_by_key(|who| expected(access, *who, *success) == *success);
        for who in callers {
            let want = expected(access, who, *success);
            let before = footprint(&app).await;
            let token = w.token(&app, who, access);
            let refreshing = path == "/api/v1/sessions/refresh";
            let body = match body {
                Some(_) if refreshing => Some(json!({"refreshToken": refresh_token})),
                other => other.clone(),
            };
            let (status, answer) =
                call(&app, method.clone(), path, token.as_deref(), body.as_ref()).await;
            assert_eq!(status, want, "{method} {path} as {who:?}: {answer}");
            if refreshing {
                refresh_token = answer["refreshToken"].clone();
            }
            match status {
                StatusCode::UNAUTHORIZED => {
                    assert_eq!(answer["code"], "UNAUTHENTICATED", "{answer}")
                }
                StatusCode::FORBIDDEN if who == As::Suspended => {
                    assert_eq!(answer["code"], "USER_SUSPENDED", "{answer}")
                }
                StatusCode::FORBIDDEN => assert_eq!(answer["code"], "FORBIDDEN", "{answer}"),
                StatusCode::NOT_FOUND if want != *success => {
                    assert_eq!(answer["code"], "ORDER_NOT_FOUND", "{answer}")
                }
                _ => {}
            }
            if want != *success {
                assert_eq!(
                    footprint(&app).await,
                    before,
                    "{method} {path} as {who:?} changed something"
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, routes.len() * CALLERS.len());
    // Every route of the document is in the matrix.
    let untested: Vec<_> = doc.operations().difference(&covered).cloned().collect();
    assert!(
        untested.is_empty(),
        "routes the matrix does not call: {untested:?}"
    );
    app.check_invariants().await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn ownership_is_checked_before_the_resource_is_looked_up(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let me = app.create_user("me").await;
    let mine = app.user_token(me);
    let ghost = me + 1_000; // no such user
    let path = format!("/api/v1/users/{ghost}/balance");
    // Not entitled: 401 / 403, never a 404 that would tell whether the user exists.
    let (s, _) = call(&app, Method::GET, &path, None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = call(&app, Method::GET, &path, Some(&mine), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = call(&app, Method::GET, &path, Some(&app.admin_token), None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // Entitled (a validly signed token of that id): 404.
    let (s, b) = call(&app, Method::GET, &path, Some(&app.user_token(ghost)), None).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("USER_NOT_FOUND"))
    );
    // A malformed id is 401 to nobody, 400 to an authenticated caller.
    let (s, _) = call(&app, Method::GET, "/api/v1/users/abc/balance", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = call(
        &app,
        Method::GET,
        "/api/v1/users/abc/balance",
        Some(&mine),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // Admin routes: a missing product is 404 to the admin only.
    let admin_path = "/api/v1/admin/products/999999";
    let rename = json!({"name": "x"});
    let (s, _) = call(&app, Method::PATCH, admin_path, Some(&mine), Some(&rename)).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = call(
        &app,
        Method::PATCH,
        admin_path,
        Some(&app.admin_token),
        Some(&rename),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Orders and issues for someone else are refused before the body's ids are looked up.
    let body = json!({"userId": ghost, "items": [{"productId": 999999, "quantity": 1}]});
    let (s, _) = call(
        &app,
        Method::POST,
        "/api/v1/orders",
        Some(&mine),
        Some(&body),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = call(
        &app,
        Method::POST,
        "/api/v1/coupons/999999/issue",
        Some(&mine),
        Some(&json!({"userId": ghost})),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // A missing order is 404 to an authenticated user (it belongs to nobody).
    let (s, b) = call(
        &app,
        Method::GET,
        "/api/v1/orders/999999",
        Some(&mine),
        None,
    )
    .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("ORDER_NOT_FOUND"))
    );
    let (s, _) = call(&app, Method::GET, "/api/v1/orders/999999", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn malformed_and_forged_credentials_are_401(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let me = app.user_with_balance("me", 10_000).await;
    let good = app.user_token(me);
    let path = format!("/api/v1/users/{me}/balance/charge");
    let (id, sig) = good.split_once('.').unwrap();
    let mut flipped = sig.as_bytes().to_vec();
    flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
    let flipped = format!("{id}.{}", String::from_utf8(flipped).unwrap());
    let headers = [
        format!("Basic {good}"),
        "Bearer".to_string(),
        "Bearer ".to_string(),
        format!("Bearer {id}"),
        format!("Bearer {id}."),
        format!("Bearer {flipped}"),
        format!("Bearer {sig}"),
        format!("Bearer 0.{sig}"),
        format!("Bearer -{id}.{sig}"),
        format!("Bearer {}x", app.admin_token),
        "Bearer \u{1F600}".to_string(),
        good.clone(), // no scheme
    ];
    for header in &headers {
        let res = app
            .client
            .post(app.url(&path))
            .header("authorization", header.as_bytes())
            .json(&json!({"amount": 1000}))
            .send()
            .await
            .unwrap();
        let status = res.status();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{header:?}: {body}");
        assert_eq!(body["code"], "UNAUTHENTICATED");
    }
    assert_eq!(app.balance(me).await, 10_000);
    // The scheme is case-insensitive; the right token works.
    let res = app
        .client
        .post(app.url(&path))
        .header("authorization", format!("bearer {good}"))
        .json(&json!({"amount": 1000}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(app.balance(me).await, 11_000);
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn creating_a_user_answers_a_token_that_every_instance_accepts(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let (s, user) = app.post("/api/v1/users", json!({"name": "kim"})).await;
    assert_eq!(s, StatusCode::CREATED, "{user}");
    let id = user["id"].as_i64().unwrap();
    let token = user["token"].as_str().expect("a token").to_string();
    let path = format!("/api/v1/users/{id}/balance");
    let (s, b) = call(&app, Method::GET, &path, Some(&token), None).await;
    assert_eq!((s, b["balance"].as_i64()), (StatusCode::OK, Some(0)));
    // Another server on the same database (a restart, or another instance) accepts it:
    // the signing key lives in the database.
    let instance = crate::helpers::start_instance(&app, &[]).await;
    let res = app
        .client
        .get(format!("{}{path}", instance.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // A user's token never opens admin routes.
    let (s, _) = call(
        &app,
        Method::GET,
        "/api/v1/admin/events",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_embedded_default_generates_an_admin_token_beside_the_database() {
    let app = spawn_app_with(Backend::Sqlite, |c| c.admin_token = None).await;
    let file = app.dir.path().join("shop.db.admin-token");
    let token = std::fs::read_to_string(&file).expect("the generated admin token");
    let token = token.trim();
    assert!(token.len() >= 32, "{token}");
    let body = json!({"name": "cup", "price": 500, "stock": 5});
    let (s, _) = call(
        &app,
        Method::POST,
        "/api/v1/admin/products",
        Some(token),
        Some(&body),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = call(
        &app,
        Method::POST,
        "/api/v1/admin/products",
        Some(crate::helpers::ADMIN_TOKEN),
        Some(&body),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn idempotency_keys_are_scoped_to_the_caller(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let a = app.create_user("a").await;
    let b = app.create_user("b").await;
    for user in [a, b] {
        let res = app
            .client
            .post(app.url(&format!("/api/v1/users/{user}/balance/charge")))
            .bearer_auth(app.user_token(user))
            .header("Idempotency-Key", "same-key")
            .json(&json!({"amount": 1000}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert!(res.headers().get("idempotent-replayed").is_none());
    }
    assert_eq!((app.balance(a).await, app.balance(b).await), (1000, 1000));
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn a_refused_caller_never_has_its_key_looked_at_or_stored(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = app.user_with_balance("owner", 100_000).await;
    let other = app.create_user("other").await;
    let product = app.create_product("pen", 1_000, 100).await;
    let coupon = app.create_coupon(json!({"totalQuantity": 10})).await;
    let (s, order) = app.order(owner, &[(product, 1)], None, false).await;
    assert_eq!(s, StatusCode::CREATED, "{order}");
    let order = order["id"].as_i64().unwrap();
    let mutations: Vec<(String, Value, Value)> = vec![
        (
            format!("/api/v1/users/{owner}/balance/charge"),
            json!({"amount": 1000}),
            json!({"amount": 2000}),
        ),
        (
            "/api/v1/orders".into(),
            json!({"userId": owner, "items": [{"productId": product, "quantity": 1}], "pay": true}),
            json!({"userId": owner, "items": [{"productId": product, "quantity": 2}]}),
        ),
        (
            format!("/api/v1/orders/{order}/payment"),
            json!({}),
            json!({"x": 1}),
        ),
        (
            format!("/api/v1/orders/{order}/cancel"),
            json!({}),
            json!({"x": 1}),
        ),
        (
            format!("/api/v1/coupons/{coupon}/issue"),
            json!({"userId": owner}),
            json!({ "userId": owner }),
        ),
        (
            "/api/v1/admin/products".into(),
            json!({"name": "cup", "price": 500, "stock": 5}),
            json!({"name": "mug", "price": 500, "stock": 5}),
        ),
    ];
    let w = World {
        owner,
        other,
        suspended: other,
        session: String::new(),
    };
    let before = footprint(&app).await;
    for (path, body, another) in &mutations {
        for who in [As::Nobody, As::BadToken, As::OtherUser] {
            let token = w.token(&app, who, Access::OwnerOnly);
            for b in [body, another, body] {
                let mut req = app
                    .client
                    .post(app.url(path))
                    .header("Idempotency-Key", "stranger-key")
                    .json(b);
                if let Some(t) = &token {
                    req = req.bearer_auth(t);
                }
                let res = req.send().await.unwrap();
                let status = res.status();
                let answer: Value = res.json().await.unwrap_or(Value::Null);
                let want = match who {
                    As::OtherUser if path.starts_with("/api/v1/orders/") => StatusCode::NOT_FOUND,
                    As::OtherUser => StatusCode::FORBIDDEN,
                    _ => StatusCode::UNAUTHORIZED,
                };
                // Never 409 or 422: the key was not looked at.
                assert_eq!(status, want, "POST {path} as {who:?}: {answer}");
            }
        }
    }
    assert_eq!(
        footprint(&app).await,
        before,
        "a refused caller wrote something"
    );
}
