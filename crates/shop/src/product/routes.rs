//! `/api/v1/products` (public reads: list with search and sort, detail) and
//! `/api/v1/admin/products`, `/api/v1/admin/variants` (list in any status, create with
//! options and variants, edit content, status and prices, add variants, move stock).

use axum::extract::State;
use axum::http::{StatusCode, header};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::store::{self, After, ListQuery, NewProduct, NewVariant, ProductChanges, Sort};
use super::{
    Image, MAX_STOCK, MAX_VARIANTS, OptionValues, Product, ProductOption, ProductStatus,
    ProductSummary, validate_description, validate_images, validate_name, validate_options,
    validate_price, validate_sku, validate_stock, validate_variant_options,
};
use crate::app::AppState;
use crate::auth::Caller;
use crate::batch::{StockTarget, Work};
use crate::clock::to_millis;
use crate::error::{ApiError, ApiResult, ErrorBody, ErrorCode};
use crate::http::idempotency::{self, Idempotency, TxWork, render};
use crate::http::{Json, MAX_PAGE, Page, PathId, Query};
use crate::ids::{ProductId, VariantId};
use axum::response::{IntoResponse, Response};

/// The public routes (the admin's are in [`admin_router`]).
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(detail))
}

/// Admin routes, relative to `/api/v1/admin` (see [`crate::app::router`]).
pub fn admin_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(admin_list, create))
        .routes(routes!(update))
        .routes(routes!(adjust_stock))
        .routes(routes!(add_variant))
        .routes(routes!(update_variant))
        .routes(routes!(adjust_variant_stock))
}

/// A variant to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"options": {"size": "L"}, "price": 31_000, "stock": 10, "sku": "TS-L"}))]
pub struct VariantRequest {
    /// One value of each of the product's options (`{}` without options).
    #[schema(value_type = Object, example = json!({"size": "M", "colour": "white"}))]
    #[serde(default)]
    pub options: OptionValues,
    /// Won per unit, 1..=1,000,000,000.
    #[schema(minimum = 1, maximum = 1_000_000_000, example = 29_000)]
    pub price: i64,
    /// Initial stock, 0..=1,000,000,000.
    #[schema(minimum = 0, maximum = 1_000_000_000, example = 20)]
    pub stock: i64,
    /// 1..=64 letters, digits, `-`, `_` or `.`; unique.
    #[schema(example = "TS-M-WHITE")]
    pub sku: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Classic T-shirt", "description": "Cotton, regular fit.", "options": [{"name": "size", "values": ["S", "M"]}], "variants": [{"options": {"size": "S"}, "price": 29_000, "stock": 20}, {"options": {"size": "M"}, "price": 29_000, "stock": 30}]}))]
pub struct CreateProductRequest {
    /// 1..=200 characters.
    #[schema(min_length = 1, max_length = 200, example = "Classic T-shirt")]
    pub name: String,
    /// At most 5,000 characters.
    #[serde(default)]
    pub description: String,
    /// Without options: the one variant's price, 1..=1,000,000,000 won.
    #[schema(minimum = 1, maximum = 1_000_000_000, example = 29_000)]
    #[serde(default, deserialize_with = "crate::http::non_null")]
    pub price: Option<i64>,
    /// Without options: the one variant's initial stock (default 0).
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    #[serde(default, deserialize_with = "crate::http::non_null")]
    pub stock: Option<i64>,
    /// At most 10; the first is the main image.
    #[serde(default)]
    pub images: Vec<Image>,
    /// At most 5 options of 1..=20 values each.
    #[serde(default)]
    pub options: Vec<ProductOption>,
    /// With options: the variants (required), each naming one value of every option.
    #[serde(default, deserialize_with = "crate::http::non_null")]
    pub variants: Option<Vec<VariantRequest>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Classic T-shirt (organic)", "status": "ACTIVE"}))]
pub struct UpdateProductRequest {
    /// 1..=200 characters.
    #[schema(min_length = 1, max_length = 200)]
    #[serde(default, deserialize_with = "crate::http::non_null")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "crate::http::non_null")]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "crate::http::non_null")]
    pub images: Option<Vec<Image>>,
    #[serde(default, deserialize_with = "crate::http::non_null")]
    pub status: Option<ProductStatus>,
    /// Only for a product with one variant: its price, 1..=1,000,000,000 won.
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    #[serde(default, deserialize_with = "crate::http::non_null")]
    pub price: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"price": 27_000}))]
pub struct UpdateVariantRequest {
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    pub price: Option<i64>,
    pub sku: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"delta": 10}))]
pub struct StockRequest {
    /// Units to add (negative to remove); non-zero, within ±1,000,000,000.
    #[schema(schema_with = non_zero_delta)]
    pub delta: i64,
}

/// `delta`'s schema: 1..=MAX_STOCK or -MAX_STOCK..=-1 (0 answers 400).
fn non_zero_delta() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, Type};
    let range = |min: i64, max: i64| {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(min))
            .maximum(Some(max))
    };
    OneOfBuilder::new()
        .item(range(1, crate::product::MAX_STOCK))
        .item(range(-crate::product::MAX_STOCK, -1))
        .description(Some(
            "Units to add (negative to remove); non-zero, within ±1,000,000,000.",
        ))
        .examples([10])
        .build()
        .into()
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Names containing this, case-insensitive (at most 100 characters).
    pub q: Option<String>,
    /// `newest` (default), `price_asc`, `price_desc` or `name`.
    pub sort: Option<Sort>,
    /// Page size, 1..=100 (default 20).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// The `nextCursor` of the previous page (of the same `q` and `sort`).
    pub cursor: Option<String>,
    /// Admin list only: `ACTIVE` or `INACTIVE` (default: both).
    pub status: Option<ProductStatus>,
}

fn list_query(params: ListParams, status: Option<ProductStatus>) -> Result<ListQuery, ApiError> {
    let limit = match params.limit.as_deref() {
        None => crate::http::DEFAULT_PAGE,
        Some(s) => match s.parse::<i64>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => return Err(ApiError::invalid(format!("limit must be 1..={MAX_PAGE}"))),
        },
    };
    let q = params.q.map(|q| q.trim().to_string());
    if q.as_deref()
        .is_some_and(|q| q.chars().count() > 100 || q.chars().any(crate::text::is_hidden))
    {
        return Err(ApiError::invalid(
            "q must be at most 100 characters, without hidden characters",
        ));
    }
    let sort = params.sort.unwrap_or(Sort::Newest);
    let after = match params.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(After::parse(sort, c).ok_or_else(|| ApiError::invalid("invalid cursor"))?),
    };
    Ok(ListQuery {
        status,
        q,
        sort,
        after,
        limit,
    })
}

async fn page(state: &AppState, query: ListQuery) -> ApiResult<Page<ProductSummary>> {
    let mut rows = store::list(state.db.read(), state.db.backend, &query).await?;
    let next_cursor = if rows.len() as i64 > query.limit {
        rows.truncate(query.limit as usize);
        rows.last().map(|last| After::cursor(query.sort, last))
    } else {
        None
    };
    Ok(Page {
        items: rows,
        next_cursor,
    })
}

/// Products on sale: searched by name (`q`), sorted (`sort`), a page at a time.
#[utoipa::path(get, path = "/api/v1/products", operation_id = "list_products", tag = "products", params(ListParams),
    responses((status = 200, body = Page<ProductSummary>), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    Query(params): Query<ListParams>,
) -> ApiResult<axum::Json<Page<ProductSummary>>> {
    if params.status.is_some() {
        return Err(ApiError::invalid(
            "status is a filter of the admin's list: the public list shows ACTIVE products",
        ));
    }
    let query = list_query(params, Some(ProductStatus::Active))?;
    Ok(axum::Json(page(&state, query).await?))
}

/// Products in either status (admin), filtered by `status` and `q`.
#[utoipa::path(get, path = "/products", operation_id = "admin_list_products", security(("admin" = [])), tag = "admin", params(ListParams),
    responses((status = 200, body = Page<ProductSummary>), (status = 400, body = ErrorBody)))]
pub async fn admin_list(
    State(state): State<AppState>,
    Query(params): Query<ListParams>,
) -> ApiResult<axum::Json<Page<ProductSummary>>> {
    let status = params.status;
    let query = list_query(params, status)?;
    Ok(axum::Json(page(&state, query).await?))
}

/// One product (in either status, so carts and old orders can show it), with its
/// variants and the stock that can be ordered now.
#[utoipa::path(get, path = "/api/v1/products/{productId}", operation_id = "get_product", tag = "products",
    params(("productId" = i64, Path, minimum = 1, example = 1)),
    responses((status = 200, body = Product), (status = 404, body = ErrorBody, description = "PRODUCT_NOT_FOUND")))]
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
            let mut conn = state.db.read().acquire().await?;
            let product = store::get(&mut conn, id).await?;
            let ttl = std::time::Duration::from_millis(state.config.product_cache_ms);
            state.cache.put_product(&product, ttl).await;
            product
        }
    };
    let bytes = axum::body::Bytes::from(serde_json::to_vec(&product).map_err(ApiError::internal)?);
    state.local.put_product(id, epoch, bytes.clone());
    Ok(json(bytes))
}

fn new_variant(v: VariantRequest, options: &[ProductOption]) -> Result<NewVariant, ApiError> {
    Ok(NewVariant {
        options: validate_variant_options(options, v.options)?,
        price: validate_price(v.price)?,
        stock: validate_stock(v.stock)?,
        sku: v.sku.as_deref().map(validate_sku).transpose()?,
    })
}

fn new_product(req: CreateProductRequest) -> Result<NewProduct, ApiError> {
    let name = validate_name(&req.name)?;
    let description = validate_description(&req.description)?;
    let images = validate_images(req.images)?;
    let options = validate_options(req.options)?;
    let variants = match (options.is_empty(), req.variants) {
        (true, None) => {
            let price = req
                .price
                .ok_or_else(|| ApiError::invalid("price is required (or variants)"))?;
            vec![NewVariant {
                options: OptionValues::new(),
                price: validate_price(price)?,
                stock: validate_stock(req.stock.unwrap_or(0))?,
                sku: None,
            }]
        }
        (_, Some(_)) if req.price.is_some() || req.stock.is_some() => {
            return Err(ApiError::invalid(
                "with variants, price and stock are the variants'",
            ));
        }
        (false, None) => {
            return Err(ApiError::invalid(
                "a product with options lists its variants",
            ));
        }
        (_, Some(variants)) => {
            if variants.is_empty() || variants.len() > MAX_VARIANTS {
                return Err(ApiError::invalid(format!(
                    "a product has 1..={MAX_VARIANTS} variants"
                )));
            }
            variants
                .into_iter()
                .map(|v| new_variant(v, &options))
                .collect::<Result<Vec<_>, _>>()?
        }
    };
    let mut seen = std::collections::BTreeSet::new();
    if variants.iter().any(|v| !seen.insert(&v.options)) {
        return Err(ApiError::new(
            ErrorCode::VariantExists,
            "two variants name the same options",
        ));
    }
    Ok(NewProduct {
        name,
        description,
        images,
        options,
        variants,
    })
}

/// Create a product (admin): without options, `price` and `stock` make its one
/// variant; with options, `variants` lists them.
#[utoipa::path(post, path = "/products", operation_id = "create_product", security(("admin" = [])), tag = "admin",
    request_body = CreateProductRequest,
    responses((status = 201, body = Product), (status = 400, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "VARIANT_EXISTS, SKU_EXISTS")))]
pub async fn create(
    caller: Caller,
    State(state): State<AppState>,
    idem: Idempotency,
    Json(req): Json<CreateProductRequest>,
) -> ApiResult<Response> {
    let new = new_product(req)?;
    let held = idem.claim(caller)?;
    let now = to_millis(state.clock.now());
    let work: TxWork<Product> =
        Box::new(move |tx| Box::pin(async move { Ok(store::create(tx, &new, now).await?) }));
    let (_, res) = idempotency::transact(&state, &idem, held, StatusCode::CREATED, work).await?;
    Ok(res)
}

/// Edit a product's content, status, or (one variant only) price (admin). Placed
/// orders keep their prices and names.
#[utoipa::path(patch, path = "/products/{productId}", operation_id = "update_product", security(("admin" = [])), tag = "admin",
    request_body = UpdateProductRequest,
    params(("productId" = i64, Path, minimum = 1, example = 1)),
    responses((status = 200, body = Product), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody, description = "PRODUCT_NOT_FOUND")))]
pub async fn update(
    caller: Caller,
    State(state): State<AppState>,
    idem: Idempotency,
    PathId(id): PathId<ProductId>,
    Json(req): Json<UpdateProductRequest>,
) -> ApiResult<Response> {
    let changes = ProductChanges {
        name: req.name.as_deref().map(validate_name).transpose()?,
        description: req
            .description
            .as_deref()
            .map(validate_description)
            .transpose()?,
        images: req.images.map(validate_images).transpose()?,
        status: req.status,
        price: req.price.map(validate_price).transpose()?,
    };
    let held = idem.claim(caller)?;
    let now = to_millis(state.clock.now());
    let work: TxWork<Product> = Box::new(move |tx| {
        Box::pin(async move { Ok(store::update(tx, id, &changes, now).await?) })
    });
    let (changed, res) = idempotency::transact(&state, &idem, held, StatusCode::OK, work).await?;
    if changed.is_some() {
        state.products_changed([id]).await;
    }
    Ok(res)
}

/// Add a variant to a product (admin): one value of each of its options, not those of
/// another variant.
#[utoipa::path(post, path = "/products/{productId}/variants", security(("admin" = [])), tag = "admin",
    request_body = VariantRequest,
    params(("productId" = i64, Path, minimum = 1, example = 1)),
    responses((status = 201, body = Product), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody, description = "PRODUCT_NOT_FOUND"),
        (status = 409, body = ErrorBody, description = "VARIANT_EXISTS, SKU_EXISTS")))]
pub async fn add_variant(
    caller: Caller,
    State(state): State<AppState>,
    idem: Idempotency,
    PathId(id): PathId<ProductId>,
    Json(req): Json<VariantRequest>,
) -> ApiResult<Response> {
    // A product's options never change, so they can be read before the write.
    let options = {
        let mut conn = state.db.read().acquire().await?;
        store::get(&mut conn, id).await?.options
    };
    let variant = new_variant(req, &options)?;
    let held = idem.claim(caller)?;
    let now = to_millis(state.clock.now());
    let work: TxWork<Product> = Box::new(move |tx| {
        Box::pin(async move { Ok(store::add_variant(tx, id, &variant, now).await?) })
    });
    let (changed, res) =
        idempotency::transact(&state, &idem, held, StatusCode::CREATED, work).await?;
    if changed.is_some() {
        state.products_changed([id]).await;
    }
    Ok(res)
}

/// Change a variant's price or SKU (admin); answers its product.
#[utoipa::path(patch, path = "/variants/{variantId}", security(("admin" = [])), tag = "admin",
    request_body = UpdateVariantRequest,
    params(("variantId" = i64, Path, minimum = 1, example = 1)),
    responses((status = 200, body = Product), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody, description = "VARIANT_NOT_FOUND"),
        (status = 409, body = ErrorBody, description = "SKU_EXISTS")))]
pub async fn update_variant(
    caller: Caller,
    State(state): State<AppState>,
    idem: Idempotency,
    PathId(id): PathId<VariantId>,
    Json(req): Json<UpdateVariantRequest>,
) -> ApiResult<Response> {
    let price = req.price.map(validate_price).transpose()?;
    let sku = req.sku.as_deref().map(validate_sku).transpose()?;
    let held = idem.claim(caller)?;
    let now = to_millis(state.clock.now());
    let work: TxWork<Product> = Box::new(move |tx| {
        Box::pin(
            async move { Ok(store::update_variant(tx, id, price, sku.as_deref(), now).await?) },
        )
    });
    let (changed, res) = idempotency::transact(&state, &idem, held, StatusCode::OK, work).await?;
    if let Some(product) = changed {
        state.products_changed([product.id]).await;
    }
    Ok(res)
}

fn stock_delta(req: &StockRequest) -> Result<i64, ApiError> {
    if req.delta == 0 || !(-MAX_STOCK..=MAX_STOCK).contains(&req.delta) {
        return Err(ApiError::invalid(format!(
            "delta must be non-zero and within ±{MAX_STOCK}"
        )));
    }
    Ok(req.delta)
}

/// Add or remove stock of a product with one variant (admin; 400 for a product with
/// several: move a variant's). Taking stock below zero answers 409 `STOCK_BELOW_ZERO`.
#[utoipa::path(post, path = "/products/{productId}/stock", operation_id = "adjust_product_stock", security(("admin" = [])), tag = "admin",
    request_body = StockRequest,
    params(("productId" = i64, Path, minimum = 1, example = 1)),
    responses((status = 200, body = Product), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "PRODUCT_NOT_FOUND"), (status = 409, body = ErrorBody, description = "STOCK_BELOW_ZERO")))]
pub async fn adjust_stock(
    caller: Caller,
    State(state): State<AppState>,
    idem: Idempotency,
    PathId(id): PathId<ProductId>,
    Json(req): Json<StockRequest>,
) -> ApiResult<Response> {
    let delta = stock_delta(&req)?;
    let held = idem.claim(caller)?;
    let work = Work::AdjustStock {
        target: StockTarget::Product(id),
        delta,
    };
    Ok(state.write(&idem, held, work, render::<200>).await.1)
}

/// Add or remove a variant's stock (admin); answers its product. Taking stock below
/// zero answers 409 `STOCK_BELOW_ZERO`.
#[utoipa::path(post, path = "/variants/{variantId}/stock", security(("admin" = [])), tag = "admin",
    request_body = StockRequest,
    params(("variantId" = i64, Path, minimum = 1, example = 1)),
    responses((status = 200, body = Product), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "VARIANT_NOT_FOUND"), (status = 409, body = ErrorBody, description = "STOCK_BELOW_ZERO")))]
pub async fn adjust_variant_stock(
    caller: Caller,
    State(state): State<AppState>,
    idem: Idempotency,
    PathId(id): PathId<VariantId>,
    Json(req): Json<StockRequest>,
) -> ApiResult<Response> {
    let delta = stock_delta(&req)?;
    let held = idem.claim(caller)?;
    let work = Work::AdjustStock {
        target: StockTarget::Variant(id),
        delta,
    };
    Ok(state.write(&idem, held, work, render::<200>).await.1)
}
