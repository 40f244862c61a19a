//! The relay: moves outbox rows to the sink, oldest first, keeping each order's
//! events in order (an order whose earlier event is waiting for a retry is skipped
//! until that event is through).
//!
//! On PostgreSQL many instances relay at once: events are split into partitions by
//! order id (so one order's events stay in one partition, in order), and a partition
//! is relayed only by the instance holding its advisory lock. Each instance tries the
//! partitions from a random starting point, so the work spreads over the instances
//! and none waits while another has a backlog.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use tokio_util::sync::CancellationToken;

use super::sink::{Sink, SinkHealth};
use super::store;
use crate::clock::{Clock, to_millis};
use crate::db::Db;

/// Most events handled in one pass (of one partition).
const BATCH: i64 = 200;
/// Partitions of the outbox on PostgreSQL.
pub const PARTITIONS: i64 = 16;
/// The first key of the relay's advisory locks (the second is the partition).
pub(crate) const LOCK_CLASS: i32 = 0x5348_4f50; // "SHOP"

/// Retry delay after `attempts` failures: exponential from 1 s, capped at `cap`, with
/// jitter (see [`crate::retry::backoff`]).
pub fn backoff(attempts: i64, cap: Duration) -> Duration {
    crate::retry::backoff(attempts, Duration::from_secs(1), cap)
}

pub struct Relay {
    /// Marks deliveries through the writer (on SQLite, the one write connection is
    /// the writer's while it has work).
    pub writer: crate::batch::Writer,
    pub db: Db,
    pub sink: Sink,
    pub clock: Arc<dyn Clock>,
    pub interval: Duration,
    /// PostgreSQL: the connection that holds partition locks (locks die with it).
    pub locks: Option<sqlx::AnyConnection>,
    /// Longest wait between two attempts at one event.
    pub max_backoff: Duration,
    /// After this many failed attempts an event is parked until an admin retries it.
    pub max_attempts: i64,
    /// Fault injection for tests: exit the process right after this many publishes,
    /// before they are marked delivered.
    pub exit_after_publish: Option<u64>,
    pub published: u64,
    /// Where readiness reads how the sink is doing.
    pub health: SinkHealth,
}

impl Relay {
    /// Runs until `shutdown`, finishing the pass in progress.
    pub async fn run(mut self, shutdown: CancellationToken) {
        self.health.watch(&self.sink);
        let sink = self.sink.name();
        for counter in [
            "shop_outbox_delivered_total",
            "shop_outbox_failures_total",
            "shop_outbox_parked_total",
        ] {
            metrics::counter!(counter, "sink" => sink).increment(0);
        }
        loop {
            match self.pass().await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "outbox relay pass failed"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.interval) => {}
            }
        }
    }

    /// One pass over the undelivered events. Returns how many were delivered.
    pub async fn pass(&mut self) -> anyhow::Result<usize> {
        let (backlog, oldest) = store::backlog(self.db.read()).await?;
        metrics::gauge!("shop_outbox_backlog").set(backlog as f64);
        let age_ms = oldest.map_or(0, |at| (to_millis(self.clock.now()) - at).max(0));
        metrics::gauge!("shop_outbox_oldest_age_seconds").set(age_ms as f64 / 1000.0);
        if backlog == 0 {
            return Ok(0);
        }
        if !self.db.is_postgres() {
            return self.pass_over(None).await;
        }
        let mut locks = match self.locks.take() {
            Some(conn) => conn,
            None => self.db.dedicated_connection().await?,
        };
        let start = fastrand::i64(0..PARTITIONS);
        let mut delivered = 0;
        for k in 0..PARTITIONS {
            let partition = (start + k) % PARTITIONS;
            let (got,): (bool,) = sqlx::query_as("select pg_try_advisory_lock($1, $2)")
                .bind(LOCK_CLASS)
                .bind(partition as i32)
                .fetch_one(&mut locks)
                .await?;
            if !got {
                continue;
            }
            let result = self.pass_over(Some(partition)).await;
            sqlx::query("select pg_advisory_unlock($1, $2)")
                .bind(LOCK_CLASS)
                .bind(partition as i32)
                .execute(&mut locks)
                .await?;
            delivered += result?;
        }
        self.locks = Some(locks);
        Ok(delivered)
    }

    /// Delivers the oldest undelivered events (of one partition, when given).
    async fn pass_over(&mut self, partition: Option<i64>) -> anyhow::Result<usize> {
        let events =
            store::undelivered(self.db.read(), BATCH, partition.map(|p| (PARTITIONS, p))).await?;
        if events.is_empty() {
            return Ok(0);
        }
        let now = self.clock.now();
        let now_ms = to_millis(now);
        // At most one event per order in a batch (the oldest that may go): events of
        // different orders have no order between them, so the batch can be sent at
        // once; an order's next event waits for the next pass.
        let mut taken: HashSet<i64> = HashSet::new();
        let mut batch = Vec::new();
        for ev in &events {
            if !taken.insert(ev.order_id) || ev.next_attempt_at > now_ms {
                continue;
            }
            batch.push(ev);
        }
        if batch.is_empty() {
            // Every event waits for its next attempt: the sink's health is what the
            // last attempt found (a pass that tries nothing must not call it well).
            return Ok(0);
        }
        let results = self.sink.send_batch(&batch, now.timestamp()).await;
        self.health.record(results.iter().any(Result::is_ok));
        let mut sent = Vec::new();
        let mut failed = Vec::new();
        for (ev, result) in batch.iter().zip(results) {
            match result {
                Ok(()) => {
                    sent.push(ev.seq);
                    self.published += 1;
                    if self.exit_after_publish.is_some_and(|n| self.published >= n) {
                        tracing::error!(
                            "fault injection: exiting after a publish, before marking it delivered"
                        );
                        std::process::exit(86);
                    }
                }
                Err(e) => {
                    let retry_at = now
                        + TimeDelta::from_std(backoff(ev.attempts, self.max_backoff))
                            .unwrap_or_default();
                    let park = ev.attempts + 1 >= self.max_attempts;
                    failed.push((ev.seq, to_millis(retry_at), format!("{e:#}"), park));
                }
            }
        }
        if !sent.is_empty() {
            self.sink.flush().await?;
        }
        let backend = self.db.backend;
        let marks = (sent.clone(), failed.clone());
        self.writer
            .transact::<_, sqlx::Error>(Box::new(move |tx| {
                Box::pin(async move {
                    store::mark_delivered(&mut *tx, backend, &marks.0, now_ms).await?;
                    store::mark_failed(&mut *tx, backend, &marks.1, now_ms).await
                })
            }))
            .await?;
        let sink = self.sink.name();
        metrics::counter!("shop_outbox_delivered_total", "sink" => sink)
            .increment(sent.len() as u64);
        metrics::counter!("shop_outbox_failures_total", "sink" => sink)
            .increment(failed.len() as u64);
        let parked = failed.iter().filter(|f| f.3).count();
        if parked > 0 {
            metrics::counter!("shop_outbox_parked_total", "sink" => sink).increment(parked as u64);
            tracing::error!(
                parked,
                sink,
                destination = %self.sink.target(),
                "events parked after too many failed attempts; retry them through the admin API"
            );
        }
        if !failed.is_empty() {
            tracing::warn!(
                failed = failed.len(),
                sink,
                destination = %self.sink.target(),
                error = %failed[0].2,
                "event delivery failed, will retry"
            );
        }
        if sent.is_empty() {
            // Nothing went through: wait for the next tick rather than spin.
            return Ok(0);
        }
        Ok(sent.len())
    }
}
