//! `/api/v1/orders` and `/api/v1/users/{id}/orders`.

use axum::extract::State;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Line, Order, OrderError, OrderRules, OrderStatus, Payment, PlaceOrder, store};
use crate::app::AppState;
use crate::auth::{Authenticated, OwnUser};
use crate::batch::{Done, Work};
use crate::error::{ApiResult, ErrorBody};
use crate::http::idempotency::{Idempotency, render};
use crate::http::{Json, Page, Paging, PagingParams, PathId, Query};
use crate::ids::{OrderId, ProductId, UserCouponId, UserId, VariantId};
use axum::response::Response;

/// The user routes (the admin's are in [`admin_router`]).
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(place))
        .routes(routes!(detail))
        .routes(routes!(pay))
        .routes(routes!(cancel))
        .routes(routes!(payments))
        .routes(routes!(list_for_user))
}

/// Admin routes, relative to `/api/v1/admin` (see [`crate::app::router`]).
pub fn admin_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(admin_list))
        .routes(routes!(ship))
        .routes(routes!(deliver))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OrderItemRequest {
    #[schema(minimum = 1)]
    pub product_id: i64,
    /// Which of the product's variants; may be left out for a product with one.
    #[schema(minimum = 1)]
    pub variant_id: Option<i64>,
    /// 1..=1,000 by default (`SHOP_MAX_ITEM_QUANTITY`).
    #[schema(minimum = 1)]
    pub quantity: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(example = json!({"userId": 1, "items": [{"productId": 1, "quantity": 2}], "pay": true}))]
pub struct PlaceOrderRequest {
    #[schema(minimum = 1)]
    pub user_id: i64,
    /// 1..=50 items by default (`SHOP_MAX_ORDER_ITEMS`); a product may appear more
    /// than once, its demand is summed.
    #[schema(min_items = 1)]
    pub items: Vec<OrderItemRequest>,
    #[schema(minimum = 1)]
    pub user_coupon_id: Option<i64>,
    /// Create and pay in one atomic step.
    #[serde(default)]
    pub pay: bool,
}

/// Counts an order the write just placed PAID (`shop_orders_paid_total`).
pub fn count_paid(decision: &Option<crate::batch::Decision>) {
    if let Some(Ok(Done::Order(order))) = decision
        && order.status == OrderStatus::Paid
    {
        metrics::counter!("shop_orders_paid_total").increment(1);
    }
}

impl AppState {
    pub fn order_rules(&self) -> OrderRules {
        self.config.order_rules()
    }
}

/// Place an order: holds its stock and coupon, all or nothing. With `"pay": true`
/// it is paid in the same step (either a PAID order exists after, or nothing changed).
#[utoipa::path(post, path = "/api/v1/orders", operation_id = "place_order", security(("bearer" = [])), tag = "orders",
    request_body = PlaceOrderRequest,
    responses((status = 201, body = Order), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "USER_NOT_FOUND, PRODUCT_NOT_FOUND, VARIANT_NOT_FOUND"),
        (status = 409, body = ErrorBody, description = "INSUFFICIENT_STOCK, PRODUCT_NOT_AVAILABLE, COUPON_NOT_USABLE, INSUFFICIENT_BALANCE")))]
pub async fn place(
    Authenticated(caller): Authenticated,
    State(state): State<AppState>,
    idem: Idempotency,
    Json(req): Json<PlaceOrderRequest>,
) -> ApiResult<Response> {
    if req.user_id <= 0 || req.user_coupon_id.is_some_and(|c| c <= 0) {
        return Err(OrderError::Invalid("ids must be positive".into()).into());
    }
    caller.require_user(UserId(req.user_id))?;
    let place = PlaceOrder {
        user: UserId(req.user_id),
        lines: req
            .items
            .iter()
            .map(|i| Line {
                product: ProductId(i.product_id),
                variant: i.variant_id.map(VariantId),
                quantity: i.quantity,
            })
            .collect(),
        user_coupon: req.user_coupon_id.map(UserCouponId),
        pay: req.pay,
    };
    super::validate_lines(&place.lines, state.order_rules())?;
    let held = idem.claim(caller)?;
    let (decision, res) = state
        .write(&idem, held, Work::Place(place), render::<201>)
        .await;
    count_paid(&decision);
    Ok(res)
}

/// An order of the caller's (someone else's answers 404, as a missing one does).
#[utoipa::path(get, path = "/api/v1/orders/{orderId}", operation_id = "get_order", security(("bearer" = [])), tag = "orders",
    params(("orderId" = i64, Path, minimum = 1, example = 1)),
    responses((status = 200, body = Order), (status = 404, body = ErrorBody, description = "ORDER_NOT_FOUND")))]
pub async fn detail(
    Authenticated(caller): Authenticated,
    State(state): State<AppState>,
    PathId(id): PathId<OrderId>,
) -> ApiResult<axum::Json<Order>> {
    let user = caller.user()?;
    let mut conn = state.db.read().acquire().await?;
    let order = store::get(&mut conn, state.db.backend, id).await?;
    if order.user_id != user {
        return Err(OrderError::NotFound(id).into());
    }
    Ok(axum::Json(order))
}

/// The payment attempts of an order of the caller's, oldest first: SUCCEEDED, or
/// FAILED with the code the payment was refused with.
#[utoipa::path(get, path = "/api/v1/orders/{orderId}/payments", operation_id = "list_order_payments", security(("bearer" = [])), tag = "orders",
    params(("orderId" = i64, Path, minimum = 1, example = 1)),
    responses((status = 200, body = Vec<Payment>),
        (status = 404, body = ErrorBody, description = "ORDER_NOT_FOUND: no such order of the caller's")))]
pub async fn payments(
    Authenticated(caller): Authenticated,
    State(state): State<AppState>,
    PathId(id): PathId<OrderId>,
) -> ApiResult<axum::Json<Vec<Payment>>> {
    let user = caller.user()?;
    let mut conn = state.db.read().acquire().await?;
    if store::owner(&mut conn, id).await? != Some(user) {
        return Err(OrderError::NotFound(id).into());
    }
    Ok(axum::Json(store::payments(&mut conn, id).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(rename_all = "camelCase")]
pub struct AdminOrdersParams {
    /// Only orders in this status.
    pub status: Option<OrderStatus>,
    /// Only this user's orders.
    #[param(value_type = Option<i64>, minimum = 1)]
    pub user_id: Option<String>,
}

/// Every order, newest first (admin), of one status and one user when given.
#[utoipa::path(get, path = "/orders", operation_id = "admin_list_orders", security(("admin" = [])), tag = "admin",
    params(AdminOrdersParams, PagingParams),
    responses((status = 200, body = Page<Order>), (status = 400, body = ErrorBody)))]
pub async fn admin_list(
    State(state): State<AppState>,
    Query(params): Query<AdminOrdersParams>,
    paging: Paging,
) -> ApiResult<axum::Json<Page<Order>>> {
    let user = params
        .user_id
        .as_deref()
        .map(|u| match u.parse::<i64>() {
            Ok(id) if id > 0 => Ok(UserId(id)),
            _ => Err(OrderError::Invalid("userId must be a positive id".into())),
        })
        .transpose()?;
    let mut conn = state.db.read().acquire().await?;
    let rows = store::list(
        &mut conn,
        state.db.backend,
        params.status,
        user,
        paging.after,
        paging.limit,
    )
    .await?;
    Ok(axum::Json(Page::from_rows(rows, paging, |o| o.id.0)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(example = json!({"trackingNumber": "CJ-1234-5678"}))]
pub struct ShipRequest {
    /// The carrier's tracking number, 1..=100 characters.
    #[schema(example = "CJ-1234-5678")]
    pub tracking_number: Option<String>,
}

/// Ship a PAID order (admin): it becomes SHIPPED and an `order.shipped` event goes to
/// the data platform. Any other status answers 409 `ORDER_STATUS_CONFLICT`.
#[utoipa::path(post, path = "/orders/{orderId}/ship", operation_id = "ship_order", security(("admin" = [])), tag = "admin",
    params(("orderId" = i64, Path, minimum = 1, example = 1)), request_body = ShipRequest,
    responses((status = 200, body = Order, description = "the order, now SHIPPED"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody, description = "ORDER_NOT_FOUND"),
        (status = 409, body = ErrorBody, description = "ORDER_STATUS_CONFLICT")))]
pub async fn ship(
    caller: crate::auth::Caller,
    State(state): State<AppState>,
    idem: Idempotency,
    PathId(id): PathId<OrderId>,
    Json(req): Json<ShipRequest>,
) -> ApiResult<Response> {
    let tracking = req
        .tracking_number
        .map(|t| {
            crate::text::visible_name(&t, 100).map_err(|_| {
                OrderError::Invalid("trackingNumber must be 1..=100 visible characters".into())
            })
        })
        .transpose()?;
    let held = idem.claim(caller)?;
    let work = Work::Ship {
        order: id,
        tracking,
    };
    Ok(state.write(&idem, held, work, render::<200>).await.1)
}

/// Mark a SHIPPED order delivered (admin): it becomes DELIVERED and an
/// `order.delivered` event goes to the data platform. Any other status answers 409
/// `ORDER_STATUS_CONFLICT`.
#[utoipa::path(post, path = "/orders/{orderId}/deliver", operation_id = "deliver_order", security(("admin" = [])), tag = "admin",
    params(("orderId" = i64, Path, minimum = 1, example = 1)),
    responses((status = 200, body = Order, description = "the order, now DELIVERED"),
        (status = 404, body = ErrorBody, description = "ORDER_NOT_FOUND"),
        (status = 409, body = ErrorBody, description = "ORDER_STATUS_CONFLICT")))]
pub async fn deliver(
    caller: crate::auth::Caller,
    State(state): State<AppState>,
    idem: Idempotency,
    PathId(id): PathId<OrderId>,
) -> ApiResult<Response> {
    let held = idem.claim(caller)?;
    Ok(state
        .write(&idem, held, Work::Deliver { order: id }, render::<200>)
        .await
        .1)
}

/// Pay a PENDING order from the balance. At most once, whatever races.
#[utoipa::path(post, path = "/api/v1/orders/{orderId}/payment", operation_id = "pay_order", security(("bearer" = [])), tag = "orders",
    params(("orderId" = i64, Path, minimum = 1, example = 1)),
    responses((status = 200, body = Order, description = "the order, now PAID"),
        (status = 404, body = ErrorBody, description = "ORDER_NOT_FOUND: no such order of the caller's"),
        (status = 409, body = ErrorBody, description = "INSUFFICIENT_BALANCE (the order stays PENDING), ORDER_NOT_PAYABLE")))]
pub async fn pay(
    Authenticated(caller): Authenticated,
    State(state): State<AppState>,
    idem: Idempotency,
    PathId(id): PathId<OrderId>,
) -> ApiResult<Response> {
    let user = caller.user()?;
    let held = idem.claim(caller)?;
    let work = Work::Pay {
        order: id,
        caller: user,
    };
    let (decision, res) = state.write(&idem, held, work, render::<200>).await;
    if let Some(Ok(_)) = decision {
        metrics::counter!("shop_orders_paid_total").increment(1);
    }
    Ok(res)
}

/// Cancel an order: a PENDING one releases its stock and coupon; a PAID one is also
/// refunded (in full, even when that takes the balance over `SHOP_MAX_BALANCE`: the
/// limit refuses charges, never money owed back).
#[utoipa::path(post, path = "/api/v1/orders/{orderId}/cancel", operation_id = "cancel_order", security(("bearer" = [])), tag = "orders",
    params(("orderId" = i64, Path, minimum = 1, example = 1)),
    responses((status = 200, body = Order, description = "the order, now CANCELLED"),
        (status = 404, body = ErrorBody, description = "ORDER_NOT_FOUND: no such order of the caller's"),
        (status = 409, body = ErrorBody, description = "ORDER_NOT_CANCELLABLE")))]
pub async fn cancel(
    Authenticated(caller): Authenticated,
    State(state): State<AppState>,
    idem: Idempotency,
    PathId(id): PathId<OrderId>,
) -> ApiResult<Response> {
    let user = caller.user()?;
    let held = idem.claim(caller)?;
    let work = Work::Cancel {
        order: id,
        caller: user,
    };
    Ok(state.write(&idem, held, work, render::<200>).await.1)
}

/// A user's orders, newest first.
#[utoipa::path(get, path = "/api/v1/users/{userId}/orders", operation_id = "list_user_orders", security(("bearer" = [])), tag = "users",
    params(("userId" = i64, Path, minimum = 1, example = 1), PagingParams),
    responses((status = 200, body = Page<Order>), (status = 404, body = ErrorBody, description = "USER_NOT_FOUND")))]
pub async fn list_for_user(
    OwnUser(user): OwnUser,
    State(state): State<AppState>,
    paging: Paging,
) -> ApiResult<axum::Json<Page<Order>>> {
    let mut conn = state.db.read().acquire().await?;
    let rows = store::list_for_user(
        &mut conn,
        state.db.backend,
        user,
        paging.after,
        paging.limit,
    )
    .await?;
    if rows.is_empty() && !crate::balance::store::user_exists(&mut *conn, user).await? {
        return Err(OrderError::UserNotFound(user).into());
    }
    Ok(axum::Json(Page::from_rows(rows, paging, |o| o.id.0)))
}
