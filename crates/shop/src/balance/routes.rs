//! `/api/v1/users/{userId}/balance`: read and charge the balance, read the ledger.
//! (Users themselves are [`crate::account`]'s.)

use axum::extract::State;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Balance, LedgerEntry, store};
use crate::app::AppState;
use crate::auth::{Caller, OwnUser};
use crate::batch::Work;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::idempotency::{Idempotency, render};
use crate::http::{Json, Page, Paging, PagingParams};
use crate::money::Won;
use axum::response::Response;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_balance))
        .routes(routes!(charge))
        .routes(routes!(history))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"amount": 50_000}))]
pub struct ChargeRequest {
    /// Won to add: 1..=1,000,000 by default (`SHOP_MAX_CHARGE`).
    #[schema(minimum = 1)]
    pub amount: i64,
}

/// The user's balance.
#[utoipa::path(get, path = "/api/v1/users/{userId}/balance", security(("bearer" = [])), tag = "users",
    params(("userId" = i64, Path, minimum = 1, example = 1)),
    responses((status = 200, body = Balance), (status = 404, body = ErrorBody, description = "USER_NOT_FOUND")))]
pub async fn get_balance(
    OwnUser(user): OwnUser,
    State(state): State<AppState>,
) -> ApiResult<axum::Json<Balance>> {
    Ok(axum::Json(store::balance(state.db.read(), user).await?))
}

/// Charge the balance. Concurrent charges are all applied.
#[utoipa::path(post, path = "/api/v1/users/{userId}/balance/charge", operation_id = "charge_balance", security(("bearer" = [])), tag = "users",
    request_body = ChargeRequest,
    params(("userId" = i64, Path, minimum = 1, example = 1)),
    responses((status = 200, body = Balance, description = "the balance after"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody, description = "USER_NOT_FOUND"),
        (status = 409, body = ErrorBody, description = "BALANCE_LIMIT_EXCEEDED, DAILY_CHARGE_LIMIT_EXCEEDED")))]
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
#[utoipa::path(get, path = "/api/v1/users/{userId}/balance/history", operation_id = "balance_history", security(("bearer" = [])), tag = "users",
    params(("userId" = i64, Path, minimum = 1, example = 1), PagingParams),
    responses((status = 200, body = Page<LedgerEntry>), (status = 404, body = ErrorBody, description = "USER_NOT_FOUND")))]
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
