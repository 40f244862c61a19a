//! Products and their stock. `stock` is what can still be ordered now: on hand minus
//! what PENDING orders hold. It only moves by guarded single updates
//! (`stock = stock - $1 where stock >= $1`), so it never goes below zero.

pub mod routes;
pub mod store;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::ids::ProductId;
use crate::money::Won;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    pub id: ProductId,
    pub name: String,
    pub price: Won,
    /// Quantity that can be ordered now.
    pub stock: i64,
}

/// Largest price of one unit, in won.
pub const MAX_PRICE: i64 = 1_000_000_000;
/// Largest stock of one product.
pub const MAX_STOCK: i64 = 1_000_000_000;

#[derive(Debug, thiserror::Error)]
pub enum ProductError {
    #[error("product {0} not found")]
    NotFound(ProductId),
    #[error("stock would go below zero")]
    StockBelowZero,
    #[error("stock would exceed {MAX_STOCK}")]
    StockTooHigh,
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl From<ProductError> for ApiError {
    fn from(err: ProductError) -> Self {
        match err {
            ProductError::Db(e) => e.into(),
            other => refusal(&other),
        }
    }
}

/// The answer to a refused product request.
pub fn refusal(err: &ProductError) -> ApiError {
    match err {
        e @ ProductError::NotFound(_) => ApiError::not_found("PRODUCT_NOT_FOUND", e.to_string()),
        e @ ProductError::StockBelowZero => ApiError::conflict("STOCK_BELOW_ZERO", e.to_string()),
        e @ ProductError::StockTooHigh => ApiError::invalid(e.to_string()),
        ProductError::Db(e) => ApiError::internal(e),
    }
}

/// A product's (or coupon's) name: 1..=200 characters after trimming, none of them a
/// control, bidirectional-override or invisible character.
pub fn validate_name(name: &str) -> Result<String, ApiError> {
    crate::text::visible_name(name, 200).map_err(ApiError::invalid)
}

pub fn validate_price(price: i64) -> Result<Won, ApiError> {
    if !(0..=MAX_PRICE).contains(&price) {
        return Err(ApiError::invalid(format!(
            "price must be 0..={MAX_PRICE} won"
        )));
    }
    Ok(Won(price))
}
