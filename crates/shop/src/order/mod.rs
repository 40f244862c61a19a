//! Orders. Placing an order holds its stock and coupon at once, all or nothing;
//! paying takes the final amount from the balance at most once; cancelling or expiring
//! gives back what the order held (and refunds a paid one). The rules live in
//! [`crate::batch::rules`], decided in memory by the one write path, which writes
//! each change with its ledger entry and outbox event in one commit.

pub mod routes;
pub mod store;

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorCode};
use crate::ids::{OrderId, ProductId, UserCouponId, UserId, VariantId};
use crate::money::Won;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    Pending,
    Paid,
    Shipped,
    Delivered,
    Cancelled,
    Expired,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "PENDING",
            OrderStatus::Paid => "PAID",
            OrderStatus::Shipped => "SHIPPED",
            OrderStatus::Delivered => "DELIVERED",
            OrderStatus::Cancelled => "CANCELLED",
            OrderStatus::Expired => "EXPIRED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "PENDING" => OrderStatus::Pending,
            "PAID" => OrderStatus::Paid,
            "SHIPPED" => OrderStatus::Shipped,
            "DELIVERED" => OrderStatus::Delivered,
            "CANCELLED" => OrderStatus::Cancelled,
            "EXPIRED" => OrderStatus::Expired,
            _ => return None,
        })
    }
}

impl OrderStatus {
    /// Whether the order was paid and not given back: it holds its stock and counts
    /// in sales (PAID, SHIPPED, DELIVERED).
    pub fn is_paid(self) -> bool {
        matches!(
            self,
            OrderStatus::Paid | OrderStatus::Shipped | OrderStatus::Delivered
        )
    }
}

/// One requested line: a product, and which of its variants (may be left out for a
/// product with one variant).
#[derive(Debug, Clone, Copy)]
pub struct Line {
    pub product: ProductId,
    pub variant: Option<VariantId>,
    pub quantity: i64,
}

/// A validated order request.
#[derive(Debug, Clone)]
pub struct PlaceOrder {
    pub user: UserId,
    pub lines: Vec<Line>,
    pub user_coupon: Option<UserCouponId>,
    pub pay: bool,
}

/// Limits from configuration.
#[derive(Debug, Clone, Copy)]
pub struct OrderRules {
    pub max_items: usize,
    pub max_quantity: i64,
    pub ttl: TimeDelta,
}

/// Checks the shape of a request: 1..=max items, quantities 1..=max, positive ids.
pub fn validate_lines(lines: &[Line], rules: OrderRules) -> Result<(), OrderError> {
    if lines.is_empty() || lines.len() > rules.max_items {
        return Err(OrderError::Invalid(format!(
            "an order has 1..={} items",
            rules.max_items
        )));
    }
    for line in lines {
        if line.product.0 <= 0 || line.variant.is_some_and(|v| v.0 <= 0) {
            return Err(OrderError::Invalid(
                "productId and variantId must be positive ids".into(),
            ));
        }
        if !(1..=rules.max_quantity).contains(&line.quantity) {
            return Err(OrderError::Invalid(format!(
                "quantity must be 1..={}",
                rules.max_quantity
            )));
        }
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderItem {
    pub product_id: ProductId,
    pub variant_id: VariantId,
    /// The product's name when the order was placed.
    pub name: String,
    /// The variant's options (`{}` for a product without options).
    #[schema(value_type = Object, example = json!({"size": "M"}))]
    pub options: crate::product::OptionValues,
    /// The product's price when the order was placed.
    pub unit_price: Won,
    pub quantity: i64,
    /// unitPrice × quantity.
    pub amount: Won,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": 1, "userId": 4, "status": "PAID", "items": [{"productId": 6, "variantId": 9, "name": "Classic T-shirt", "options": {"colour": "black", "size": "M"}, "unitPrice": 29000, "quantity": 2, "amount": 58000}, {"productId": 2, "variantId": 2, "name": "Canvas tote", "options": {}, "unitPrice": 19900, "quantity": 1, "amount": 19900}], "userCouponId": 1, "totalAmount": 77900, "discountAmount": 7790, "finalAmount": 70110, "createdAt": "2026-12-04T09:30:00.000Z", "paidAt": "2026-12-04T09:30:00.000Z", "expiresAt": "2026-12-04T09:35:00.000Z"}))]
#[serde(rename_all = "camelCase")]
pub struct Order {
    pub id: OrderId,
    pub user_id: UserId,
    pub status: OrderStatus,
    pub items: Vec<OrderItem>,
    #[schema(required = true)]
    pub user_coupon_id: Option<UserCouponId>,
    /// Sum of the items' amounts.
    pub total_amount: Won,
    pub discount_amount: Won,
    /// totalAmount − discountAmount: what payment takes from the balance.
    pub final_amount: Won,
    pub created_at: DateTime<Utc>,
    #[schema(required = true)]
    pub paid_at: Option<DateTime<Utc>>,
    /// When a PENDING order expires and releases what it holds.
    pub expires_at: DateTime<Utc>,
    /// When the admin shipped it (SHIPPED, DELIVERED).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipped_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_number: Option<String>,
}

impl Order {
    /// Units per variant, in variant-id order.
    pub fn quantities(&self) -> BTreeMap<VariantId, i64> {
        summed(self.items.iter().map(|i| (i.variant_id, i.quantity)))
    }

    /// Units and won per product (the ranking counts products), in product-id order.
    pub fn sales(&self) -> BTreeMap<ProductId, (i64, i64)> {
        let mut sums = BTreeMap::new();
        for i in &self.items {
            let s: &mut (i64, i64) = sums.entry(i.product_id).or_default();
            s.0 += i.quantity;
            s.1 += i.amount.0;
        }
        sums
    }
}

/// Quantities summed per key, in key order.
pub fn summed<K: Ord>(lines: impl IntoIterator<Item = (K, i64)>) -> BTreeMap<K, i64> {
    let mut sums = BTreeMap::new();
    for (key, quantity) in lines {
        *sums.entry(key).or_insert(0) += quantity;
    }
    sums
}

/// Whether a payment attempt went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentStatus {
    Succeeded,
    Failed,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Succeeded => "SUCCEEDED",
            PaymentStatus::Failed => "FAILED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "SUCCEEDED" => Some(PaymentStatus::Succeeded),
            "FAILED" => Some(PaymentStatus::Failed),
            _ => None,
        }
    }
}

/// One attempt to pay an order from the balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": 1, "status": "SUCCEEDED", "amount": 70110, "failureCode": null, "at": "2026-12-04T09:30:00.000Z"}))]
#[serde(rename_all = "camelCase")]
pub struct Payment {
    pub id: crate::ids::PaymentId,
    pub status: PaymentStatus,
    /// What the attempt took, or tried to take.
    pub amount: Won,
    /// Why it failed (`INSUFFICIENT_BALANCE`); null when it succeeded.
    #[schema(required = true)]
    pub failure_code: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("order {0} not found")]
    NotFound(OrderId),
    #[error("user {0} not found")]
    UserNotFound(UserId),
    #[error("product {0} not found")]
    ProductNotFound(ProductId),
    #[error("not enough stock of product {0}, variant {1}")]
    InsufficientStock(ProductId, VariantId),
    #[error("variant {0} is not one of the product's")]
    VariantNotFound(VariantId),
    #[error("product {0} is not on sale")]
    ProductNotAvailable(ProductId),
    #[error("product {0} has several variants: name the variant")]
    VariantRequired(ProductId),
    #[error("the cart is empty")]
    CartEmpty,
    #[error("the order is {0:?}: not a step it can take")]
    StatusConflict(OrderStatus),
    #[error("the coupon cannot be used: {0}")]
    CouponNotUsable(&'static str),
    #[error("insufficient balance")]
    InsufficientBalance,
    #[error("the order is {0:?}, not PENDING (or its payment window has passed)")]
    NotPayable(OrderStatus),
    #[error("the order is {0:?} and cannot be cancelled")]
    NotCancellable(OrderStatus),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl From<OrderError> for ApiError {
    fn from(err: OrderError) -> Self {
        match err {
            OrderError::Db(e) => e.into(),
            other => refusal(&other),
        }
    }
}

/// The answer to a refused order request.
pub fn refusal(err: &OrderError) -> ApiError {
    let msg = err.to_string();
    match err {
        OrderError::NotFound(_) => ApiError::new(ErrorCode::OrderNotFound, msg),
        OrderError::UserNotFound(_) => ApiError::new(ErrorCode::UserNotFound, msg),
        OrderError::ProductNotFound(_) => ApiError::new(ErrorCode::ProductNotFound, msg),
        OrderError::InsufficientStock(..) => ApiError::new(ErrorCode::InsufficientStock, msg),
        OrderError::VariantNotFound(_) => ApiError::new(ErrorCode::VariantNotFound, msg),
        OrderError::ProductNotAvailable(_) => ApiError::new(ErrorCode::ProductNotAvailable, msg),
        OrderError::VariantRequired(_) => ApiError::invalid(msg),
        OrderError::CartEmpty => ApiError::new(ErrorCode::CartEmpty, msg),
        OrderError::StatusConflict(_) => ApiError::new(ErrorCode::OrderStatusConflict, msg),
        OrderError::CouponNotUsable(_) => ApiError::new(ErrorCode::CouponNotUsable, msg),
        OrderError::InsufficientBalance => ApiError::new(ErrorCode::InsufficientBalance, msg),
        OrderError::NotPayable(_) => ApiError::new(ErrorCode::OrderNotPayable, msg),
        OrderError::NotCancellable(_) => ApiError::new(ErrorCode::OrderNotCancellable, msg),
        OrderError::Invalid(_) => ApiError::invalid(msg),
        OrderError::Db(e) => ApiError::internal(e),
    }
}
