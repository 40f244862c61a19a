//! Accounts and sessions: sign-up with email and password, login, refresh rotation
//! and reuse, logout, a new password ending the other sessions, access expiry, new API tokens across instances, suspension,
//! the login rate limit, and refusals that change nothing.

use std::time::{Duration, Instant};

use chrono::TimeDelta;
use reqwest::{Method, StatusCode};
use rstest::rstest;
use serde_json::{Value, json};

use shop::clock::Clock;

use crate::helpers::{Backend, TestApp, spawn_app, spawn_app_with, start_instance};

/// A request to `base` + `path` with `token` and a JSON `body`.
async fn send(
    app: &TestApp,
    base: &str,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = app.client.request(method, format!("{base}{path}"));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.expect("request");
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn get(app: &TestApp, path: &str, token: &str) -> (StatusCode, Value) {
    get_at(app, &app.base, path, token).await
}

/// As [`get`], from the instance at `base`.
async fn get_at(app: &TestApp, base: &str, path: &str, token: &str) -> (StatusCode, Value) {
    send(app, base, Method::GET, path, Some(token), None).await
}

/// `DELETE /api/v1/sessions/current` with `token`: log out.
async fn logout(app: &TestApp, token: Option<&str>) -> (StatusCode, Value) {
    let path = "/api/v1/sessions/current";
    send(app, &app.base, Method::DELETE, path, token, None).await
}

/// A new API token for user `id`, asked at `base` with `token`.
async fn new_api_token(app: &TestApp, base: &str, id: i64, token: &str) -> (StatusCode, Value) {
    let path = format!("/api/v1/users/{id}/token");
    send(app, base, Method::POST, &path, Some(token), None).await
}

/// The admin sets user `id`'s status to `status` (sent as it is, valid or not).
async fn set_status(app: &TestApp, id: i64, status: &str) -> (StatusCode, Value) {
    let path = format!("/api/v1/admin/users/{id}");
    let body = json!({ "status": status });
    send(
        app,
        &app.base,
        Method::PATCH,
        &path,
        Some(&app.admin_token),
        Some(body),
    )
    .await
}

/// Signs up `email` with `password`: (user id, API token).
async fn sign_up(app: &TestApp, email: &str, password: &str) -> (i64, String) {
    let body = json!({"name": "kim", "email": email, "password": password});
    let (s, b) = send(
        app,
        &app.base,
        Method::POST,
        "/api/v1/users",
        None,
        Some(body),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    (
        b["id"].as_i64().unwrap(),
        b["token"].as_str().unwrap().to_string(),
    )
}

async fn login(app: &TestApp, email: &str, password: &str) -> (StatusCode, Value) {
    let body = json!({"email": email, "password": password});
    send(
        app,
        &app.base,
        Method::POST,
        "/api/v1/sessions",
        None,
        Some(body),
    )
    .await
}

async fn refresh(app: &TestApp, token: &Value) -> (StatusCode, Value) {
    let body = json!({"refreshToken": token});
    send(
        app,
        &app.base,
        Method::POST,
        "/api/v1/sessions/refresh",
        None,
        Some(body),
    )
    .await
}

fn balance_path(user: i64) -> String {
    format!("/api/v1/users/{user}/balance")
}

const PASSWORD: &str = "correct horse battery";

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn sign_up_login_and_profile(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let body = json!({"name": "kim", "email": "Kim@Example.com", "password": PASSWORD});
    let (s, created) = send(
        &app,
        &app.base,
        Method::POST,
        "/api/v1/users",
        None,
        Some(body),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let id = created["id"].as_i64().unwrap();
    assert_eq!(created["email"], "Kim@Example.com");
    assert_eq!(created["status"], "ACTIVE");
    assert!(created["createdAt"].is_string() && created["token"].is_string());
    let token = created["token"].as_str().unwrap();
    // A user without an email answers `"email": null`.
    let (s, plain) = app.post("/api/v1/users", json!({"name": "lee"})).await;
    assert_eq!((s, &plain["email"]), (StatusCode::CREATED, &Value::Null));
    // The password is stored only as an Argon2id hash.
    let hash: (String,) = sqlx::query_as("select password_hash from users where id = $1")
        .bind(id)
        .fetch_one(app.state.db.read())
        .await
        .unwrap();
    assert!(hash.0.starts_with("$argon2id$") && !hash.0.contains(PASSWORD));

    let (s, me) = get(&app, &format!("/api/v1/users/{id}"), token).await;
    assert_eq!(s, StatusCode::OK, "{me}");
    assert_eq!(
        me,
        json!({"id": id, "name": "kim", "email": "Kim@Example.com", "status": "ACTIVE",
               "createdAt": created["createdAt"]})
    );

    // Login, case-insensitive on the email.
    let (s, session) = login(&app, "kim@EXAMPLE.com", PASSWORD).await;
    assert_eq!(s, StatusCode::CREATED, "{session}");
    assert_eq!(session["userId"], id);
    for field in [
        "accessToken",
        "accessExpiresAt",
        "refreshToken",
        "refreshExpiresAt",
    ] {
        assert!(session[field].is_string(), "{field}: {session}");
    }
    let access = session["accessToken"].as_str().unwrap();
    let (s, b) = get(&app, &balance_path(id), access).await;
    assert_eq!((s, &b["balance"]), (StatusCode::OK, &json!(0)));
    let expires =
        chrono::DateTime::parse_from_rfc3339(session["accessExpiresAt"].as_str().unwrap()).unwrap();
    let ttl = expires.signed_duration_since(app.clock.now());
    assert!(
        ttl > TimeDelta::minutes(14) && ttl <= TimeDelta::minutes(15),
        "{ttl}"
    );

    // Profile update with either token; the email stays unique regardless of case.
    let path = format!("/api/v1/users/{id}");
    let change = json!({"name": "kim min", "email": "min@example.com"});
    let (s, b) = send(
        &app,
        &app.base,
        Method::PATCH,
        &path,
        Some(access),
        Some(change),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        (b["name"].as_str(), b["email"].as_str()),
        (Some("kim min"), Some("min@example.com"))
    );
    let (s, _) = login(&app, "min@example.com", PASSWORD).await;
    assert_eq!(s, StatusCode::CREATED);
    let new_password = json!({"password": "another password"});
    let (s, _) = send(
        &app,
        &app.base,
        Method::PATCH,
        &path,
        Some(token),
        Some(new_password),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = login(&app, "min@example.com", "another password").await;
    assert_eq!(s, StatusCode::CREATED);

    // EMAIL_TAKEN, at sign-up and on update, regardless of case.
    let body = json!({"name": "x", "email": "MIN@example.COM", "password": PASSWORD});
    let (s, b) = send(
        &app,
        &app.base,
        Method::POST,
        "/api/v1/users",
        None,
        Some(body),
    )
    .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::CONFLICT, Some("EMAIL_TAKEN")),
        "{b}"
    );
    let (other, other_token) = sign_up(&app, "other@example.com", PASSWORD).await;
    let (s, b) = send(
        &app,
        &app.base,
        Method::PATCH,
        &format!("/api/v1/users/{other}"),
        Some(&other_token),
        Some(json!({"email": "Min@Example.com"})),
    )
    .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::CONFLICT, Some("EMAIL_TAKEN")),
        "{b}"
    );
    assert_eq!(app.scalar("select count(*) from users").await, 3);
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn bad_input_is_400_and_changes_nothing(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let (id, token) = sign_up(&app, "kim@example.com", PASSWORD).await;
    let plain = app.create_user("lee").await;
    let before = footprint(&app).await;
    for body in [
        json!({"name": "a", "email": "a@example.com"}),
        json!({"name": "a", "password": PASSWORD}),
        json!({"name": "a", "email": "a@example.com", "password": "short"}),
        json!({"name": "a", "email": "a@example.com", "password": "x".repeat(129)}),
        json!({"name": "a", "email": "not an email", "password": PASSWORD}),
        json!({"name": "a", "email": "a@example", "password": PASSWORD}),
        json!({"name": "a", "email": 5, "password": PASSWORD}),
        json!({"name": "a", "email": "a@example.com", "password": PASSWORD, "role": "admin"}),
        json!({"name": "", "email": "a@example.com", "password": PASSWORD}),
    ] {
        let (s, b) = send(
            &app,
            &app.base,
            Method::POST,
            "/api/v1/users",
            None,
            Some(body.clone()),
        )
        .await;
        assert_eq!(
            (s, b["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("INVALID_REQUEST")),
            "{body}: {b}"
        );
    }
    let path = format!("/api/v1/users/{id}");
    for body in [
        json!({"password": "short"}),
        json!({"email": "nope"}),
        json!({"status": "SUSPENDED"}),
        json!({"name": ""}),
    ] {
        let (s, b) = send(
            &app,
            &app.base,
            Method::PATCH,
            &path,
            Some(&token),
            Some(body.clone()),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {b}");
    }
    // An account has an email and a password, or neither.
    let plain_path = format!("/api/v1/users/{plain}");
    for body in [
        json!({"password": PASSWORD}),
        json!({"email": "lee@example.com"}),
    ] {
        let (s, b) = send(
            &app,
            &app.base,
            Method::PATCH,
            &plain_path,
            Some(&app.user_token(plain)),
            Some(body.clone()),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {b}");
    }
    for body in [
        json!({"email": "kim@example.com"}),
        json!({"password": PASSWORD}),
        json!({"email": 1, "password": "x"}),
        json!({"refreshToken": "x"}),
    ] {
        let (s, b) = send(
            &app,
            &app.base,
            Method::POST,
            "/api/v1/sessions",
            None,
            Some(body.clone()),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {b}");
    }
    let (s, _) = send(
        &app,
        &app.base,
        Method::POST,
        "/api/v1/sessions/refresh",
        None,
        Some(json!({})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = set_status(&app, id, "BANNED").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, b) = set_status(&app, 999999, "SUSPENDED").await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("USER_NOT_FOUND"))
    );
    assert_eq!(footprint(&app).await, before);
    let (s, me) = get(&app, &path, &token).await;
    assert_eq!(
        (s, me["email"].as_str(), me["status"].as_str()),
        (StatusCode::OK, Some("kim@example.com"), Some("ACTIVE"))
    );
}

/// Everything an account request could change.
async fn footprint(app: &TestApp) -> Vec<i64> {
    let mut out = Vec::new();
    for sql in [
        "select count(*) from users",
        "select count(*) from users where email is not null",
        "select count(*) from users where password_hash is not null",
        "select count(*) from users where status <> 'ACTIVE'",
        "select count(*) from sessions",
        "select count(*) from sessions where ended_at is not null",
        "select count(*) from refresh_tokens",
        "select count(*) from revocations",
        "select count(*) from idempotency_keys where body like '%Token%'",
    ] {
        out.push(app.scalar(sql).await);
    }
    out
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn wrong_password_and_unknown_email_answer_the_same(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    sign_up(&app, "kim@example.com", PASSWORD).await;
    let before = footprint(&app).await;
    // The quickest of a few rounds each (the machine may be busy with other tests).
    let mut times = [Duration::MAX; 2];
    let mut answers = Vec::new();
    for round in 0..3 {
        for (i, email) in ["kim@example.com", "ghost@example.com"]
            .into_iter()
            .enumerate()
        {
            let started = Instant::now();
            let (s, b) = login(&app, email, "wrong password").await;
            times[i] = times[i].min(started.elapsed());
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
            if round == 0 {
                answers.push(b);
            }
        }
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0]["code"], "INVALID_CREDENTIALS");
    // About the same time: both verify one Argon2id hash.
    let (known, unknown) = (times[0].as_secs_f64(), times[1].as_secs_f64());
    assert!(
        unknown > known / 4.0 && known > unknown / 4.0,
        "{known} vs {unknown}"
    );
    assert_eq!(
        footprint(&app).await,
        before,
        "a refused login wrote something"
    );
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn login_is_rate_limited_per_email(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    sign_up(&app, "kim@example.com", PASSWORD).await;
    for _ in 0..5 {
        let (s, _) = login(&app, "kim@example.com", "wrong password").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
    // The email is its own budget, whatever its case, even with the right password.
    let res = app
        .client
        .post(app.url("/api/v1/sessions"))
        .json(&json!({"email": "KIM@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let b: Value = res.json().await.unwrap();
    assert_eq!(b["code"], "RATE_LIMITED");
    // Another email is not held back.
    let (s, _) = login(&app, "lee@example.com", "wrong password").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(app.scalar("select count(*) from sessions").await, 0);
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn refresh_rotates_and_a_reused_refresh_token_ends_the_session(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let (id, _) = sign_up(&app, "kim@example.com", PASSWORD).await;
    let (s, first) = login(&app, "kim@example.com", PASSWORD).await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    let (s, second) = refresh(&app, &first["refreshToken"]).await;
    assert_eq!(s, StatusCode::CREATED, "{second}");
    assert_eq!(second["userId"], id);
    assert_ne!(second["refreshToken"], first["refreshToken"]);
    let access = second["accessToken"].as_str().unwrap();
    assert_eq!(get(&app, &balance_path(id), access).await.0, StatusCode::OK);
    // Refresh tokens are stored hashed only.
    let raw = second["refreshToken"].as_str().unwrap();
    let stored = app
        .scalar(&format!(
            "select count(*) from refresh_tokens where token_sha256 = '{raw}'"
        ))
        .await;
    assert_eq!(stored, 0);
    // The first refresh token again: refused, and the session ends with it.
    let (s, b) = refresh(&app, &first["refreshToken"]).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("INVALID_CREDENTIALS")),
        "{b}"
    );
    let (s, b) = get(&app, &balance_path(id), access).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("UNAUTHENTICATED"))
    );
    assert_eq!(
        get(
            &app,
            &balance_path(id),
            first["accessToken"].as_str().unwrap()
        )
        .await
        .0,
        StatusCode::UNAUTHORIZED
    );
    let (s, _) = refresh(&app, &second["refreshToken"]).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Another session of the same user is not touched.
    let (s, other) = login(&app, "kim@example.com", PASSWORD).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(
        get(
            &app,
            &balance_path(id),
            other["accessToken"].as_str().unwrap()
        )
        .await
        .0,
        StatusCode::OK
    );
    let (s, _) = refresh(&app, &json!("no-such-token")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn logout_ends_the_session_and_its_tokens(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let (id, api_token) = sign_up(&app, "kim@example.com", PASSWORD).await;
    let (_, session) = login(&app, "kim@example.com", PASSWORD).await;
    let access = session["accessToken"].as_str().unwrap();
    // An API token has no session to end.
    let (s, b) = logout(&app, Some(&api_token)).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("FORBIDDEN"))
    );
    let (s, _) = logout(&app, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = logout(&app, Some(access)).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        get(&app, &balance_path(id), access).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (s, _) = refresh(&app, &session["refreshToken"]).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = logout(&app, Some(access)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // The API token still works.
    assert_eq!(
        get(&app, &balance_path(id), &api_token).await.0,
        StatusCode::OK
    );
    // A restarted server (a fresh view, loaded from the database) still refuses it.
    let instance = start_instance(&app, &[]).await;
    let (s, _) = get_at(&app, &instance.base, &balance_path(id), access).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

/// A new password ends every other session of the user in its commit: their access
/// and refresh tokens stop working at once, here and on a fresh instance. The session
/// that asked keeps working, and so do API tokens; asked with an API token, it ends
/// every session. A name change ends nothing.
#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn a_new_password_ends_the_other_sessions(#[case] backend: Backend) {
    const NEW: &str = "a new horse battery";
    let app = spawn_app(backend).await;
    let (id, api_token) = sign_up(&app, "kim@example.com", PASSWORD).await;
    let access = |s: &Value| s["accessToken"].as_str().unwrap().to_string();
    let profile = format!("/api/v1/users/{id}");
    let change = |token: String, body: Value| {
        let profile = profile.clone();
        let app = &app;
        async move {
            send(
                app,
                &app.base,
                Method::PATCH,
                &profile,
                Some(&token),
                Some(body),
            )
            .await
        }
    };
    let (_, a) = login(&app, "kim@example.com", PASSWORD).await;
    let (_, b) = login(&app, "kim@example.com", PASSWORD).await;

    let (s, body) = change(access(&a), json!({"name": "kim lee"})).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        get(&app, &balance_path(id), &access(&b)).await.0,
        StatusCode::OK
    );

    let (s, body) = change(access(&a), json!({"password": NEW})).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        body.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["createdAt", "email", "id", "name", "status"],
        "the answer is the user: {body}"
    );
    assert_eq!(
        get(&app, &balance_path(id), &access(&b)).await.0,
        StatusCode::UNAUTHORIZED,
        "the other session's access token"
    );
    assert_eq!(
        refresh(&app, &b["refreshToken"]).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(&app, &balance_path(id), &access(&a)).await.0,
        StatusCode::OK
    );
    let (s, a2) = refresh(&app, &a["refreshToken"]).await;
    assert_eq!(s, StatusCode::CREATED, "the asking session goes on: {a2}");
    assert_eq!(
        login(&app, "kim@example.com", PASSWORD).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (s, c) = login(&app, "kim@example.com", NEW).await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    assert_eq!(
        get(&app, &balance_path(id), &api_token).await.0,
        StatusCode::OK
    );

    // With the API token: every session ends.
    let (s, body) = change(api_token.clone(), json!({"password": PASSWORD})).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    for session in [&a2, &c] {
        assert_eq!(
            get(&app, &balance_path(id), &access(session)).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        get(&app, &balance_path(id), &api_token).await.0,
        StatusCode::OK
    );

    // A fresh instance (its view loaded from the database) refuses them too.
    let instance = start_instance(&app, &[]).await;
    for session in [&b, &a2, &c] {
        let (s, _) = get_at(&app, &instance.base, &balance_path(id), &access(session)).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
}

/// Old rows of `revocations` are pruned once no view needs them: ended sessions after
/// their access tokens have expired, and API-token versions and statuses a newer row
/// of the user supersedes. Recent rows stay, and a fresh instance, its view loaded
/// from what is left, refuses and admits exactly as before.
#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn old_revocations_are_pruned_and_the_view_stays_the_same(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let (id, token0) = sign_up(&app, "kim@example.com", PASSWORD).await;
    let new_token = |token: String| {
        let app = &app;
        async move {
            let (s, b) = new_api_token(app, &app.base, id, &token).await;
            assert_eq!(s, StatusCode::CREATED, "{b}");
            b["token"].as_str().unwrap().to_string()
        }
    };
    let suspend = |status: &'static str| {
        let app = &app;
        async move {
            let (s, b) = set_status(app, id, status).await;
            assert_eq!(s, StatusCode::OK, "{b}");
        }
    };
    let rows = |kind: &'static str| {
        let app = &app;
        async move {
            app.scalar(&format!(
                "select count(*) from revocations where user_id = {id} and kind = '{kind}'"
            ))
            .await
        }
    };

    // Old: a logout, two new API tokens, a suspension lifted.
    let (_, session) = login(&app, "kim@example.com", PASSWORD).await;
    let access = session["accessToken"].as_str().unwrap();
    assert_eq!(logout(&app, Some(access)).await.0, StatusCode::NO_CONTENT);
    let token1 = new_token(token0.clone()).await;
    let token2 = new_token(token1.clone()).await;
    suspend("SUSPENDED").await;
    suspend("ACTIVE").await;
    let keep = TimeDelta::seconds(900) + TimeDelta::minutes(10);
    app.clock.advance(keep + TimeDelta::seconds(1));
    // Recent: another logout.
    let (_, recent) = login(&app, "kim@example.com", PASSWORD).await;
    let recent_access = recent["accessToken"].as_str().unwrap();
    assert_eq!(
        logout(&app, Some(recent_access)).await.0,
        StatusCode::NO_CONTENT
    );
    let before = (
        rows("SESSION").await,
        rows("API_TOKENS").await,
        rows("STATUS").await,
    );
    assert_eq!(before, (2, 2, 2));

    let pruned = app.state.prune_revocations().await.unwrap();
    assert_eq!(
        pruned, 3,
        "the old session, token version 1 and the suspension"
    );
    let after = (
        rows("SESSION").await,
        rows("API_TOKENS").await,
        rows("STATUS").await,
    );
    assert_eq!(after, (1, 1, 1), "the recent logout and the newest of each");
    assert_eq!(app.state.prune_revocations().await.unwrap(), 0);

    let instance = start_instance(&app, &[]).await;
    for base in [&app.base, &instance.base] {
        for (token, want) in [
            (&token0, StatusCode::UNAUTHORIZED),
            (&token1, StatusCode::UNAUTHORIZED),
            (&token2, StatusCode::OK),
            (&recent_access.to_string(), StatusCode::UNAUTHORIZED),
        ] {
            let (s, b) = get_at(&app, base, &balance_path(id), token).await;
            assert_eq!(s, want, "{base}: {b}");
        }
    }
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn access_tokens_expire_with_the_clock(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let (id, _) = sign_up(&app, "kim@example.com", PASSWORD).await;
    let (_, session) = login(&app, "kim@example.com", PASSWORD).await;
    let access = session["accessToken"].as_str().unwrap();
    app.clock.advance(TimeDelta::minutes(14));
    assert_eq!(get(&app, &balance_path(id), access).await.0, StatusCode::OK);
    app.clock
        .advance(TimeDelta::minutes(1) + TimeDelta::seconds(1));
    let (s, b) = get(&app, &balance_path(id), access).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("UNAUTHENTICATED"))
    );
    // The refresh token still works, for a fresh access token.
    let (s, next) = refresh(&app, &session["refreshToken"]).await;
    assert_eq!(s, StatusCode::CREATED, "{next}");
    assert_eq!(
        get(
            &app,
            &balance_path(id),
            next["accessToken"].as_str().unwrap()
        )
        .await
        .0,
        StatusCode::OK
    );
    // Refresh tokens expire too (30 days).
    app.clock
        .advance(TimeDelta::days(30) + TimeDelta::seconds(1));
    let (s, _) = refresh(&app, &next["refreshToken"]).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn suspended_users_are_refused_until_reactivated(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let (id, api_token) = sign_up(&app, "kim@example.com", PASSWORD).await;
    let (_, session) = login(&app, "kim@example.com", PASSWORD).await;
    let access = session["accessToken"].as_str().unwrap().to_string();
    let product = app.create_product("pen", 1_000, 10).await;
    let (s, _) = app.charge(id, 10_000).await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = set_status(&app, id, "SUSPENDED").await;
    assert_eq!(
        (s, b["status"].as_str()),
        (StatusCode::OK, Some("SUSPENDED")),
        "{b}"
    );
    let before = footprint(&app).await;
    let orders = app.scalar("select count(*) from orders").await;
    let calls: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("/api/v1/users/{id}"), None),
        (
            Method::PATCH,
            format!("/api/v1/users/{id}"),
            Some(json!({"name": "x"})),
        ),
        (Method::GET, balance_path(id), None),
        (
            Method::POST,
            format!("/api/v1/users/{id}/balance/charge"),
            Some(json!({"amount": 1000})),
        ),
        (
            Method::GET,
            format!("/api/v1/users/{id}/balance/history"),
            None,
        ),
        (Method::GET, format!("/api/v1/users/{id}/orders"), None),
        (Method::POST, format!("/api/v1/users/{id}/token"), None),
        (
            Method::POST,
            "/api/v1/orders".into(),
            Some(json!({"userId": id, "items": [{"productId": product, "quantity": 1}]})),
        ),
        (Method::DELETE, "/api/v1/sessions/current".into(), None),
        (Method::GET, "/api/v1/admin/events".into(), None),
    ];
    for token in [&api_token, &access] {
        for (method, path, body) in &calls {
            let (s, b) = send(
                &app,
                &app.base,
                method.clone(),
                path,
                Some(token),
                body.clone(),
            )
            .await;
            assert_eq!(
                (s, b["code"].as_str()),
                (StatusCode::FORBIDDEN, Some("USER_SUSPENDED")),
                "{method} {path}: {b}"
            );
        }
    }
    // Public routes still answer (the token opens nothing more than no token does).
    assert_eq!(
        get(&app, "/api/v1/products", &api_token).await.0,
        StatusCode::OK
    );
    // Login and refresh: the right password says suspended, a wrong one says nothing.
    let (s, b) = login(&app, "kim@example.com", PASSWORD).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("USER_SUSPENDED"))
    );
    let (s, _) = login(&app, "kim@example.com", "wrong password").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, b) = refresh(&app, &session["refreshToken"]).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("USER_SUSPENDED"))
    );
    assert_eq!(
        footprint(&app).await,
        before,
        "a suspended user changed something"
    );
    assert_eq!(app.scalar("select count(*) from orders").await, orders);
    assert_eq!(
        app.scalar(&format!("select balance from users where id = {id}"))
            .await,
        10_000
    );

    // Reactivated: every token works again, the refresh token included.
    let (s, b) = set_status(&app, id, "ACTIVE").await;
    assert_eq!(
        (s, b["status"].as_str()),
        (StatusCode::OK, Some("ACTIVE")),
        "{b}"
    );
    assert_eq!(
        get(&app, &balance_path(id), &api_token).await.0,
        StatusCode::OK
    );
    assert_eq!(
        get(&app, &balance_path(id), &access).await.0,
        StatusCode::OK
    );
    let (s, _) = refresh(&app, &session["refreshToken"]).await;
    assert_eq!(s, StatusCode::CREATED);
}

/// Polls `base` + `path` with `token` until it answers `want`; returns how long it took
/// (panics past `bound`).
async fn converges(
    app: &TestApp,
    base: &str,
    path: &str,
    token: &str,
    want: StatusCode,
    bound: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        let (s, _) = get_at(app, base, path, token).await;
        if s == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < bound,
            "{path} at {base} still answers {s}, not {want}, after {bound:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[rstest]
#[case::postgres_with_redis(true)]
#[case::postgres_without_redis(false)]
#[tokio::test]
async fn a_new_api_token_and_a_suspension_reach_another_instance(#[case] redis: bool) {
    let app = spawn_app_with(Backend::Postgres, |c| {
        if !redis {
            c.redis_url = None;
        }
    })
    .await;
    let id = app.create_user("kim").await;
    let old = app.user_token(id);
    let instance = start_instance(&app, &[]).await;
    let path = balance_path(id);
    let (s, _) = get_at(&app, &instance.base, &path, &old).await;
    assert_eq!(s, StatusCode::OK);
    // The documented staleness (2 s), with room for a slow machine.
    let bound = Duration::from_secs(shop::account::revocations::STALENESS_SECS + 3);

    let (s, b) = new_api_token(&app, &app.base, id, &old).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let new = b["token"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    // At once here; within the staleness there.
    assert_eq!(get(&app, &path, &old).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(get(&app, &path, &new).await.0, StatusCode::OK);
    converges(
        &app,
        &instance.base,
        &path,
        &old,
        StatusCode::UNAUTHORIZED,
        bound,
    )
    .await;
    let (s, _) = get_at(&app, &instance.base, &path, &new).await;
    assert_eq!(s, StatusCode::OK);

    // A token made on the other instance revokes this one's here.
    let (s, b) = new_api_token(&app, &instance.base, id, &new).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let newest = b["token"].as_str().unwrap().to_string();
    converges(
        &app,
        &app.base,
        &path,
        &new,
        StatusCode::UNAUTHORIZED,
        bound,
    )
    .await;
    assert_eq!(get(&app, &path, &newest).await.0, StatusCode::OK);

    // Suspension and reactivation travel the same way.
    let (s, _) = set_status(&app, id, "SUSPENDED").await;
    assert_eq!(s, StatusCode::OK);
    converges(
        &app,
        &instance.base,
        &path,
        &newest,
        StatusCode::FORBIDDEN,
        bound,
    )
    .await;
    let (s, _) = set_status(&app, id, "ACTIVE").await;
    assert_eq!(s, StatusCode::OK);
    converges(&app, &instance.base, &path, &newest, StatusCode::OK, bound).await;
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
#[tokio::test]
async fn answers_holding_tokens_are_never_stored_under_a_key(#[case] backend: Backend) {
    let app = spawn_app(backend).await;
    let (id, token) = sign_up(&app, "kim@example.com", PASSWORD).await;
    let mut tokens = Vec::new();
    let mut current = token;
    for _ in 0..2 {
        let res = app
            .client
            .post(app.url(&format!("/api/v1/users/{id}/token")))
            .bearer_auth(&current)
            .header("Idempotency-Key", "same-key")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        let b: Value = res.json().await.unwrap();
        current = b["token"].as_str().unwrap().to_string();
        tokens.push(current.clone());
    }
    assert_ne!(tokens[0], tokens[1]);
    let res = app
        .client
        .post(app.url("/api/v1/sessions"))
        .header("Idempotency-Key", "login-key")
        .json(&json!({"email": "kim@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    assert_eq!(app.scalar("select count(*) from idempotency_keys").await, 0);
    // A profile update is deduplicated as usual.
    for _ in 0..2 {
        let res = app
            .client
            .patch(app.url(&format!("/api/v1/users/{id}")))
            .bearer_auth(&current)
            .header("Idempotency-Key", "rename")
            .json(&json!({"name": "kim min"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    assert_eq!(app.scalar("select count(*) from idempotency_keys").await, 1);
    assert_eq!(
        app.scalar("select count(*) from idempotency_keys where body like '%token%'")
            .await,
        0
    );
}
