//! `/api/v1/products` (public reads) and `/api/v1/admin/products` (create, rename,
//! reprice, adjust stock).

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::routing::{get, patch, post};
use serde::Deserialize;
use utoipa::ToSchema;

use super::{MAX_STOCK, Product, store, validate_name, validate_price};
use crate::app::AppState;
use crate::auth::Caller;
use crate::batch::Work;
use crate::clock::to_millis;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::http::idempotency::{self, Idempotency, TxWork, render};
use crate::http::{Json, Page, Paging, PagingParams, PathId};
use crate::ids::ProductId;
use axum::response::{IntoResponse, Response};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/products", get(list))
        .route("/api/v1/products/{productId}", get(detail))
        .route("/api/v1/admin/products", post(create))
        .route("/api/v1/admin/products/{productId}", patch(update))
        .route(
            "/api/v1/admin/products/{productId}/stock",
            post(adjust_stock),
        )
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProductRequest {
    /// 1..=200 characters.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// Won per unit, 0..=1,000,000,000.
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub price: i64,
    /// Initial stock, 0..=1,000,000,000.
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub stock: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProductRequest {
    /// 1..=200 characters.
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
    /// Won per unit, 0..=1,000,000,000.
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    pub price: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StockRequest {
    /// Units to add (negative to remove); non-zero, within ±1,000,000,000.
    #[schema(minimum = -1_000_000_000, maximum = 1_000_000_000)]
    pub delta: i64,
}

/// Products in id order.
#[utoipa::path(get, path = "/api/v1/products", tag = "products", params(PagingParams),
    responses((status = 200, body = Page<Product>), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    paging: Paging,
) -> ApiResult<axum::Json<Page<Product>>> {
    let rows = store::list(state.db.read(), paging).await?;
    Ok(axum::Json(Page::from_rows(rows, paging, |p| p.id.0)))
}

/// One product, with the stock that can be ordered now.
#[utoipa::path(get, path = "/api/v1/products/{productId}", tag = "products",
    params(("productId" = i64, Path, minimum = 1)),
    responses((status = 200, body = Product), (status = 404, body = ErrorBody)))]
pub async fn detail(
    State(state): State<AppState>,
    PathId(id): PathId<ProductId>,
) -> ApiResult<Response> {
    let json = |bytes: axum::body::Bytes| {
        ([(header::CONTENT_TYPE, "application/json")], bytes).into_response()
    };
    if let Some(bytes) = state.local.product(id) {
        return Ok(json(bytes));
    }
    let epoch = state.local.product_epoch(id);
    let product = match state.cache.product(id).await {
        Some(product) => product,
        None => {
            let product = store::get(state.db.read(), id).await?;
            let ttl = std::time::Duration::from_millis(state.config.product_cache_ms);
            state.cache.put_product(&product, ttl).await;
            product
        }
    };
    let bytes = axum::body::Bytes::from(serde_json::to_vec(&product).map_err(ApiError::internal)?);
    state.local.put_product(id, epoch, bytes.clone());
    Ok(json(bytes))
}

/// Create a product (admin).
#[utoipa::path(post, path = "/api/v1/admin/products", tag = "admin",
    request_body = CreateProductRequest,
    responses((status = 201, body = Product), (status = 400, body = ErrorBody)))]
pub async fn create(
    caller: Caller,
    State(state): State<AppState>,
    idem: Idempotency,
    Json(req): Json<CreateProductRequest>,
) -> ApiResult<Response> {
    let name = validate_name(&req.name)?;
    let price = validate_price(req.price)?;
    if !(0..=MAX_STOCK).contains(&req.stock) {
        return Err(ApiError::invalid(format!("stock must be 0..={MAX_STOCK}")));
    }
    let held = idem.claim(caller)?;
    let (stock, now) = (req.stock, to_millis(state.clock.now()));
    let work: TxWork<Product> = Box::new(move |tx| {
        Box::pin(async move { Ok(store::create(tx, &name, price, stock, now).await?) })
    });
    let (_, res) = idempotency::transact(&state, &idem, held, StatusCode::CREATED, work).await?;
    Ok(res)
}

/// Rename and/or reprice a product (admin). Placed orders keep their prices.
#[utoipa::path(patch, path = "/api/v1/admin/products/{productId}", tag = "admin",
    request_body = UpdateProductRequest,
    params(("productId" = i64, Path, minimum = 1)),
    responses((status = 200, body = Product), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update(
    caller: Caller,
    State(state): State<AppState>,
    idem: Idempotency,
    PathId(id): PathId<ProductId>,
    Json(req): Json<UpdateProductRequest>,
) -> ApiResult<Response> {
    let name = req.name.as_deref().map(validate_name).transpose()?;
    let price = req.price.map(validate_price).transpose()?;
    let held = idem.claim(caller)?;
    let now = to_millis(state.clock.now());
    let work: TxWork<Product> = Box::new(move |tx| {
        Box::pin(async move { Ok(store::update(tx, id, name.as_deref(), price, now).await?) })
    });
    let (changed, res) = idempotency::transact(&state, &idem, held, StatusCode::OK, work).await?;
    if changed.is_some() {
        state.products_changed([id]).await;
    }
    Ok(res)
}

/// Add or remove stock (admin). Taking stock below zero answers 409 `STOCK_BELOW_ZERO`.
#[utoipa::path(post, path = "/api/v1/admin/products/{productId}/stock", tag = "admin",
    request_body = StockRequest,
    params(("productId" = i64, Path, minimum = 1)),
    responses((status = 200, body = Product), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "STOCK_BELOW_ZERO")))]
pub async fn adjust_stock(
    caller: Caller,
    State(state): State<AppState>,
    idem: Idempotency,
    PathId(id): PathId<ProductId>,
    Json(req): Json<StockRequest>,
) -> ApiResult<Response> {
    if req.delta == 0 || !(-MAX_STOCK..=MAX_STOCK).contains(&req.delta) {
        return Err(ApiError::invalid(format!(
            "delta must be non-zero and within ±{MAX_STOCK}"
        )));
    }
    let held = idem.claim(caller)?;
    let work = Work::AdjustStock {
        product: id,
        delta: req.delta,
    };
    Ok(state.write(&idem, held, work, render::<200>).await.1)
}
