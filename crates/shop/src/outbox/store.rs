//! SQL for the outbox table.

use chrono::{DateTime, Utc};
use sqlx::{Any, AnyConnection, Executor, FromRow};

use super::{Event, EventType};
use crate::clock::to_millis;
use crate::order::Order;

/// Writes the event for `order` in the caller's transaction.
pub async fn enqueue(
    conn: &mut AnyConnection,
    kind: EventType,
    order: &Order,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let event = Event {
        id: uuid::Uuid::now_v7().to_string(),
        kind,
        occurred_at: now,
        data: order.clone(),
    };
    let payload = serde_json::to_string(&event).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query(
        "insert into outbox_events (id, event_type, order_id, payload, created_at, attempts, next_attempt_at)
         values ($1, $2, $3, $4, $5, 0, $5)",
    )
    .bind(&event.id)
    .bind(kind.as_str())
    .bind(order.id.0)
    .bind(payload)
    .bind(to_millis(now))
    .execute(conn)
    .await?;
    Ok(())
}

/// An undelivered event.
#[derive(Debug, Clone, FromRow)]
pub struct Pending {
    pub seq: i64,
    pub id: String,
    pub order_id: i64,
    pub payload: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
}

/// The oldest undelivered events, in the order they were written; with
/// `Some((partitions, p))` only those of orders with `order_id % partitions = p`.
pub async fn undelivered(
    ex: impl Executor<'_, Database = Any>,
    limit: i64,
    partition: Option<(i64, i64)>,
) -> Result<Vec<Pending>, sqlx::Error> {
    let (partitions, p) = partition.unwrap_or((1, 0));
    sqlx::query_as(
        "select seq, id, order_id, payload, attempts, next_attempt_at from outbox_events
         where delivered_at is null and order_id % $1 = $2 order by seq limit $3",
    )
    .bind(partitions)
    .bind(p)
    .bind(limit)
    .fetch_all(ex)
    .await
}

pub async fn mark_delivered(
    conn: &mut AnyConnection,
    seq: i64,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update outbox_events set delivered_at = $1, attempts = attempts + 1 where seq = $2",
    )
    .bind(now_ms)
    .bind(seq)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn mark_failed(
    conn: &mut AnyConnection,
    seq: i64,
    next_attempt_ms: i64,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update outbox_events set attempts = attempts + 1, next_attempt_at = $1, last_error = $2 where seq = $3",
    )
    .bind(next_attempt_ms)
    .bind(error)
    .bind(seq)
    .execute(conn)
    .await?;
    Ok(())
}

/// How many events wait for delivery.
pub async fn backlog(ex: impl Executor<'_, Database = Any>) -> Result<i64, sqlx::Error> {
    let (n,): (i64,) =
        sqlx::query_as("select count(*) from outbox_events where delivered_at is null")
            .fetch_one(ex)
            .await?;
    Ok(n)
}
