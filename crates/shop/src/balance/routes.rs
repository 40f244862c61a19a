//! `/api/v1/users`: create a user, read and charge the balance, read the ledger.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Deserialize;
use utoipa::ToSchema;

use super::{Balance, CreatedUser, LedgerEntry, store, validate_name};
use crate::app::AppState;
use crate::auth::{Caller, OwnUser};
use crate::batch::Work;
use crate::clock::to_millis;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::idempotency::{Idempotency, render};
use crate::http::{Json, Page, Paging, PagingParams};
use crate::money::Won;
use axum::response::{IntoResponse, Response};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/users", post(create_user))
        .route("/api/v1/users/{userId}/balance", get(get_balance))
        .route("/api/v1/users/{userId}/balance/charge", post(charge))
        .route("/api/v1/users/{userId}/balance/history", get(history))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    /// 1..=100 characters.
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChargeRequest {
    /// Won to add: 1..=1,000,000 by default (`SHOP_MAX_CHARGE`).
    #[schema(minimum = 1)]
    pub amount: i64,
}

/// Create a user (a buyer with a zero balance). The answer carries the user's bearer
/// token. Open to anyone. Not deduplicated by `Idempotency-Key`: the caller is not
/// authenticated, and an answer holding a token is never stored.
#[utoipa::path(post, path = "/api/v1/users", tag = "users",
    request_body = CreateUserRequest,
    responses((status = 201, body = CreatedUser), (status = 400, body = ErrorBody)))]
pub async fn create_user(
    State(state): State<AppState>,
    Json(req): Json<CreateUserRequest>,
) -> ApiResult<Response> {
    let name = validate_name(&req.name)?;
    let now = to_millis(state.clock.now());
    let user = state
        .writer
        .transact::<_, sqlx::Error>(Box::new(move |tx| {
            Box::pin(async move { store::create_user(tx, &name, now).await })
        }))
        .await?;
    let created = CreatedUser {
        token: state.auth.token_for(user.id),
        id: user.id,
        name: user.name,
        created_at: user.created_at,
    };
    Ok((StatusCode::CREATED, axum::Json(created)).into_response())
}

/// The user's balance.
#[utoipa::path(get, path = "/api/v1/users/{userId}/balance", tag = "users",
    params(("userId" = i64, Path, minimum = 1)),
    responses((status = 200, body = Balance), (status = 404, body = ErrorBody)))]
pub async fn get_balance(
    OwnUser(user): OwnUser,
    State(state): State<AppState>,
) -> ApiResult<axum::Json<Balance>> {
    Ok(axum::Json(store::balance(state.db.read(), user).await?))
}

/// Charge the balance. Concurrent charges are all applied.
#[utoipa::path(post, path = "/api/v1/users/{userId}/balance/charge", tag = "users",
    request_body = ChargeRequest,
    params(("userId" = i64, Path, minimum = 1)),
    responses((status = 200, body = Balance, description = "the balance after"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "BALANCE_LIMIT_EXCEEDED")))]
pub async fn charge(
    OwnUser(user): OwnUser,
    State(state): State<AppState>,
    idem: Idempotency,
    Json(req): Json<ChargeRequest>,
) -> ApiResult<Response> {
    let max = state.config.max_charge;
    if !(1..=max).contains(&req.amount) {
        return Err(ApiError::invalid(format!("amount must be 1..={max} won")));
    }
    let held = idem.claim(Caller::User(user))?;
    let work = Work::Charge {
        user,
        amount: Won(req.amount),
    };
    Ok(state.write(&idem, held, work, render::<200>).await.1)
}

/// The balance history, newest first.
#[utoipa::path(get, path = "/api/v1/users/{userId}/balance/history", tag = "users",
    params(("userId" = i64, Path, minimum = 1), PagingParams),
    responses((status = 200, body = Page<LedgerEntry>), (status = 404, body = ErrorBody)))]
pub async fn history(
    OwnUser(user): OwnUser,
    State(state): State<AppState>,
    paging: Paging,
) -> ApiResult<axum::Json<Page<LedgerEntry>>> {
    let rows = store::history(state.db.read(), user, paging).await?;
    if rows.is_empty() && !store::user_exists(state.db.read(), user).await? {
        return Err(super::BalanceError::UserNotFound(user).into());
    }
    Ok(axum::Json(Page::from_rows(rows, paging, |e| e.id.0)))
}
