//! Group commit. A PostgreSQL row updated by one transaction at a time tops out near
//! the disk's commit rate (a few hundred to a thousand commits a second), and SQLite
//! has one writer. So concurrent money and stock changes share commits: a single
//! writer task takes every job waiting in its queue, runs each in a SAVEPOINT of one
//! transaction (a refused job rolls back to its savepoint and changes nothing), commits
//! once, and only then answers each job. Each job's outcome is decided inside the
//! batch exactly as it would be alone: the same guarded statements, in order.
//! Commits stay durable; a failed commit answers every job that would have changed
//! something with a 5xx (nothing of theirs was applied).
//!
//! A single job locks rows in one global order (products, coupons, users), but a
//! batch of many jobs cannot: job 1 may lock a user before job 2 locks a product. So
//! on PostgreSQL each batch transaction first takes one transaction-scoped advisory
//! lock, making batches run one at a time across every instance: they never deadlock
//! with each other (measured: 2–8 writers side by side spent most of their time in
//! PostgreSQL's 1 s deadlock timeout). A batch that still hits a deadlock or
//! serialization failure (against a transaction outside the batches, e.g. the expiry
//! worker) is rolled back and run again.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use axum::http::StatusCode;
use futures::FutureExt;
use futures::future::BoxFuture;
use sqlx::AnyConnection;
use tokio::sync::{mpsc, oneshot};

use crate::db::Db;
use crate::error::ApiError;
use crate::ids::ProductId;

/// What a job produced: the answer to send once committed, and the products whose
/// cached copies must be dropped after the commit.
#[derive(Debug, Clone)]
pub struct Done {
    pub status: StatusCode,
    pub body: Vec<u8>,
    pub products: Vec<ProductId>,
}

pub type JobResult = Result<Done, ApiError>;

/// A unit of work run inside the batch's transaction. `Fn`, not `FnOnce`: a batch
/// may be run again after a deadlock.
pub type Job = Arc<dyn for<'c> Fn(&'c mut AnyConnection) -> BoxFuture<'c, JobResult> + Send + Sync>;

struct Queued {
    job: Job,
    reply: oneshot::Sender<JobResult>,
}

#[derive(Clone)]
pub struct Batcher {
    queue: mpsc::Sender<Queued>,
}

/// How many times a batch is run again after a deadlock or serialization failure.
const RETRIES: usize = 5;

/// The advisory lock (first key, second key) that batches on PostgreSQL take, one at
/// a time: the relay's class, past its partitions.
const BATCH_LOCK: (i32, i32) = (crate::outbox::relay::LOCK_CLASS, 1_000);

impl Batcher {
    /// Starts `writers` writer tasks sharing one queue (one on SQLite, which has one
    /// writer; several on PostgreSQL, whose batches run side by side). `max_batch` 1
    /// turns group commit off (one transaction per job).
    pub fn start(db: Db, max_batch: usize, writers: usize) -> Batcher {
        let (queue, rx) = mpsc::channel(8192);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..writers.max(1) {
            tokio::spawn(writer(db.clone(), rx.clone(), max_batch.max(1)));
        }
        // One job per transaction locks in the global order by itself.
        Batcher { queue }
    }

    /// Runs `job` in the next batch and waits for its commit.
    pub async fn run(&self, job: Job) -> JobResult {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Queued { job, reply })
            .await
            .map_err(|_| ApiError::internal("the writer task has stopped"))?;
        answer
            .await
            .map_err(|_| ApiError::internal("the writer task dropped a job"))?
    }
}

async fn writer(db: Db, rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Queued>>>, max_batch: usize) {
    loop {
        // Take what is waiting (at least one job), then let go of the queue so that
        // another writer can take the next batch while this one runs.
        let batch = {
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else { return };
            let mut batch = vec![first];
            while batch.len() < max_batch {
                match rx.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            batch
        };
        metrics::histogram!("shop_batch_size").record(batch.len() as f64);
        let results = run_batch(&db, &batch, max_batch > 1).await;
        for (queued, result) in batch.into_iter().zip(results) {
            let _ = queued.reply.send(result);
        }
    }
}

async fn run_batch(db: &Db, batch: &[Queued], grouped: bool) -> Vec<JobResult> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match try_batch(db, batch, grouped).await {
            Ok(results) => return results,
            Err(e) if e.retry && attempt <= RETRIES => {
                tracing::info!(attempt, "batch hit a deadlock; running it again");
                continue;
            }
            Err(e) => return batch.iter().map(|_| Err(e.clone())).collect(),
        }
    }
}

/// Runs every job in one transaction. `Err` means the whole batch failed (nothing
/// was committed).
async fn try_batch(db: &Db, batch: &[Queued], grouped: bool) -> Result<Vec<JobResult>, ApiError> {
    let mut tx = db.begin().await?;
    if grouped && db.is_postgres() {
        sqlx::query("select pg_advisory_xact_lock($1, $2)")
            .bind(BATCH_LOCK.0)
            .bind(BATCH_LOCK.1)
            .execute(&mut *tx)
            .await?;
    }
    let mut results = Vec::with_capacity(batch.len());
    for queued in batch {
        sqlx::query("savepoint job").execute(&mut *tx).await?;
        // A job that panics must not take the writer (and every later request) down.
        let result = AssertUnwindSafe((queued.job)(&mut tx))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| Err(ApiError::internal("a batched job panicked")));
        match &result {
            Ok(_) => {
                sqlx::query("release savepoint job")
                    .execute(&mut *tx)
                    .await?;
            }
            Err(e) if e.retry => return Err(e.clone()),
            Err(_) => {
                sqlx::query("rollback to savepoint job")
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("release savepoint job")
                    .execute(&mut *tx)
                    .await?;
            }
        }
        results.push(result);
    }
    if results.iter().all(|r| r.is_err()) {
        // Only refusals: nothing to make durable.
        drop(tx);
        return Ok(results);
    }
    tx.commit().await?;
    Ok(results)
}
