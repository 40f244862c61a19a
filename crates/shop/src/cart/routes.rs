//! `/api/v1/users/{userId}/cart`: the cart's lines, and checkout.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Cart, CartError, store, validate_quantity};
use crate::app::AppState;
use crate::auth::{Caller, OwnUser};
use crate::batch::Work;
use crate::clock::to_millis;
use crate::error::{ApiResult, ErrorBody};
use crate::http::idempotency::{self, Idempotency, TxWork, render};
use crate::http::{Json, PathIds};
use crate::ids::{UserCouponId, UserId, VariantId};
use crate::order::{Order, OrderError};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(detail, clear))
        .routes(routes!(set_line, remove_line))
        .routes(routes!(checkout))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(example = json!({"quantity": 2}))]
pub struct CartLineRequest {
    /// 1..=1,000.
    #[schema(minimum = 1, maximum = 1000, example = 2)]
    pub quantity: i64,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schema(example = json!({"pay": true}))]
pub struct CheckoutRequest {
    /// A coupon of the user's to apply to the order.
    #[schema(minimum = 1)]
    #[serde(default, deserialize_with = "crate::http::non_null")]
    pub user_coupon_id: Option<i64>,
    /// Pay the order from the balance in the same step.
    #[serde(default)]
    pub pay: bool,
}

/// Runs a change of the user's cart in the writer, under the request's key.
async fn change(
    state: &AppState,
    idem: &Idempotency,
    user: UserId,
    work: impl for<'c> FnOnce(
        &'c mut sqlx::AnyConnection,
        i64,
    ) -> futures::future::BoxFuture<'c, Result<Cart, CartError>>
    + Send
    + 'static,
) -> ApiResult<Response> {
    let held = idem.claim(Caller::User(user))?;
    let now = to_millis(state.clock.now());
    let work: TxWork<Cart> = Box::new(move |tx| Box::pin(async move { Ok(work(tx, now).await?) }));
    Ok(
        idempotency::transact(state, idem, held, StatusCode::OK, work)
            .await?
            .1,
    )
}

/// The user's cart at current prices (empty when never used).
#[utoipa::path(get, path = "/api/v1/users/{userId}/cart", operation_id = "get_cart", security(("bearer" = [])), tag = "cart",
    params(("userId" = i64, Path, minimum = 1, example = 1)),
    responses((status = 200, body = Cart)))]
pub async fn detail(
    OwnUser(user): OwnUser,
    State(state): State<AppState>,
) -> ApiResult<axum::Json<Cart>> {
    let mut conn = state.db.read().acquire().await?;
    Ok(axum::Json(store::get(&mut conn, user).await?))
}

/// Set a line's quantity, adding the line when absent (at most 50 lines). A new line
/// must be of a product on sale; the cart holds no stock.
#[utoipa::path(put, path = "/api/v1/users/{userId}/cart/items/{variantId}", operation_id = "set_cart_line", security(("bearer" = [])), tag = "cart",
    request_body = CartLineRequest,
    params(("userId" = i64, Path, minimum = 1, example = 1), ("variantId" = i64, Path, minimum = 1, example = 1)),
    responses((status = 200, body = Cart), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "VARIANT_NOT_FOUND"),
        (status = 409, body = ErrorBody, description = "CART_FULL, PRODUCT_NOT_AVAILABLE")))]
pub async fn set_line(
    OwnUser(user): OwnUser,
    ids: PathIds,
    State(state): State<AppState>,
    idem: Idempotency,
    Json(req): Json<CartLineRequest>,
) -> ApiResult<Response> {
    let variant: VariantId = ids.get("variantId")?;
    let quantity = validate_quantity(req.quantity)?;
    change(&state, &idem, user, move |tx, now| {
        Box::pin(store::set_line(tx, user, variant, quantity, now))
    })
    .await
}

/// Remove a line (removing a line that is not there changes nothing).
#[utoipa::path(delete, path = "/api/v1/users/{userId}/cart/items/{variantId}", operation_id = "remove_cart_line", security(("bearer" = [])), tag = "cart",
    params(("userId" = i64, Path, minimum = 1, example = 1), ("variantId" = i64, Path, minimum = 1, example = 1)),
    responses((status = 200, body = Cart)))]
pub async fn remove_line(
    OwnUser(user): OwnUser,
    ids: PathIds,
    State(state): State<AppState>,
    idem: Idempotency,
) -> ApiResult<Response> {
    let variant: VariantId = ids.get("variantId")?;
    change(&state, &idem, user, move |tx, now| {
        Box::pin(store::remove_line(tx, user, variant, now))
    })
    .await
}

/// Empty the cart.
#[utoipa::path(delete, path = "/api/v1/users/{userId}/cart", operation_id = "clear_cart", security(("bearer" = [])), tag = "cart",
    params(("userId" = i64, Path, minimum = 1, example = 1)),
    responses((status = 200, body = Cart)))]
pub async fn clear(
    OwnUser(user): OwnUser,
    State(state): State<AppState>,
    idem: Idempotency,
) -> ApiResult<Response> {
    change(&state, &idem, user, move |tx, now| {
        Box::pin(store::clear(tx, user, now))
    })
    .await
}

/// Order every line of the cart at current prices, with the rules of
/// `POST /api/v1/orders`, all or nothing; the ordered lines leave the cart in the same
/// commit. With `"pay": true` the order is paid in that commit too. Two checkouts of one
/// cart at once make one order: the second finds the cart empty.
#[utoipa::path(post, path = "/api/v1/users/{userId}/cart/checkout", operation_id = "checkout_cart", security(("bearer" = [])), tag = "cart",
    request_body = CheckoutRequest,
    params(("userId" = i64, Path, minimum = 1, example = 1)),
    responses((status = 201, body = Order), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "USER_NOT_FOUND"),
        (status = 409, body = ErrorBody,
            description = "CART_EMPTY, INSUFFICIENT_STOCK, PRODUCT_NOT_AVAILABLE, COUPON_NOT_USABLE, INSUFFICIENT_BALANCE")))]
pub async fn checkout(
    OwnUser(user): OwnUser,
    State(state): State<AppState>,
    idem: Idempotency,
    Json(req): Json<CheckoutRequest>,
) -> ApiResult<Response> {
    if req.user_coupon_id.is_some_and(|c| c <= 0) {
        return Err(OrderError::Invalid("ids must be positive".into()).into());
    }
    let held = idem.claim(Caller::User(user))?;
    let work = Work::Checkout {
        user,
        user_coupon: req.user_coupon_id.map(UserCouponId),
        pay: req.pay,
    };
    let (decision, res) = state.write(&idem, held, work, render::<201>).await;
    crate::order::routes::count_paid(&decision);
    Ok(res)
}
