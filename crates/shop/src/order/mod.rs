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

use crate::balance::BalanceError;
use crate::error::ApiError;
use crate::ids::{OrderId, ProductId, UserCouponId, UserId};
use crate::money::Won;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    Pending,
    Paid,
    Cancelled,
    Expired,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "PENDING",
            OrderStatus::Paid => "PAID",
            OrderStatus::Cancelled => "CANCELLED",
            OrderStatus::Expired => "EXPIRED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "PENDING" => OrderStatus::Pending,
            "PAID" => OrderStatus::Paid,
            "CANCELLED" => OrderStatus::Cancelled,
            "EXPIRED" => OrderStatus::Expired,
            _ => return None,
        })
    }
}

/// One requested line.
#[derive(Debug, Clone, Copy)]
pub struct Line {
    pub product: ProductId,
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
        if line.product.0 <= 0 {
            return Err(OrderError::Invalid(
                "productId must be a positive id".into(),
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

/// Demand summed per product, in product-id order.
pub fn demand(lines: &[Line]) -> BTreeMap<ProductId, i64> {
    per_product(lines.iter().map(|l| (l.product, l.quantity)))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderItem {
    pub product_id: ProductId,
    /// The product's name when the order was placed.
    pub name: String,
    /// The product's price when the order was placed.
    pub unit_price: Won,
    pub quantity: i64,
    /// unitPrice × quantity.
    pub amount: Won,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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
}

impl Order {
    /// Units per product, in product-id order.
    pub fn quantities(&self) -> BTreeMap<ProductId, i64> {
        per_product(self.items.iter().map(|i| (i.product_id, i.quantity)))
    }
}

/// Quantities summed per product, in product-id order.
fn per_product(lines: impl IntoIterator<Item = (ProductId, i64)>) -> BTreeMap<ProductId, i64> {
    let mut sums = BTreeMap::new();
    for (product, quantity) in lines {
        *sums.entry(product).or_insert(0) += quantity;
    }
    sums
}

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("order {0} not found")]
    NotFound(OrderId),
    #[error("user {0} not found")]
    UserNotFound(UserId),
    #[error("product {0} not found")]
    ProductNotFound(ProductId),
    #[error("not enough stock of product {0}")]
    InsufficientStock(ProductId),
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

impl From<BalanceError> for OrderError {
    fn from(err: BalanceError) -> Self {
        match err {
            BalanceError::UserNotFound(u) => OrderError::UserNotFound(u),
            BalanceError::Insufficient | BalanceError::LimitExceeded(_) => {
                OrderError::InsufficientBalance
            }
            BalanceError::Db(e) => OrderError::Db(e),
        }
    }
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
        OrderError::NotFound(_) => ApiError::not_found("ORDER_NOT_FOUND", msg),
        OrderError::UserNotFound(_) => ApiError::not_found("USER_NOT_FOUND", msg),
        OrderError::ProductNotFound(_) => ApiError::not_found("PRODUCT_NOT_FOUND", msg),
        OrderError::InsufficientStock(_) => ApiError::conflict("INSUFFICIENT_STOCK", msg),
        OrderError::CouponNotUsable(_) => ApiError::conflict("COUPON_NOT_USABLE", msg),
        OrderError::InsufficientBalance => ApiError::conflict("INSUFFICIENT_BALANCE", msg),
        OrderError::NotPayable(_) => ApiError::conflict("ORDER_NOT_PAYABLE", msg),
        OrderError::NotCancellable(_) => ApiError::conflict("ORDER_NOT_CANCELLABLE", msg),
        OrderError::Invalid(_) => ApiError::invalid(msg),
        OrderError::Db(e) => ApiError::internal(e),
    }
}
