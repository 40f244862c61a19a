//! A user's cart: lines to buy later, at current prices. It holds no stock; checkout
//! orders it through the batched write path (`Work::Checkout`).

pub mod routes;
pub mod store;

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorCode};
use crate::ids::{ProductId, UserId, VariantId};
use crate::money::Won;
use crate::product::OptionValues;

/// Most lines a cart holds.
pub const MAX_LINES: i64 = 50;
/// Most units of one line.
pub const MAX_QUANTITY: i64 = 1_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CartItem {
    pub product_id: ProductId,
    pub variant_id: VariantId,
    /// The product's name now.
    pub name: String,
    /// The variant's options (`{}` for a product without options).
    #[schema(value_type = Object, example = json!({"size": "M"}))]
    pub options: OptionValues,
    /// The product's main image, if it has one.
    #[schema(required = true)]
    pub image: Option<String>,
    /// The variant's price now.
    pub unit_price: Won,
    pub quantity: i64,
    /// unitPrice × quantity.
    pub amount: Won,
    /// False when the product is INACTIVE or the variant has less stock than the line
    /// asks for now: checkout would be refused.
    pub available: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(example = json!({"userId": 4, "items": [{"productId": 6, "variantId": 9, "name": "Classic T-shirt", "options": {"colour": "black", "size": "M"}, "image": "/static/img/tshirt.svg", "unitPrice": 29000, "quantity": 2, "amount": 58000, "available": true}, {"productId": 2, "variantId": 2, "name": "Canvas tote", "options": {}, "image": "/static/img/tote.svg", "unitPrice": 19900, "quantity": 1, "amount": 19900, "available": true}], "totalAmount": 77900, "updatedAt": "2026-12-04T09:30:00.000Z"}))]
#[serde(rename_all = "camelCase")]
pub struct Cart {
    pub user_id: UserId,
    /// In the order the lines were first added.
    pub items: Vec<CartItem>,
    /// The sum of the lines' amounts (before any coupon).
    pub total_amount: Won,
    /// When the cart last changed; null for a cart never used.
    #[schema(required = true)]
    pub updated_at: Option<DateTime<Utc>>,
}

#[derive(Debug, thiserror::Error)]
pub enum CartError {
    #[error("user {0} not found")]
    UserNotFound(UserId),
    #[error("variant {0} not found")]
    VariantNotFound(VariantId),
    #[error("product {0} is not on sale")]
    ProductNotAvailable(ProductId),
    #[error("a cart holds at most {MAX_LINES} lines")]
    Full,
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl From<CartError> for ApiError {
    fn from(err: CartError) -> Self {
        let msg = err.to_string();
        match err {
            CartError::UserNotFound(_) => ApiError::new(ErrorCode::UserNotFound, msg),
            CartError::VariantNotFound(_) => ApiError::new(ErrorCode::VariantNotFound, msg),
            CartError::ProductNotAvailable(_) => ApiError::new(ErrorCode::ProductNotAvailable, msg),
            CartError::Full => ApiError::new(ErrorCode::CartFull, msg),
            CartError::Invalid(_) => ApiError::invalid(msg),
            CartError::Db(e) => e.into(),
        }
    }
}

/// A line's quantity, 1..=1,000.
pub fn validate_quantity(quantity: i64) -> Result<i64, CartError> {
    if (1..=MAX_QUANTITY).contains(&quantity) {
        Ok(quantity)
    } else {
        Err(CartError::Invalid(format!(
            "quantity must be 1..={MAX_QUANTITY}"
        )))
    }
}
