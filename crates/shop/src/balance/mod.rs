//! Users' prepaid balance. Every change to a balance writes a ledger entry
//! with the balance after it, in the same transaction, so the sum of a user's ledger
//! always equals the balance. Changes are single guarded updates
//! (`balance = balance + $1 where ... <= limit`), so concurrent charges are all applied
//! and a balance never goes below zero.

pub mod routes;
pub mod store;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorCode};
use crate::ids::{LedgerId, OrderId, UserId};
use crate::money::Won;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"userId": 4, "balance": 100000}))]
#[serde(rename_all = "camelCase")]
pub struct Balance {
    pub user_id: UserId,
    pub balance: Won,
}

/// What moved the balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LedgerKind {
    Charge,
    Payment,
    Refund,
}

impl LedgerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerKind::Charge => "CHARGE",
            LedgerKind::Payment => "PAYMENT",
            LedgerKind::Refund => "REFUND",
        }
    }

    pub fn parse(s: &str) -> Option<LedgerKind> {
        match s {
            "CHARGE" => Some(LedgerKind::Charge),
            "PAYMENT" => Some(LedgerKind::Payment),
            "REFUND" => Some(LedgerKind::Refund),
            _ => None,
        }
    }
}

/// One line of a user's balance history.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"id": 5, "type": "PAYMENT", "amount": -70110, "balanceBefore": 100000, "balanceAfter": 29890, "orderId": 1, "createdAt": "2026-12-04T09:30:00.000Z"}))]
#[serde(rename_all = "camelCase")]
pub struct LedgerEntry {
    pub id: LedgerId,
    #[serde(rename = "type")]
    pub kind: LedgerKind,
    /// Signed: positive for CHARGE and REFUND, negative for PAYMENT.
    pub amount: Won,
    pub balance_before: Won,
    pub balance_after: Won,
    #[schema(required = true)]
    pub order_id: Option<OrderId>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum BalanceError {
    #[error("user {0} not found")]
    UserNotFound(UserId),
    #[error("the balance may not exceed {0}")]
    LimitExceeded(Won),
    #[error("insufficient balance")]
    Insufficient,
    #[error("charges of one day may not exceed {0}")]
    DailyLimitExceeded(Won),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

impl From<BalanceError> for ApiError {
    fn from(err: BalanceError) -> Self {
        match err {
            BalanceError::Db(e) => e.into(),
            other => refusal(&other),
        }
    }
}

/// The answer to a refused balance request.
pub fn refusal(err: &BalanceError) -> ApiError {
    match err {
        e @ BalanceError::UserNotFound(_) => ApiError::new(ErrorCode::UserNotFound, e.to_string()),
        e @ BalanceError::LimitExceeded(_) => {
            ApiError::new(ErrorCode::BalanceLimitExceeded, e.to_string())
        }
        e @ BalanceError::Insufficient => {
            ApiError::new(ErrorCode::InsufficientBalance, e.to_string())
        }
        e @ BalanceError::DailyLimitExceeded(_) => {
            ApiError::new(ErrorCode::DailyChargeLimitExceeded, e.to_string())
        }
        BalanceError::Db(e) => ApiError::internal(e),
    }
}
