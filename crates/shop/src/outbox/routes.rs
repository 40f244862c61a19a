//! `/api/v1/admin/events`: undelivered and failed (parked) events, and retrying them.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::store;
use crate::app::AppState;
use crate::auth::Caller;
use crate::clock::{from_millis, to_millis};
use crate::error::{ApiError, ApiResult, ErrorBody, ErrorCode};
use crate::http::idempotency::{self, Idempotency, TxWork};
use crate::http::{Page, Paging, PagingParams, Query};

/// Admin routes, relative to `/api/v1/admin` (see [`crate::app::router`]).
pub fn admin_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(retry_all))
        .routes(routes!(retry_one))
}

/// Where an undelivered event stands.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt.
    Pending,
    /// Parked after too many failed attempts; waits for a retry.
    Failed,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": "0193a5b2-7c4e-7d2a-9f00-5b1e2c3d4e5f", "type": "order.paid", "orderId": 1, "status": "PENDING", "createdAt": "2026-12-04T09:30:00.000Z", "attempts": 3, "nextAttemptAt": "2026-12-04T09:30:08.000Z", "lastError": "http://127.0.0.1:9000/events answered 503"}))]
#[serde(rename_all = "camelCase")]
pub struct UndeliveredEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub order_id: i64,
    pub status: DeliveryStatus,
    pub created_at: DateTime<Utc>,
    pub attempts: i64,
    pub next_attempt_at: DateTime<Utc>,
    #[schema(required = true)]
    pub last_error: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatusParams {
    /// `failed` (parked) or `undelivered` (all not yet delivered; the default).
    #[param(value_type = Option<EventFilter>)]
    pub status: Option<String>,
}

/// Which undelivered events to list.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EventFilter {
    /// Parked after too many failed attempts.
    Failed,
    /// Every event not yet delivered.
    Undelivered,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"retried": 3}))]
pub struct Retried {
    /// How many events were put back in line.
    pub retried: u64,
}

/// Undelivered events, oldest first, with their last error (admin).
#[utoipa::path(get, path = "/events", operation_id = "list_undelivered_events", security(("admin" = [])), tag = "admin",
    params(StatusParams, PagingParams),
    responses((status = 200, body = Page<UndeliveredEvent>), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    Query(params): Query<StatusParams>,
    paging: Paging,
) -> ApiResult<axum::Json<Page<UndeliveredEvent>>> {
    let parked_only = match params.status.as_deref() {
        None | Some("undelivered") => false,
        Some("failed") => true,
        Some(_) => {
            return Err(ApiError::invalid(
                "status must be `failed` or `undelivered`",
            ));
        }
    };
    let rows = store::list_undelivered(
        state.db.read(),
        parked_only,
        paging.after.unwrap_or(0),
        paging.limit + 1,
    )
    .await?;
    // The cursor is the outbox sequence of the last item.
    let page = Page::from_mapped_rows(
        rows,
        paging,
        |r| r.seq,
        |r| UndeliveredEvent {
            id: r.id,
            kind: r.event_type,
            order_id: r.order_id,
            status: if r.parked_at.is_some() {
                DeliveryStatus::Failed
            } else {
                DeliveryStatus::Pending
            },
            created_at: from_millis(r.created_at),
            attempts: r.attempts,
            next_attempt_at: from_millis(r.next_attempt_at),
            last_error: r.last_error,
        },
    );
    Ok(axum::Json(page))
}

/// Put every parked event back in line for delivery now (admin).
#[utoipa::path(post, path = "/events/retry", operation_id = "retry_failed_events", security(("admin" = [])), tag = "admin",
    responses((status = 200, body = Retried)))]
pub async fn retry_all(
    caller: Caller,
    State(state): State<AppState>,
    idem: Idempotency,
) -> ApiResult<Response> {
    let held = idem.claim(caller)?;
    let now = to_millis(state.clock.now());
    let work: TxWork<Retried> = Box::new(move |tx| {
        Box::pin(async move {
            let retried = store::retry(tx, None, now).await?;
            Ok(Retried { retried })
        })
    });
    let (_, res) = idempotency::transact(&state, &idem, held, StatusCode::OK, work).await?;
    Ok(res)
}

/// Put one undelivered event back in line for delivery now (admin).
#[utoipa::path(post, path = "/events/{eventId}/retry", operation_id = "retry_event", security(("admin" = [])), tag = "admin",
    params(("eventId" = uuid::Uuid, Path,
        example = "0192f0c1-3b7a-7cde-8f00-1234567890ab", description = "the event's id (a UUID)")),
    responses((status = 200, body = Retried), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "EVENT_NOT_FOUND: unknown or already delivered")))]
pub async fn retry_one(
    caller: Caller,
    State(state): State<AppState>,
    idem: Idempotency,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> ApiResult<Response> {
    let id = uuid::Uuid::parse_str(&id).map_err(|_| ApiError::invalid("eventId must be a UUID"))?;
    let held = idem.claim(caller)?;
    let now = to_millis(state.clock.now());
    let work: TxWork<Retried> = Box::new(move |tx| {
        Box::pin(async move {
            let retried = store::retry(tx, Some(&id.to_string()), now).await?;
            if retried == 0 {
                return Err(ApiError::new(
                    ErrorCode::EventNotFound,
                    "no undelivered event with this id",
                ));
            }
            Ok(Retried { retried })
        })
    });
    let (_, res) = idempotency::transact(&state, &idem, held, StatusCode::OK, work).await?;
    Ok(res)
}
