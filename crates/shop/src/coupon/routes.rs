//! `/api/v1/admin/coupons` (create, list, edit), `/api/v1/coupons` (the open ones),
//! `/api/v1/coupons/{id}` (read, issue) and `/api/v1/users/{id}/coupons` (a user's
//! coupons and each one's history).

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::store::{self, CouponChanges, NewCoupon};
use super::{Coupon, CouponError, CouponStatus, HistoryEntry, UserCoupon, UserCouponView};
use crate::app::AppState;
use crate::auth::{Authenticated, OwnUser};
use crate::batch::{Refused, Work};
use crate::cache::Gate;
use crate::clock::to_millis;
use crate::error::{ApiError, ApiResult, ErrorBody, ErrorCode};
use crate::http::idempotency::{self, Idempotency, render};
use crate::http::{Json, Page, Paging, PagingParams, PathId, PathIds};
use crate::ids::{CouponId, ProductId, UserCouponId, UserId};
use crate::money::{DiscountType, Won};
use crate::product::MAX_PRICE;
use axum::response::Response;

/// The public and user routes (the admin's are in [`admin_router`]).
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_open))
        .routes(routes!(detail))
        .routes(routes!(issue))
        .routes(routes!(list_for_user))
        .routes(routes!(history))
}

/// Admin routes, relative to `/api/v1/admin` (see [`crate::app::router`]).
pub fn admin_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, admin_list))
        .routes(routes!(update))
}

/// Most coupons one definition may issue.
pub const MAX_COUPON_QUANTITY: i64 = 100_000_000;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(example = json!({"name": "Welcome 10%", "discountType": "RATE", "discountValue": 10, "totalQuantity": 1_000, "minOrderAmount": 10_000, "validDays": 30}))]
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
    /// Limits the coupon to one product: its discount applies to that product's lines
    /// only, and an order without one cannot use it.
    #[schema(minimum = 1)]
    pub product_id: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(example = json!({"totalQuantity": 2_000}))]
pub struct UpdateCouponRequest {
    /// 1..=200 characters.
    #[schema(min_length = 1, max_length = 200)]
    #[serde(default, deserialize_with = "crate::http::non_null")]
    pub name: Option<String>,
    /// INACTIVE stops issue (coupons already issued stay usable); ACTIVE resumes it.
    #[serde(default, deserialize_with = "crate::http::non_null")]
    pub status: Option<CouponStatus>,
    /// 1..=100,000,000, and never below `issuedQuantity` (409
    /// `COUPON_QUANTITY_BELOW_ISSUED`).
    #[schema(minimum = 1, maximum = 100_000_000)]
    #[serde(default, deserialize_with = "crate::http::non_null")]
    pub total_quantity: Option<i64>,
    /// RFC 3339, exclusive, after `issueStartsAt`; `null`: issue never closes.
    #[serde(default, deserialize_with = "crate::http::nullable")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub issue_ends_at: Option<Option<DateTime<Utc>>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(example = json!({"userId": 1}))]
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
        product_id: match req.product_id {
            Some(p) if p <= 0 => return Err(ApiError::invalid("productId must be a positive id")),
            p => p.map(ProductId),
        },
    })
}

/// Create a coupon (admin).
#[utoipa::path(post, path = "/coupons", operation_id = "create_coupon", security(("admin" = [])), tag = "admin",
    request_body = CreateCouponRequest,
    responses((status = 201, body = Coupon), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "PRODUCT_NOT_FOUND: `productId` names no product")))]
pub async fn create(
    caller: crate::auth::Caller,
    State(state): State<AppState>,
    idem: Idempotency,
    Json(req): Json<CreateCouponRequest>,
) -> ApiResult<Response> {
    let new = validate(req)?;
    let held = idem.claim(caller)?;
    let now = to_millis(state.clock.now());
    let work: idempotency::TxWork<Coupon> = Box::new(move |tx| {
        Box::pin(async move {
            if let Some(p) = new.product_id
                && !store::product_exists(&mut *tx, p).await?
            {
                return Err(CouponError::ProductNotFound(p).into());
            }
            Ok(store::create(tx, &new, now).await?)
        })
    });
    let (_, res) = idempotency::transact(&state, &idem, held, StatusCode::CREATED, work).await?;
    Ok(res)
}

/// Every coupon, newest first (admin).
#[utoipa::path(get, path = "/coupons", operation_id = "admin_list_coupons", security(("admin" = [])), tag = "admin",
    params(PagingParams),
    responses((status = 200, body = Page<Coupon>), (status = 400, body = ErrorBody)))]
pub async fn admin_list(
    State(state): State<AppState>,
    paging: Paging,
) -> ApiResult<axum::Json<Page<Coupon>>> {
    let rows = store::list(state.db.read(), None, paging).await?;
    Ok(axum::Json(Page::from_rows(rows, paging, |c| c.id.0)))
}

/// The coupons that can be issued now, newest first: ACTIVE, within their issue
/// period, not sold out.
#[utoipa::path(get, path = "/api/v1/coupons", operation_id = "list_open_coupons", tag = "coupons",
    params(PagingParams),
    responses((status = 200, body = Page<Coupon>), (status = 400, body = ErrorBody)))]
pub async fn list_open(
    State(state): State<AppState>,
    paging: Paging,
) -> ApiResult<axum::Json<Page<Coupon>>> {
    let rows = store::list(state.db.read(), Some(state.clock.now()), paging).await?;
    Ok(axum::Json(Page::from_rows(rows, paging, |c| c.id.0)))
}

/// Edit a coupon (admin): rename it, stop or resume issue, raise or lower its total
/// (never below what is issued, however many issue at the same moment), move the
/// end of its issue period. Every instance forgets that it was sold out or inactive.
#[utoipa::path(patch, path = "/coupons/{couponId}", operation_id = "update_coupon", security(("admin" = [])), tag = "admin",
    request_body = UpdateCouponRequest,
    params(("couponId" = i64, Path, minimum = 1, example = 1)),
    responses((status = 200, body = Coupon), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "COUPON_NOT_FOUND"),
        (status = 409, body = ErrorBody, description = "COUPON_QUANTITY_BELOW_ISSUED")))]
pub async fn update(
    caller: crate::auth::Caller,
    State(state): State<AppState>,
    idem: Idempotency,
    PathId(id): PathId<CouponId>,
    Json(req): Json<UpdateCouponRequest>,
) -> ApiResult<Response> {
    if let Some(total) = req.total_quantity
        && !(1..=MAX_COUPON_QUANTITY).contains(&total)
    {
        return Err(ApiError::invalid(format!(
            "totalQuantity must be 1..={MAX_COUPON_QUANTITY}"
        )));
    }
    let changes = CouponChanges {
        name: req
            .name
            .as_deref()
            .map(crate::product::validate_name)
            .transpose()?,
        status: req.status,
        total_quantity: req.total_quantity,
        issue_ends_at: req.issue_ends_at,
    };
    let held = idem.claim(caller)?;
    let backend = state.db.backend;
    let work: idempotency::TxWork<Coupon> = Box::new(move |tx| {
        Box::pin(async move { Ok(store::update(tx, backend, id, &changes).await?) })
    });
    let (changed, res) = idempotency::transact(&state, &idem, held, StatusCode::OK, work).await?;
    if changed.is_some() {
        state.coupon_changed(id).await;
    }
    Ok(res)
}

/// The history of one of the user's coupons, oldest first: ISSUED, USED and RESTORED
/// as they happened, then EXPIRED once its validity passed while not in use. Someone
/// else's coupon answers 404, as a missing one does.
#[utoipa::path(get, path = "/api/v1/users/{userId}/coupons/{userCouponId}/history", operation_id = "user_coupon_history", security(("bearer" = [])),
    tag = "users",
    params(("userId" = i64, Path, minimum = 1, example = 1), ("userCouponId" = i64, Path, minimum = 1, example = 1)),
    responses((status = 200, body = Vec<HistoryEntry>),
        (status = 404, body = ErrorBody, description = "USER_COUPON_NOT_FOUND")))]
pub async fn history(
    OwnUser(user): OwnUser,
    State(state): State<AppState>,
    ids: PathIds,
) -> ApiResult<axum::Json<Vec<HistoryEntry>>> {
    let id: UserCouponId = ids.get("userCouponId")?;
    let mut conn = state.db.read().acquire().await?;
    Ok(axum::Json(
        store::history(&mut conn, user, id, state.clock.now()).await?,
    ))
}

/// A coupon, with how many have been issued.
#[utoipa::path(get, path = "/api/v1/coupons/{couponId}", operation_id = "get_coupon", tag = "coupons",
    params(("couponId" = i64, Path, minimum = 1, example = 1)),
    responses((status = 200, body = Coupon), (status = 404, body = ErrorBody, description = "COUPON_NOT_FOUND")))]
pub async fn detail(
    State(state): State<AppState>,
    PathId(id): PathId<CouponId>,
) -> ApiResult<axum::Json<Coupon>> {
    Ok(axum::Json(store::get(state.db.read(), id).await?))
}

/// Issue a coupon to a user: first come, first served, one per user.
#[utoipa::path(post, path = "/api/v1/coupons/{couponId}/issue", operation_id = "issue_coupon", security(("bearer" = [])), tag = "coupons",
    request_body = IssueRequest,
    params(("couponId" = i64, Path, minimum = 1, example = 1)),
    responses((status = 201, body = UserCoupon), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "COUPON_NOT_FOUND, USER_NOT_FOUND"),
        (status = 409, body = ErrorBody,
            description = "COUPON_SOLD_OUT, COUPON_ALREADY_ISSUED, COUPON_NOT_IN_ISSUE_PERIOD, COUPON_INACTIVE")))]
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
    // writer replays that one. What this request learns is kept only if the coupon
    // was not edited since it began (the epoch here, the generation in Redis).
    let epoch = state.local.coupon_epoch(id);
    let (gate, generation) = match state.local.coupon_gate(id, user) {
        Gate::Pass => {
            let (shared, generation) = state.cache.coupon_gate(id, user).await;
            state.local.coupon_decided(id, user, shared, epoch);
            (shared, generation)
        }
        known => (known, None),
    };
    let seen = Seen { epoch, generation };
    match gate {
        Gate::AlreadyIssued if !keyed => return Err(CouponError::AlreadyIssued.into()),
        Gate::Inactive if !keyed => return Err(CouponError::Inactive.into()),
        Gate::SoldOut if !keyed || !holds(&state, id, user, epoch).await? => {
            return Err(CouponError::SoldOut.into());
        }
        _ => {}
    }
    // Without a key, refusals a read can tell never wait for the writer (with one,
    // the refusal may be one to store with the key).
    if !keyed {
        let mut conn = state.db.read().acquire().await?;
        if let Err(refusal) = store::precheck(&mut conn, id, user, state.clock.now()).await {
            learn(&state, id, user, &refusal, seen).await;
            return Err(refusal.into());
        }
    }
    let work = Work::Issue { coupon: id, user };
    let (decision, res) = state.write(&idem, held, work, render::<201>).await;
    match &decision {
        Some(Ok(_)) => {
            metrics::counter!("shop_coupons_issued_total").increment(1);
            state
                .local
                .coupon_decided(id, user, Gate::AlreadyIssued, epoch);
            state
                .cache
                .coupon_decided(id, user, Gate::AlreadyIssued, None)
                .await;
        }
        Some(Err(Refused::Coupon(refusal))) => learn(&state, id, user, refusal, seen).await,
        _ => {}
    }
    Ok(res)
}

/// When a coupon request began, as the gates count edits of the coupon.
#[derive(Clone, Copy)]
struct Seen {
    epoch: u64,
    generation: crate::cache::Generation,
}

/// Teaches the gates a refusal the database made, unless the coupon was edited since
/// the request began.
async fn learn(
    state: &AppState,
    coupon: CouponId,
    user: UserId,
    refusal: &CouponError,
    seen: Seen,
) {
    let verdict = match refusal {
        CouponError::SoldOut => Gate::SoldOut,
        CouponError::AlreadyIssued => Gate::AlreadyIssued,
        CouponError::Inactive => Gate::Inactive,
        _ => return,
    };
    state
        .local
        .coupon_decided(coupon, user, verdict, seen.epoch);
    state
        .cache
        .coupon_decided(coupon, user, verdict, seen.generation)
        .await;
}

/// Whether `user` holds the sold-out `coupon`, from the coupon's complete list of
/// holders (read once per instance and epoch; `true` when the list is too long to
/// keep).
async fn holds(state: &AppState, coupon: CouponId, user: UserId, epoch: u64) -> ApiResult<bool> {
    let db = state.db.clone();
    let holders = state
        .local
        .sold_out_holders(coupon, epoch, async move {
            store::holders(db.read(), coupon, crate::local_cache::MAX_HOLDERS).await
        })
        .await?;
    Ok(holders.is_none_or(|h| h.contains(&user)))
}

/// A user's coupons, newest first, with status AVAILABLE, USED or EXPIRED.
#[utoipa::path(get, path = "/api/v1/users/{userId}/coupons", operation_id = "list_user_coupons", security(("bearer" = [])), tag = "users",
    params(("userId" = i64, Path, minimum = 1, example = 1), PagingParams),
    responses((status = 200, body = Page<UserCouponView>), (status = 404, body = ErrorBody, description = "USER_NOT_FOUND")))]
pub async fn list_for_user(
    OwnUser(user): OwnUser,
    State(state): State<AppState>,
    paging: Paging,
) -> ApiResult<axum::Json<Page<UserCouponView>>> {
    let rows = store::list_for_user(state.db.read(), user, paging, state.clock.now()).await?;
    if rows.is_empty() && !crate::balance::store::user_exists(state.db.read(), user).await? {
        return Err(ApiError::new(
            ErrorCode::UserNotFound,
            format!("user {user} not found"),
        ));
    }
    Ok(axum::Json(Page::from_rows(rows, paging, |c| c.id.0)))
}
