//! First-come-first-served coupons. The coupon row's `issued_quantity` counter is the
//! only thing that decides who gets one: a guarded increment
//! (`where issued_quantity < total_quantity`) and a unique `(coupon_id, user_id)` make
//! over-issue and double-issue impossible however many requests race, on however
//! many instances. The admin may raise or lower `total_quantity` (never below
//! `issued_quantity`: the edit takes the coupon row's lock, as an issuing batch does)
//! and stop or resume issue; each edit makes every instance's gate forget its
//! sold-out and inactive verdicts.

pub mod routes;
pub mod store;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorCode};
use crate::ids::{CouponId, OrderId, ProductId, UserCouponId, UserId};
use crate::money::{DiscountType, Won};

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": 1, "name": "Welcome 10% off", "discountType": "RATE", "discountValue": 10, "totalQuantity": 100, "issuedQuantity": 1, "minOrderAmount": 30000, "issueStartsAt": null, "issueEndsAt": null, "validDays": 30, "status": "ACTIVE", "productId": null}))]
#[serde(rename_all = "camelCase")]
pub struct Coupon {
    pub id: CouponId,
    pub name: String,
    pub discount_type: DiscountType,
    /// Won off (FIXED) or percent off, 1..=100 (RATE).
    pub discount_value: i64,
    pub total_quantity: i64,
    pub issued_quantity: i64,
    /// The order total (before discount) must be at least this.
    pub min_order_amount: Won,
    /// Issue opens at (null: already open).
    #[schema(required = true)]
    pub issue_starts_at: Option<DateTime<Utc>>,
    /// Issue closes at, exclusive (null: never).
    #[schema(required = true)]
    pub issue_ends_at: Option<DateTime<Utc>>,
    /// An issued coupon expires this many days after issue.
    pub valid_days: i64,
    /// INACTIVE: not issued any more (coupons already issued stay usable).
    pub status: CouponStatus,
    /// When set, the coupon discounts this product's lines only, and an order without
    /// one cannot use it.
    #[schema(required = true)]
    pub product_id: Option<ProductId>,
}

/// Whether a coupon is being issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CouponStatus {
    Active,
    Inactive,
}

impl CouponStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CouponStatus::Active => "ACTIVE",
            CouponStatus::Inactive => "INACTIVE",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ACTIVE" => Some(CouponStatus::Active),
            "INACTIVE" => Some(CouponStatus::Inactive),
            _ => None,
        }
    }
}

impl Coupon {
    pub fn in_issue_period(&self, now: DateTime<Utc>) -> bool {
        self.issue_starts_at.is_none_or(|s| now >= s) && self.issue_ends_at.is_none_or(|e| now < e)
    }
}

/// AVAILABLE, USED (held by a PENDING order or used by a PAID one), or EXPIRED.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UserCouponStatus {
    Available,
    Used,
    Expired,
}

impl UserCouponStatus {
    pub fn of(order: Option<OrderId>, expires_at: DateTime<Utc>, now: DateTime<Utc>) -> Self {
        if order.is_some() {
            UserCouponStatus::Used
        } else if expires_at <= now {
            UserCouponStatus::Expired
        } else {
            UserCouponStatus::Available
        }
    }
}

/// A coupon issued to a user.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": 1, "couponId": 1, "userId": 4, "status": "AVAILABLE", "issuedAt": "2026-12-04T09:30:00.000Z", "expiresAt": "2027-01-03T09:30:00.000Z", "usedAt": null, "orderId": null}))]
#[serde(rename_all = "camelCase")]
pub struct UserCoupon {
    pub id: UserCouponId,
    pub coupon_id: CouponId,
    pub user_id: UserId,
    pub status: UserCouponStatus,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// When the order holding it took it (null while available).
    #[schema(required = true)]
    pub used_at: Option<DateTime<Utc>>,
    /// The order holding or having used it.
    #[schema(required = true)]
    pub order_id: Option<OrderId>,
}

/// A user's coupon with the coupon's name and discount (for `GET /users/{id}/coupons`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": 1, "couponId": 1, "userId": 4, "status": "AVAILABLE", "name": "Welcome 10% off", "discountType": "RATE", "discountValue": 10, "minOrderAmount": 30000, "issuedAt": "2026-12-04T09:30:00.000Z", "expiresAt": "2027-01-03T09:30:00.000Z", "usedAt": null, "orderId": null, "productId": null}))]
#[serde(rename_all = "camelCase")]
pub struct UserCouponView {
    pub id: UserCouponId,
    pub coupon_id: CouponId,
    pub user_id: UserId,
    pub status: UserCouponStatus,
    pub name: String,
    pub discount_type: DiscountType,
    pub discount_value: i64,
    pub min_order_amount: Won,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// When the order holding it took it (null while available).
    #[schema(required = true)]
    pub used_at: Option<DateTime<Utc>>,
    /// The order holding or having used it.
    #[schema(required = true)]
    pub order_id: Option<OrderId>,
    /// The product it is limited to, if any.
    #[schema(required = true)]
    pub product_id: Option<ProductId>,
}

/// What happened to an issued coupon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CouponAction {
    /// Issued to the user.
    Issued,
    /// Taken by an order.
    Used,
    /// Given back by the order (cancelled or expired) before the coupon expired.
    Restored,
    /// Its validity passed while it was not in use (derived from `expiresAt`).
    Expired,
}

impl CouponAction {
    pub fn as_str(self) -> &'static str {
        match self {
            CouponAction::Issued => "ISSUED",
            CouponAction::Used => "USED",
            CouponAction::Restored => "RESTORED",
            CouponAction::Expired => "EXPIRED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ISSUED" => Some(CouponAction::Issued),
            "USED" => Some(CouponAction::Used),
            "RESTORED" => Some(CouponAction::Restored),
            "EXPIRED" => Some(CouponAction::Expired),
            _ => None,
        }
    }
}

/// One step of a user coupon's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"action": "USED", "orderId": 1, "at": "2026-12-04T09:30:00.000Z"}))]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    pub action: CouponAction,
    /// The order that used or gave back the coupon.
    #[schema(required = true)]
    pub order_id: Option<OrderId>,
    pub at: DateTime<Utc>,
}

/// A user coupon's history, oldest first: the recorded steps, then EXPIRED when the
/// coupon is not held by an order and its validity has passed, at its expiry (or at
/// the last step, when an order gave it back only after that).
pub fn history(
    mut recorded: Vec<HistoryEntry>,
    held: bool,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Vec<HistoryEntry> {
    if !held && expires_at <= now {
        let at = recorded
            .last()
            .map_or(expires_at, |last| last.at.max(expires_at));
        recorded.push(HistoryEntry {
            action: CouponAction::Expired,
            order_id: None,
            at,
        });
    }
    recorded
}

/// Applies an admin edit to `coupon`: the total never below what is issued, and the
/// issue period still a period.
pub fn apply_changes(
    coupon: &mut Coupon,
    changes: &store::CouponChanges,
) -> Result<(), CouponError> {
    if let Some(total) = changes.total_quantity {
        if total < coupon.issued_quantity {
            return Err(CouponError::QuantityBelowIssued(coupon.issued_quantity));
        }
        coupon.total_quantity = total;
    }
    if let Some(ends) = changes.issue_ends_at {
        if let (Some(s), Some(e)) = (coupon.issue_starts_at, ends)
            && s >= e
        {
            return Err(CouponError::Invalid(
                "issueEndsAt must be after issueStartsAt".into(),
            ));
        }
        coupon.issue_ends_at = ends;
    }
    if let Some(name) = &changes.name {
        coupon.name = name.clone();
    }
    if let Some(status) = changes.status {
        coupon.status = status;
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum CouponError {
    #[error("{0}")]
    Invalid(String),
    #[error("user coupon {0} not found")]
    UserCouponNotFound(UserCouponId),
    #[error("coupon {0} not found")]
    NotFound(CouponId),
    #[error("user {0} not found")]
    UserNotFound(UserId),
    #[error("the coupon is sold out")]
    SoldOut,
    #[error("the user already has this coupon")]
    AlreadyIssued,
    #[error("the coupon is not being issued now")]
    NotInIssuePeriod,
    #[error("the coupon is not being issued (INACTIVE)")]
    Inactive,
    #[error("totalQuantity may not go below the {0} already issued")]
    QuantityBelowIssued(i64),
    #[error("product {0} not found")]
    ProductNotFound(ProductId),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl From<CouponError> for ApiError {
    fn from(err: CouponError) -> Self {
        match err {
            CouponError::Db(e) => e.into(),
            other => refusal(&other),
        }
    }
}

/// The answer to a refused coupon request.
pub fn refusal(err: &CouponError) -> ApiError {
    match err {
        CouponError::Invalid(message) => ApiError::invalid(message.clone()),
        e @ CouponError::NotFound(_) => ApiError::new(ErrorCode::CouponNotFound, e.to_string()),
        e @ CouponError::UserCouponNotFound(_) => {
            ApiError::new(ErrorCode::UserCouponNotFound, e.to_string())
        }
        e @ CouponError::UserNotFound(_) => ApiError::new(ErrorCode::UserNotFound, e.to_string()),
        e @ CouponError::SoldOut => ApiError::new(ErrorCode::CouponSoldOut, e.to_string()),
        e @ CouponError::AlreadyIssued => {
            ApiError::new(ErrorCode::CouponAlreadyIssued, e.to_string())
        }
        e @ CouponError::NotInIssuePeriod => {
            ApiError::new(ErrorCode::CouponNotInIssuePeriod, e.to_string())
        }
        e @ CouponError::Inactive => ApiError::new(ErrorCode::CouponInactive, e.to_string()),
        e @ CouponError::QuantityBelowIssued(_) => {
            ApiError::new(ErrorCode::CouponQuantityBelowIssued, e.to_string())
        }
        e @ CouponError::ProductNotFound(_) => {
            ApiError::new(ErrorCode::ProductNotFound, e.to_string())
        }
        CouponError::Db(e) => ApiError::internal(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    fn step(action: CouponAction, order: Option<i64>, at: DateTime<Utc>) -> HistoryEntry {
        HistoryEntry {
            action,
            order_id: order.map(OrderId),
            at,
        }
    }

    #[test]
    fn expired_is_derived_when_the_validity_passed_unused() {
        let t0 = Utc::now();
        let expires = t0 + TimeDelta::days(1);
        let issued = vec![step(CouponAction::Issued, None, t0)];
        assert_eq!(history(issued.clone(), false, expires, t0).len(), 1);
        let h = history(issued.clone(), false, expires, expires);
        assert_eq!(h[1], step(CouponAction::Expired, None, expires));
        // Held by an order: not expired (the order may still be paid).
        assert_eq!(history(issued, true, expires, expires).len(), 1);
        // A step after the expiry (written before a clock moved back): never before it.
        let late = expires + TimeDelta::hours(1);
        let used = vec![
            step(CouponAction::Issued, None, t0),
            step(CouponAction::Used, Some(1), t0),
            step(CouponAction::Restored, Some(1), late),
        ];
        let h = history(used, false, expires, late);
        assert_eq!(h.last().unwrap(), &step(CouponAction::Expired, None, late));
    }
}
