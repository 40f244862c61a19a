//! `/api/v1/users` (sign-up, profile, new API token), `/api/v1/sessions` (login,
//! refresh, logout) and `/api/v1/admin/users/{userId}` (status).
//!
//! Answers holding a token (sign-up, login, refresh, new API token) are never stored
//! under an `Idempotency-Key`: a token never sits in the database. Those routes are
//! not deduplicated by a key; the others are.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::revocations::Change;
use super::store::{self, Patch, Refreshed};
use super::{
    AccountError, ApiToken, CreatedUser, SessionTokens, Status, User, hash_password,
    new_refresh_token, refresh_token_sha256, validate_email, validate_name, validate_password,
    verify_password,
};
use crate::app::AppState;
use crate::auth::{Authenticated, Caller, CurrentSession, OwnUser};
use crate::clock::to_millis;
use crate::error::{ApiError, ApiResult, ErrorBody, ErrorCode};
use crate::http::idempotency::{self, Idempotency, TxWork};
use crate::http::{Json, PathId};
use crate::ids::{SessionId, UserId};

/// The user and session routes (the admin's are in [`admin_router`]).
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_user))
        .routes(routes!(get_user, update_user))
        .routes(routes!(new_token))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
}

/// Admin routes, relative to `/api/v1/admin` (see [`crate::app::router`]).
pub fn admin_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(set_status))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Kim", "email": "kim@example.com", "password": "correct horse battery"}))]
pub struct CreateUserRequest {
    /// 1..=100 characters.
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// Unique regardless of case; with `password`, or neither.
    pub email: Option<String>,
    /// 8..=128 characters; with `email`, or neither.
    #[schema(min_length = 8, max_length = 128)]
    pub password: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Kim Lee"}))]
pub struct UpdateUserRequest {
    #[schema(min_length = 1, max_length = 100)]
    pub name: Option<String>,
    pub email: Option<String>,
    #[schema(min_length = 8, max_length = 128)]
    pub password: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "kim@example.com", "password": "correct horse battery"}))]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(example = json!({"refreshToken": "(the refreshToken of the last login or refresh)"}))]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"status": "SUSPENDED"}))]
pub struct SetStatusRequest {
    pub status: Status,
}

/// Makes a revocation take effect: at once on this instance, and on the others through
/// Redis (where configured) or their next poll of `revocations`.
async fn announce(state: &AppState, change: Change) {
    state.auth.revocations().apply(change);
    state.cache.publish_revocation(&change.to_message()).await;
}

/// Create a user (a buyer with a zero balance), optionally with an email and a
/// password to log in with (both or neither). The answer carries the user's API token
/// (version 0). Open to anyone. Not deduplicated by `Idempotency-Key`: the caller is
/// not authenticated, and an answer holding a token is never stored.
#[utoipa::path(post, path = "/api/v1/users",
    extensions(("x-idempotency-key" = json!("ignored"))), tag = "users",
    request_body = CreateUserRequest,
    responses((status = 201, body = CreatedUser), (status = 400, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "EMAIL_TAKEN")))]
pub async fn create_user(
    State(state): State<AppState>,
    Json(req): Json<CreateUserRequest>,
) -> ApiResult<Response> {
    let name = validate_name(&req.name)?;
    let (email, hash) = match (req.email, req.password) {
        (None, None) => (None, None),
        (Some(email), Some(password)) => {
            let email = validate_email(&email)?;
            validate_password(&password)?;
            (Some(email), Some(hash_password(password).await?))
        }
        _ => {
            return Err(ApiError::invalid(
                "email and password come together, or neither",
            ));
        }
    };
    let now = to_millis(state.clock.now());
    let user = state
        .writer
        .transact::<_, AccountError>(Box::new(move |tx| {
            Box::pin(async move {
                store::create_user(tx, &name, email.as_ref(), hash.as_deref(), now).await
            })
        }))
        .await?;
    let created = CreatedUser {
        token: state.auth.token_for(user.id),
        user,
    };
    Ok((StatusCode::CREATED, axum::Json(created)).into_response())
}

/// The user (owner only).
#[utoipa::path(get, path = "/api/v1/users/{userId}", security(("bearer" = [])), tag = "users",
    params(("userId" = i64, Path, minimum = 1, example = 1)),
    responses((status = 200, body = User), (status = 404, body = ErrorBody, description = "USER_NOT_FOUND")))]
pub async fn get_user(
    OwnUser(user): OwnUser,
    State(state): State<AppState>,
) -> ApiResult<axum::Json<User>> {
    Ok(axum::Json(store::user(state.db.read(), user).await?))
}

/// Change the user's name, email or password (owner only). An account has both an
/// email and a password, or neither (400 otherwise); 409 `EMAIL_TAKEN` when another
/// account has the email (regardless of case). A new password ends every other
/// session of the user (all of them when an API token asks; the asking session
/// stays), in the same commit, at once on this instance and on the others within
/// about 2 seconds; API tokens keep working (`POST /users/{userId}/token` revokes
/// them).
#[utoipa::path(patch, path = "/api/v1/users/{userId}", security(("bearer" = [])), tag = "users",
    request_body = UpdateUserRequest,
    params(("userId" = i64, Path, minimum = 1, example = 1)),
    responses((status = 200, body = User), (status = 404, body = ErrorBody, description = "USER_NOT_FOUND"),
        (status = 409, body = ErrorBody, description = "EMAIL_TAKEN")))]
pub async fn update_user(
    OwnUser(user): OwnUser,
    session: Option<axum::Extension<CurrentSession>>,
    State(state): State<AppState>,
    idem: Idempotency,
    Json(req): Json<UpdateUserRequest>,
) -> ApiResult<Response> {
    let keep = session.map(|axum::Extension(CurrentSession(s))| s);
    let name = req.name.as_deref().map(validate_name).transpose()?;
    let email = req.email.as_deref().map(validate_email).transpose()?;
    if let Some(password) = &req.password {
        validate_password(password)?;
    }
    let held = idem.claim(Caller::User(user))?;
    let password_hash = match req.password {
        Some(password) => Some(hash_password(password).await?),
        None => None,
    };
    let patch = Patch {
        name,
        email,
        password_hash,
    };
    let new_password = patch.password_hash.is_some();
    let now = to_millis(state.clock.now());
    let work: TxWork<Updated> = Box::new(move |tx| {
        Box::pin(async move {
            let user = store::update_user(tx, user, patch).await?;
            let ended = if new_password {
                store::end_other_sessions(tx, user.id, keep, now).await?
            } else {
                Vec::new()
            };
            Ok(Updated { user, ended })
        })
    });
    let (done, res) = idempotency::transact(&state, &idem, held, StatusCode::OK, work).await?;
    for change in done.map(|d| d.ended).unwrap_or_default() {
        announce(&state, change).await;
    }
    Ok(res)
}

/// A changed user as answered, and the sessions a new password ended (announced
/// after the commit, never part of the answer).
#[derive(Serialize)]
struct Updated {
    #[serde(flatten)]
    user: User,
    #[serde(skip)]
    ended: Vec<Change>,
}

/// A new API token for the user (owner only): every earlier API token of the user
/// stops working (at once on this instance; on the others within the staleness of
/// the revocation view, about 2 seconds). Sessions are not affected. Not
/// deduplicated by `Idempotency-Key`: an answer holding a token is never stored, so a
/// retry makes yet another token (and revokes this one).
#[utoipa::path(post, path = "/api/v1/users/{userId}/token",
    extensions(("x-idempotency-key" = json!("ignored"))), operation_id = "new_api_token", security(("bearer" = [])), tag = "users",
    params(("userId" = i64, Path, minimum = 1, example = 1)),
    responses((status = 201, body = ApiToken), (status = 404, body = ErrorBody, description = "USER_NOT_FOUND")))]
pub async fn new_token(
    OwnUser(user): OwnUser,
    State(state): State<AppState>,
) -> ApiResult<Response> {
    let now = to_millis(state.clock.now());
    let (version, change) = state
        .writer
        .transact::<_, AccountError>(Box::new(move |tx| {
            Box::pin(async move { store::next_api_token(tx, user, now).await })
        }))
        .await?;
    announce(&state, change).await;
    let token = ApiToken {
        token: state.auth.api_token(user, version),
    };
    Ok((StatusCode::CREATED, axum::Json(token)).into_response())
}

/// A session's tokens: an access token until `now` plus `SHOP_ACCESS_TOKEN_SECS`
/// (whole seconds, as the token carries them).
fn session_tokens(
    state: &AppState,
    user: UserId,
    session: SessionId,
    refresh_token: String,
    refresh_expires: DateTime<Utc>,
    now: DateTime<Utc>,
) -> SessionTokens {
    let secs = i64::try_from(state.config.access_token_secs).unwrap_or(i64::MAX / 2);
    let access_expires = DateTime::from_timestamp(now.timestamp().saturating_add(secs), 0)
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    SessionTokens {
        user_id: user,
        access_token: state.auth.access_token(user, session, access_expires),
        access_expires_at: access_expires,
        refresh_token,
        refresh_expires_at: refresh_expires,
    }
}

fn refresh_expiry(state: &AppState, now: DateTime<Utc>) -> DateTime<Utc> {
    let secs = i64::try_from(state.config.refresh_token_secs).unwrap_or(i64::MAX / 2);
    now.checked_add_signed(TimeDelta::seconds(secs))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Log in with email and password: a new session. A wrong email or a wrong password
/// answers the same 401 `INVALID_CREDENTIALS` in about the same time (an unknown
/// email is checked against a dummy hash). Attempts are limited per email
/// (`SHOP_LOGIN_ATTEMPTS_PER_MINUTE`, 5 by default, per instance): beyond them 429
/// `RATE_LIMITED` with `Retry-After`. A suspended user with the right password gets
/// 403 `USER_SUSPENDED`. Not deduplicated by `Idempotency-Key`: the answer holds
/// tokens, which are never stored.
#[utoipa::path(post, path = "/api/v1/sessions",
    extensions(("x-idempotency-key" = json!("ignored"))), tag = "sessions",
    request_body = LoginRequest,
    responses((status = 201, body = SessionTokens),
        (status = 401, body = ErrorBody, description = "INVALID_CREDENTIALS"),
        (status = 403, body = ErrorBody, description = "USER_SUSPENDED"),
        (status = 429, body = ErrorBody, description = "RATE_LIMITED (see Retry-After)")))]
pub async fn login(
    State(state): State<AppState>,
    Json(req): Json<LoginRequest>,
) -> ApiResult<Response> {
    let email_key = req.email.trim().to_lowercase();
    state.login_limit.check(&email_key)?;
    let found = store::credentials(state.db.read(), &email_key).await?;
    let (user, hash, status) = match found {
        Some((user, hash, status)) => (Some(user), hash, Some(status)),
        None => (None, None, None),
    };
    // Without a hash (an unknown email) this checks a dummy one: the same work.
    let verified = verify_password(req.password, hash).await?;
    let Some(user) = user.filter(|_| verified) else {
        return Err(AccountError::InvalidCredentials.into());
    };
    if status == Some(Status::Suspended) {
        return Err(AccountError::Suspended.into());
    }
    let now = state.clock.now();
    let (refresh_token, sha) = new_refresh_token()?;
    let refresh_expires = refresh_expiry(&state, now);
    let (now_ms, expires_ms) = (to_millis(now), to_millis(refresh_expires));
    let session = state
        .writer
        .transact::<_, sqlx::Error>(Box::new(move |tx| {
            Box::pin(async move { store::start_session(tx, user, &sha, expires_ms, now_ms).await })
        }))
        .await?;
    let tokens = session_tokens(&state, user, session, refresh_token, refresh_expires, now);
    Ok((StatusCode::CREATED, axum::Json(tokens)).into_response())
}

/// Trade a refresh token for a new pair (rotation): the old refresh token stops
/// working. A refresh token presented a second time ends its session at once (its
/// access tokens stop working too) and answers 401 `INVALID_CREDENTIALS`, as do
/// unknown, expired and ended ones. Not deduplicated by `Idempotency-Key`: the answer
/// holds tokens, which are never stored (a retry with the spent token is a reuse).
#[utoipa::path(post, path = "/api/v1/sessions/refresh",
    extensions(("x-idempotency-key" = json!("ignored"))), tag = "sessions",
    request_body = RefreshRequest,
    responses((status = 201, body = SessionTokens),
        (status = 401, body = ErrorBody, description = "INVALID_CREDENTIALS"),
        (status = 403, body = ErrorBody, description = "USER_SUSPENDED")))]
pub async fn refresh(
    State(state): State<AppState>,
    Json(req): Json<RefreshRequest>,
) -> ApiResult<Response> {
    let sha = refresh_token_sha256(&req.refresh_token);
    let now = state.clock.now();
    let (next, next_sha) = new_refresh_token()?;
    let next_expires = refresh_expiry(&state, now);
    let (now_ms, expires_ms) = (to_millis(now), to_millis(next_expires));
    let refreshed = state
        .writer
        .transact::<_, AccountError>(Box::new(move |tx| {
            Box::pin(async move { store::refresh(tx, &sha, &next_sha, expires_ms, now_ms).await })
        }))
        .await?;
    match refreshed {
        Refreshed::Rotated { user, session } => {
            let tokens = session_tokens(&state, user, session, next, next_expires, now);
            Ok((StatusCode::CREATED, axum::Json(tokens)).into_response())
        }
        Refreshed::Reused(change) => {
            if let Some(change) = change {
                tracing::warn!(user = %change.user, session = change.value,
                    "a spent refresh token was presented again: the session is ended");
                announce(&state, change).await;
            }
            Err(AccountError::InvalidRefreshToken.into())
        }
    }
}

/// Log out: the caller's session ends, and its access and refresh tokens stop working
/// (at once on this instance; on the others within about 2 seconds). Needs the
/// session's access token (403 `FORBIDDEN` with an API token). Ending a session is
/// idempotent by nature: a repeat with the same token is 401.
#[utoipa::path(delete, path = "/api/v1/sessions/current",
    extensions(("x-idempotency-key" = json!("ignored"))), security(("bearer" = [])), tag = "sessions",
    responses((status = 204, description = "the session ended")))]
pub async fn logout(
    Authenticated(caller): Authenticated,
    session: Option<axum::Extension<CurrentSession>>,
    State(state): State<AppState>,
) -> ApiResult<Response> {
    let user = caller.user()?;
    let Some(axum::Extension(CurrentSession(session))) = session else {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "this route needs a session's access token",
        ));
    };
    let now = to_millis(state.clock.now());
    let change = state
        .writer
        .transact::<_, sqlx::Error>(Box::new(move |tx| {
            Box::pin(async move { store::end_session(tx, user, session, now).await })
        }))
        .await?;
    if let Some(change) = change {
        announce(&state, change).await;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Set a user's status (admin). A SUSPENDED user's tokens open nothing (403
/// `USER_SUSPENDED`), at once on this instance and on the others within about 2
/// seconds; ACTIVE opens them again.
#[utoipa::path(patch, path = "/users/{userId}", operation_id = "set_user_status", security(("admin" = [])), tag = "admin",
    request_body = SetStatusRequest,
    params(("userId" = i64, Path, minimum = 1, example = 1)),
    responses((status = 200, body = User), (status = 404, body = ErrorBody, description = "USER_NOT_FOUND")))]
pub async fn set_status(
    caller: Caller,
    State(state): State<AppState>,
    idem: Idempotency,
    PathId(user): PathId<UserId>,
    Json(req): Json<SetStatusRequest>,
) -> ApiResult<Response> {
    let held = idem.claim(caller)?;
    let now = to_millis(state.clock.now());
    let slot: Arc<Mutex<Option<Change>>> = Arc::default();
    let out = slot.clone();
    let work: TxWork<User> = Box::new(move |tx| {
        Box::pin(async move {
            let (user, change) = store::set_status(tx, user, req.status, now).await?;
            *out.lock().unwrap_or_else(|e| e.into_inner()) = change;
            Ok(user)
        })
    });
    let (done, res) = idempotency::transact(&state, &idem, held, StatusCode::OK, work).await?;
    let change = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
    if done.is_some()
        && let Some(change) = change
    {
        announce(&state, change).await;
    }
    Ok(res)
}
