//! Data-platform events. Paying or cancelling an order writes an event row in the same
//! transaction (the outbox), so an event exists exactly when its change committed. The
//! relay delivers rows in order per order, outside any request, retrying with
//! exponential backoff and jitter, and marks a row delivered only after the sink took
//! it. A failing receiver delays events, never payments. Each event carries a unique
//! id (UUIDv7) so receivers drop the duplicates a retry may cause.

pub mod relay;
pub mod routes;
pub mod sink;
pub mod store;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::order::Order;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum EventType {
    #[serde(rename = "order.paid")]
    OrderPaid,
    #[serde(rename = "order.cancelled")]
    OrderCancelled,
    #[serde(rename = "order.shipped")]
    OrderShipped,
    #[serde(rename = "order.delivered")]
    OrderDelivered,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::OrderPaid => "order.paid",
            EventType::OrderCancelled => "order.cancelled",
            EventType::OrderShipped => "order.shipped",
            EventType::OrderDelivered => "order.delivered",
        }
    }
}

/// The document a data platform receives.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Unique (UUIDv7); receivers drop duplicates by it.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub occurred_at: DateTime<Utc>,
    /// The order, as `GET /api/v1/orders/{id}` answers it.
    pub data: Order,
}
