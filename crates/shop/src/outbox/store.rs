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
    pub event_type: String,
    pub order_id: i64,
    pub payload: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
}

/// The oldest undelivered events that may go now (not parked, and not behind a
/// parked event of the same order), in the order they were written; with
/// `Some((partitions, p))` only those of orders with `order_id % partitions = p`.
pub async fn undelivered(
    ex: impl Executor<'_, Database = Any>,
    limit: i64,
    partition: Option<(i64, i64)>,
) -> Result<Vec<Pending>, sqlx::Error> {
    let (partitions, p) = partition.unwrap_or((1, 0));
    sqlx::query_as(
        "select e.seq, e.id, e.event_type, e.order_id, e.payload, e.attempts, e.next_attempt_at
         from outbox_events e
         where e.delivered_at is null and e.parked_at is null and e.order_id % $1 = $2
           and not exists (select 1 from outbox_events f
                           where f.order_id = e.order_id and f.parked_at is not null
                             and f.delivered_at is null and f.seq < e.seq)
         order by e.seq limit $3",
    )
    .bind(partitions)
    .bind(p)
    .bind(limit)
    .fetch_all(ex)
    .await
}

/// Marks the events `seqs` delivered, in one statement.
pub async fn mark_delivered(
    conn: &mut AnyConnection,
    backend: crate::db::Backend,
    seqs: &[i64],
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    if seqs.is_empty() {
        return Ok(());
    }
    let rows: Vec<[i64; 1]> = seqs.iter().map(|s| [*s]).collect();
    sqlx::query(&crate::batch::sql::sql(
        backend,
        "update outbox_events set delivered_at = $2, attempts = attempts + 1
         where seq in (select cast(j.value ->> 0 as bigint) from {rows})",
    ))
    .bind(serde_json::to_string(&rows).expect("seqs serialize"))
    .bind(now_ms)
    .execute(conn)
    .await?;
    Ok(())
}

/// A failed attempt: the event's seq, when to try again, the error, and whether it is
/// parked (until an admin retries it).
pub type Failed = (i64, i64, String, bool);

/// Records failed attempts, in one statement.
pub async fn mark_failed(
    conn: &mut AnyConnection,
    backend: crate::db::Backend,
    failed: &[Failed],
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    if failed.is_empty() {
        return Ok(());
    }
    let rows: Vec<_> = failed
        .iter()
        .map(|(seq, next, error, park)| (seq, next, error, park.then_some(now_ms)))
        .collect();
    sqlx::query(&crate::batch::sql::sql(
        backend,
        "update outbox_events set attempts = outbox_events.attempts + 1,
             next_attempt_at = cast(j.value ->> 1 as bigint), last_error = j.value ->> 2,
             parked_at = cast(j.value ->> 3 as bigint)
         from {rows} where outbox_events.seq = cast(j.value ->> 0 as bigint)",
    ))
    .bind(serde_json::to_string(&rows).expect("failures serialize"))
    .execute(conn)
    .await?;
    Ok(())
}

/// An event as the admin API shows it.
#[derive(Debug, Clone, FromRow)]
pub struct EventRow {
    pub seq: i64,
    pub id: String,
    pub event_type: String,
    pub order_id: i64,
    pub created_at: i64,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub parked_at: Option<i64>,
}

/// Undelivered events (only parked ones when `parked_only`), oldest first, after `after`.
pub async fn list_undelivered(
    ex: impl Executor<'_, Database = Any>,
    parked_only: bool,
    after: i64,
    limit: i64,
) -> Result<Vec<EventRow>, sqlx::Error> {
    let parked = if parked_only {
        " and parked_at is not null"
    } else {
        ""
    };
    sqlx::query_as(&format!(
        "select seq, id, event_type, order_id, created_at, attempts, next_attempt_at, last_error,
                parked_at
         from outbox_events where delivered_at is null{parked} and seq > $1 order by seq limit $2"
    ))
    .bind(after)
    .bind(limit)
    .fetch_all(ex)
    .await
}

/// Puts parked events (one by id, or all) back in line for delivery now. Returns how
/// many (0 when the one asked for does not exist or was delivered).
pub async fn retry(
    conn: &mut AnyConnection,
    id: Option<&str>,
    now_ms: i64,
) -> Result<u64, sqlx::Error> {
    let done = match id {
        Some(id) => {
            sqlx::query(
                "update outbox_events set parked_at = null, attempts = 0, next_attempt_at = $1
                 where id = $2 and delivered_at is null",
            )
            .bind(now_ms)
            .bind(id)
            .execute(conn)
            .await?
        }
        None => {
            sqlx::query(
                "update outbox_events set parked_at = null, attempts = 0, next_attempt_at = $1
                 where parked_at is not null and delivered_at is null",
            )
            .bind(now_ms)
            .execute(conn)
            .await?
        }
    };
    Ok(done.rows_affected())
}

/// How many events wait for delivery, and when the oldest of them was written.
pub async fn backlog(
    ex: impl Executor<'_, Database = Any>,
) -> Result<(i64, Option<i64>), sqlx::Error> {
    sqlx::query_as("select count(*), min(created_at) from outbox_events where delivered_at is null")
        .fetch_one(ex)
        .await
}
