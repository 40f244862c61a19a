//! `/api/v1/admin/coupons` (create), `/api/v1/coupons/{id}` (read, issue) and
//! `/api/v1/users/{id}/coupons` (a user's coupons).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::ToSchema;

use super::store::{self, NewCoupon};
use super::{Coupon, CouponError, UserCoupon, UserCouponView};
use crate::app::AppState;
use crate::auth::{Authenticated, OwnUser};
use crate::batch::{Refused, Work};
use crate::cache::Gate;
use crate::clock::to_millis;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::idempotency::{self, Idempotency, render};
use crate::http::{Json, Page, Paging, PagingParams, PathId};
use crate::ids::{CouponId, UserId};
use crate::money::{DiscountType, Won};
use crate::product::MAX_PRICE;
use axum::response::Response;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/admin/coupons", post(create))
        .route("/api/v1/coupons/{couponId}", get(detail))
        .route("/api/v1/coupons/{couponId}/issue", post(issue))
        .route("/api/v1/users/{userId}/coupons", get(list_for_user))
}

/// Most coupons one definition may issue.
pub const MAX_COUPON_QUANTITY: i64 = 100_000_000;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateCouponRequest {
    /// 1..=200 characters.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    pub discount_type: DiscountType,
    /// FIXED: won off, 1..=1,000,000,000. RATE: percent off, 1..=100.
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    pub discount_value: i64,
    /// 1..=100,000,000.
    #[schema(minimum = 1, maximum = 100_000_000)]
    pub total_quantity: i64,
    /// 0..=1,000,000,000, default 0.
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub min_order_amount: Option<i64>,
    /// RFC 3339; default: open now.
    pub issue_starts_at: Option<DateTime<Utc>>,
    /// RFC 3339, exclusive; default: never closes.
    pub issue_ends_at: Option<DateTime<Utc>>,
    /// 1..=3650, default 30.
    #[schema(minimum = 1, maximum = 3650)]
    pub valid_days: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IssueRequest {
    #[schema(minimum = 1)]
    pub user_id: i64,
}

fn validate(req: CreateCouponRequest) -> Result<NewCoupon, ApiError> {
    let name = crate::product::validate_name(&req.name)?;
    let max_value = match req.discount_type {
        DiscountType::Fixed => MAX_PRICE,
        DiscountType::Rate => 100,
    };
    if !(1..=max_value).contains(&req.discount_value) {
        return Err(ApiError::invalid(format!(
            "discountValue must be 1..={max_value} for {}",
            req.discount_type.as_str()
        )));
    }
    if !(1..=MAX_COUPON_QUANTITY).contains(&req.total_quantity) {
        return Err(ApiError::invalid(format!(
            "totalQuantity must be 1..={MAX_COUPON_QUANTITY}"
        )));
    }
    let min_order_amount = req.min_order_amount.unwrap_or(0);
    if !(0..=MAX_PRICE).contains(&min_order_amount) {
        return Err(ApiError::invalid(format!(
            "minOrderAmount must be 0..={MAX_PRICE}"
        )));
    }
    if let (Some(s), Some(e)) = (req.issue_starts_at, req.issue_ends_at)
        && s >= e
    {
        return Err(ApiError::invalid(
            "issueStartsAt must be before issueEndsAt",
        ));
    }
    let valid_days = req.valid_days.unwrap_or(30);
    if !(1..=3650).contains(&valid_days) {
        return Err(ApiError::invalid("validDays must be 1..=3650"));
    }
    Ok(NewCoupon {
        name,
        discount_type: req.discount_type,
        discount_value: req.discount_value,
        total_quantity: req.total_quantity,
        min_order_amount: Won(min_order_amount),
        issue_starts_at: req.issue_starts_at,
        issue_ends_at: req.issue_ends_at,
        valid_days,
        product_id: None,
    })
}

/// Create a coupon (admin).
#[utoipa::path(post, path = "/api/v1/admin/coupons", tag = "admin",
    request_body = CreateCouponRequest,
    responses((status = 201, body = Coupon), (status = 400, body = ErrorBody)))]
pub async fn create(
    caller: crate::auth::Caller,
    State(state): State<AppState>,
    idem: Idempotency,
    Json(req): Json<CreateCouponRequest>,
) -> ApiResult<Response> {
    let new = validate(req)?;
    let held = idem.claim(caller)?;
    let now = to_millis(state.clock.now());
    let work: idempotency::TxWork<Coupon> =
        Box::new(move |tx| Box::pin(async move { Ok(store::create(tx, &new, now).await?) }));
    let (_, res) = idempotency::transact(&state, &idem, held, StatusCode::CREATED, work).await?;
    Ok(res)
}

/// A coupon, with how many have been issued.
#[utoipa::path(get, path = "/api/v1/coupons/{couponId}", tag = "coupons",
    params(("couponId" = i64, Path, minimum = 1)),
    responses((status = 200, body = Coupon), (status = 404, body = ErrorBody)))]
pub async fn detail(
    State(state): State<AppState>,
    PathId(id): PathId<CouponId>,
) -> ApiResult<axum::Json<Coupon>> {
    Ok(axum::Json(store::get(state.db.read(), id).await?))
}

/// Issue a coupon to a user: first come, first served, one per user.
#[utoipa::path(post, path = "/api/v1/coupons/{couponId}/issue", tag = "coupons",
    request_body = IssueRequest,
    params(("couponId" = i64, Path, minimum = 1)),
    responses((status = 201, body = UserCoupon), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "COUPON_NOT_FOUND, USER_NOT_FOUND"),
        (status = 409, body = ErrorBody,
            description = "COUPON_SOLD_OUT, COUPON_ALREADY_ISSUED, COUPON_NOT_IN_ISSUE_PERIOD")))]
pub async fn issue(
    Authenticated(caller): Authenticated,
    State(state): State<AppState>,
    idem: Idempotency,
    PathId(id): PathId<CouponId>,
    Json(req): Json<IssueRequest>,
) -> ApiResult<Response> {
    if req.user_id <= 0 {
        return Err(ApiError::invalid("userId must be a positive id"));
    }
    let user = UserId(req.user_id);
    caller.require_user(user)?;
    let held = idem.claim(caller)?;
    let keyed = held.is_some();
    // Refusals the database already made are answered from memory. A keyed request
    // whose user holds the coupon may be the repeat of the request that won it: the
    // writer replays that one.
    let gate = match state.local.coupon_gate(id, user) {
        Gate::Pass => {
            let shared = state.cache.coupon_gate(id, user).await;
            state.local.coupon_decided(id, user, shared);
            shared
        }
        known => known,
    };
    match gate {
        Gate::AlreadyIssued if !keyed => return Err(CouponError::AlreadyIssued.into()),
        Gate::SoldOut if !keyed || !holds(&state, id, user).await? => {
            return Err(CouponError::SoldOut.into());
        }
        _ => {}
    }
    // Without a key, refusals a read can tell never wait for the writer (with one,
    // the refusal may be one to store with the key).
    if !keyed {
        let mut conn = state.db.read().acquire().await?;
        if let Err(refusal) = store::precheck(&mut conn, id, user, state.clock.now()).await {
            learn(&state, id, user, &refusal).await;
            return Err(refusal.into());
        }
    }
    let work = Work::Issue { coupon: id, user };
    let (decision, res) = state.write(&idem, held, work, render::<201>).await;
    match &decision {
        Some(Ok(_)) => {
            metrics::counter!("shop_coupons_issued_total").increment(1);
            state.local.coupon_decided(id, user, Gate::AlreadyIssued);
            state
                .cache
                .coupon_decided(id, user, Gate::AlreadyIssued)
                .await;
        }
        Some(Err(Refused::Coupon(refusal))) => learn(&state, id, user, refusal).await,
        _ => {}
    }
    Ok(res)
}

/// Teaches the gates a refusal the database made, when it is for good.
async fn learn(state: &AppState, coupon: CouponId, user: UserId, refusal: &CouponError) {
    let verdict = match refusal {
        CouponError::SoldOut => Gate::SoldOut,
        CouponError::AlreadyIssued => Gate::AlreadyIssued,
        _ => return,
    };
    state.local.coupon_decided(coupon, user, verdict);
    state.cache.coupon_decided(coupon, user, verdict).await;
}

/// Whether `user` holds the sold-out `coupon`, from the coupon's complete list of
/// holders (read once per instance; `true` when the list is too long to keep).
async fn holds(state: &AppState, coupon: CouponId, user: UserId) -> ApiResult<bool> {
    let db = state.db.clone();
    let holders = state
        .local
        .sold_out_holders(coupon, async move {
            store::holders(db.read(), coupon, crate::local_cache::MAX_HOLDERS).await
        })
        .await?;
    Ok(holders.is_none_or(|h| h.contains(&user)))
}

/// A user's coupons, newest first, with status AVAILABLE, USED or EXPIRED.
#[utoipa::path(get, path = "/api/v1/users/{userId}/coupons", tag = "users",
    params(("userId" = i64, Path, minimum = 1), PagingParams),
    responses((status = 200, body = Page<UserCouponView>), (status = 404, body = ErrorBody)))]
pub async fn list_for_user(
    OwnUser(user): OwnUser,
    State(state): State<AppState>,
    paging: Paging,
) -> ApiResult<axum::Json<Page<UserCouponView>>> {
    let rows = store::list_for_user(state.db.read(), user, paging, state.clock.now()).await?;
    if rows.is_empty() && !crate::balance::store::user_exists(state.db.read(), user).await? {
        return Err(ApiError::not_found(
            "USER_NOT_FOUND",
            format!("user {user} not found"),
        ));
    }
    Ok(axum::Json(Page::from_rows(rows, paging, |c| c.id.0)))
}
