//! The write path. Money, stock, coupons and orders change only here. Routes queue
//! typed jobs; a writer task takes every job waiting (up to `SHOP_BATCH_MAX`) and
//!
//! 1. reads every row the batch touches with one statement per table ([`sql::load`];
//!    `FOR UPDATE` in one global order on PostgreSQL),
//! 2. decides the jobs one after another in memory ([`rules::decide`], no I/O): job k
//!    sees what the jobs before it did, a refused job changes nothing,
//! 3. writes the outcome with one statement per table ([`sql::write`]), commits once,
//!    and only then answers each job.
//!
//! Idempotency keys are rows of the same batch: a keyed job's stored answer is read
//! in step 1 (a repeat is replayed, a reused key refused) and its answer is written in
//! step 3, in the commit that does the work, so "done" and "answered" are one fact.
//! The writer knows no HTTP: a job's result is a domain value or a domain error, and
//! the route hands in the function ([`Render`]) that turns it into the stored answer.
//!
//! A batch that fails as a whole is rolled back. A transient failure (a deadlock, a
//! lost connection, a busy database) runs it again after a backoff with jitter; any
//! other failure runs it again split in halves, down to one job, so one bad job
//! cannot fail the innocent ones. Jobs run in the writer task, so a client that goes
//! away cannot cancel a transaction halfway.

pub mod rules;
pub mod sql;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use futures::future::BoxFuture;
use sqlx::AnyConnection;
use tokio::sync::{mpsc, oneshot};

pub use rules::{Decision, Done, Refused, Rules, StockTarget, Work};

use crate::clock::{Clock, to_millis};
use crate::db::{Backend, Db};
use crate::ids::ProductId;

/// An answer as a client receives it: what is stored under an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
}

/// Turns a decision into the answer a client gets. Given by the route, so the writer
/// stores answers without knowing HTTP.
pub type Render = fn(&Decision) -> Answer;

/// An idempotency key claimed by a job: its scope (the caller), the key, and the
/// request's fingerprint (hex SHA-256 of method, path and body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub scope: String,
    pub key: String,
    pub fingerprint: String,
}

/// A job and, when its request carried a key, the key and how to render the answer.
pub struct Job {
    pub work: Work,
    pub key: Option<(Claim, Render)>,
}

/// What became of a job.
#[derive(Debug)]
pub enum Outcome {
    /// Decided and committed (a refusal commits its stored answer, nothing else).
    /// `answer` is the rendered answer when the job was keyed.
    Decided {
        decision: Decision,
        answer: Option<Answer>,
        /// Products whose stock the job moved.
        touched: Vec<ProductId>,
    },
    /// The key was used before with the same request: its first answer.
    Replayed(Answer),
    /// The key was used before with another request.
    KeyReused,
    /// Nothing of the job was applied: the batch failed (`transient`: a retry may
    /// succeed).
    RolledBack { transient: bool },
    /// The commit's outcome is unknown (the connection broke during it).
    Unknown,
}

/// What the writer is asked to do: a job of a batch, or a write of its own (a task,
/// run in a transaction of its own on the writer's connection).
enum Ticket {
    Job {
        job: Job,
        reply: oneshot::Sender<Outcome>,
        /// Dropped after the job's outcome is known (an idempotency key held in flight).
        _hold: Option<Box<dyn Send>>,
    },
    Task(Task),
}

/// A write outside the batches, run by a writer on its connection.
type Task = Box<dyn for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, ()> + Send>;

/// The work of a write outside the batches: runs in the transaction it is given.
pub type TxWork<T, E> =
    Box<dyn for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<T, E>> + Send>;

/// The queues of the writer tasks: one each. A job goes to the writer of the row it
/// contends for (its product, coupon, user or order): jobs on one hot row wait in one
/// queue and share its batches, instead of batches of several writers waiting for
/// each other's locks on that row.
#[derive(Clone)]
pub struct Writer {
    queues: Arc<[mpsc::Sender<Ticket>]>,
    backend: Backend,
    /// Spreads writes outside the batches over the writers.
    next_task: Arc<std::sync::atomic::AtomicUsize>,
}

/// How many times a batch runs again after a transient failure.
const RETRIES: u32 = 4;

impl Writer {
    /// Starts `writers` writer tasks sharing one queue (one on SQLite, which has one
    /// writer; several on PostgreSQL, whose batches run side by side). A `max_batch`
    /// of 1 turns group commit off (one transaction per job).
    pub fn start(
        db: Db,
        clock: Arc<dyn Clock>,
        rules: Rules,
        max_batch: usize,
        writers: usize,
    ) -> Writer {
        let backend = db.backend;
        let queues = (0..writers.max(1))
            .map(|_| {
                let (queue, rx) = mpsc::channel(16_384);
                tokio::spawn(writer(
                    db.clone(),
                    clock.clone(),
                    rules,
                    rx,
                    max_batch.max(1),
                ));
                queue
            })
            .collect();
        Writer {
            queues,
            backend,
            next_task: Default::default(),
        }
    }

    async fn send(&self, queue: usize, ticket: Ticket) -> bool {
        self.queues[queue % self.queues.len()]
            .send(ticket)
            .await
            .is_ok()
    }

    /// Queues `job` and waits for its outcome. `hold` is dropped once the outcome is
    /// known, even if the caller has stopped waiting.
    pub async fn submit(&self, job: Job, hold: Option<Box<dyn Send>>) -> Outcome {
        let (reply, answer) = oneshot::channel();
        let queue = job.work.affinity() as usize;
        let ticket = Ticket::Job {
            job,
            reply,
            _hold: hold,
        };
        if !self.send(queue, ticket).await {
            tracing::error!("the writer tasks have stopped");
            return Outcome::RolledBack { transient: false };
        }
        answer.await.unwrap_or_else(|_| {
            tracing::error!("a writer task dropped a job");
            Outcome::Unknown
        })
    }

    /// Runs `work` in a transaction of its own on a writer's connection and commits it
    /// when `work` succeeds (rolls back otherwise). Every write goes through the
    /// writers: on SQLite they hold its one write connection while there is work. The
    /// transaction runs in the writer, so a caller that goes away cannot cancel it
    /// halfway.
    pub async fn transact<T, E>(&self, work: TxWork<T, E>) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<sqlx::Error> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let backend = self.backend;
        let task: Task = Box::new(move |conn| {
            Box::pin(async move {
                let result = async {
                    let mut tx = begin(backend, conn).await?;
                    match work(&mut tx).await {
                        Ok(value) => {
                            tx.commit().await?;
                            Ok(value)
                        }
                        Err(e) => {
                            // Released now: a dropped transaction keeps its locks
                            // until the connection's next use.
                            if let Err(rollback) = tx.rollback().await {
                                tracing::warn!(error = %rollback, "rolling back a refused write");
                            }
                            Err(e)
                        }
                    }
                }
                .await;
                let _ = reply.send(result);
            })
        });
        let queue = self
            .next_task
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if !self.send(queue, Ticket::Task(task)).await {
            return Err(E::from(sqlx::Error::PoolClosed));
        }
        answer
            .await
            .unwrap_or_else(|_| Err(E::from(sqlx::Error::WorkerCrashed)))
    }
}

/// Begins a write transaction on `conn` (`BEGIN IMMEDIATE` on SQLite: the write lock
/// up front).
pub async fn begin(
    backend: Backend,
    conn: &mut AnyConnection,
) -> Result<sqlx::Transaction<'_, sqlx::Any>, sqlx::Error> {
    use sqlx::Connection;
    match backend {
        Backend::Sqlite => AnyConnection::begin_with(conn, "BEGIN IMMEDIATE").await,
        Backend::Postgres => conn.begin().await,
    }
}

async fn writer(
    db: Db,
    clock: Arc<dyn Clock>,
    rules: Rules,
    mut rx: mpsc::Receiver<Ticket>,
    max_batch: usize,
) {
    // The write connection, held while there is work (acquiring it for every batch
    // costs a trip through the pool, which returns a connection from a task of its
    // own), and handed back when the queue is empty.
    let mut held: Option<sqlx::pool::PoolConnection<sqlx::Any>> = None;
    loop {
        // Take what is waiting (at least one).
        let (tickets, more) = {
            let first = if held.is_some() {
                match rx.try_recv() {
                    Ok(first) => first,
                    Err(_) => {
                        held = None;
                        continue;
                    }
                }
            } else {
                let Some(first) = rx.recv().await else { return };
                first
            };
            let mut tickets = vec![first];
            while tickets.len() < max_batch {
                match rx.try_recv() {
                    Ok(next) => tickets.push(next),
                    Err(_) => break,
                }
            }
            let more = !rx.is_empty();
            (tickets, more)
        };
        let conn = match &mut held {
            Some(conn) => conn,
            None => match db.write_connection().await {
                Ok(conn) => held.insert(conn),
                Err(e) => {
                    tracing::error!(error = %e, "the writer has no database connection");
                    fail(tickets);
                    continue;
                }
            },
        };
        let mut jobs = Vec::new();
        for ticket in tickets {
            match ticket {
                Ticket::Task(task) => task(conn).await,
                job => jobs.push(job),
            }
        }
        if !jobs.is_empty() {
            let started = Instant::now();
            let refs: Vec<&Job> = jobs
                .iter()
                .map(|t| match t {
                    Ticket::Job { job, .. } => job,
                    Ticket::Task(_) => unreachable!("tasks ran"),
                })
                .collect();
            let (outcomes, broken) = run_on(db.backend, conn, &rules, clock.now(), &refs).await;
            metrics::histogram!("shop_batch_size").record(refs.len() as f64);
            metrics::histogram!("shop_batch_seconds").record(started.elapsed().as_secs_f64());
            drop(refs);
            for (ticket, outcome) in jobs.into_iter().zip(outcomes) {
                if let Ticket::Job { job, reply, .. } = ticket {
                    metrics::counter!("shop_batch_jobs_total", "kind" => job.work.kind())
                        .increment(1);
                    let _ = reply.send(outcome);
                }
            }
            if broken && let Some(mut conn) = held.take() {
                // The connection may be broken: do not hand it to anyone else.
                conn.close_on_drop();
            }
        }
        if !more {
            held = None;
        }
    }
}

/// Answers jobs that cannot run (no connection); tasks are dropped, so their callers
/// learn it.
fn fail(tickets: Vec<Ticket>) {
    for ticket in tickets {
        if let Ticket::Job { reply, .. } = ticket {
            let _ = reply.send(Outcome::RolledBack { transient: true });
        }
    }
}

/// Why a batch did not commit.
enum Failure {
    /// Rolled back before or at the commit: nothing was applied.
    Aborted(sqlx::Error),
    /// The commit was sent and no answer came back.
    Unknown(sqlx::Error),
}

/// Runs `jobs` as one batch at `now` on a connection of `db`'s write pool (see
/// [`run_on`]).
pub async fn run(
    db: &Db,
    rules: &Rules,
    now: chrono::DateTime<chrono::Utc>,
    jobs: &[&Job],
) -> Vec<Outcome> {
    match db.write_connection().await {
        Ok(mut conn) => run_on(db.backend, &mut conn, rules, now, jobs).await.0,
        Err(e) => {
            tracing::error!(error = %e, "no database connection for a batch");
            jobs.iter()
                .map(|_| Outcome::RolledBack { transient: true })
                .collect()
        }
    }
}

/// Runs `jobs` as one batch at `now` on `conn`, again after transient failures, split
/// in halves after others (or after too many retries); returns each job's outcome, in
/// order, and whether the connection may be broken (then it was not used again).
pub async fn run_on(
    backend: Backend,
    conn: &mut AnyConnection,
    rules: &Rules,
    now: chrono::DateTime<chrono::Utc>,
    jobs: &[&Job],
) -> (Vec<Outcome>, bool) {
    let mut broken = false;
    let mut outcomes: Vec<Option<Outcome>> = jobs.iter().map(|_| None).collect();
    // Ranges still to run, the next on top.
    let mut pending: Vec<std::ops::Range<usize>> = Vec::new();
    pending.push(0..jobs.len());
    while let Some(range) = pending.pop() {
        let mut attempt = 0;
        loop {
            if broken {
                for slot in &mut outcomes[range.clone()] {
                    *slot = Some(Outcome::RolledBack { transient: true });
                }
                break;
            }
            match apply(backend, conn, rules, now, &jobs[range.clone()]).await {
                Ok(done) => {
                    for (slot, outcome) in outcomes[range.clone()].iter_mut().zip(done) {
                        *slot = Some(outcome);
                    }
                    break;
                }
                Err(Failure::Unknown(e)) => {
                    broken = true;
                    tracing::error!(error = %e, jobs = range.len(), "a batch's commit got no answer: its outcome is unknown");
                    for slot in &mut outcomes[range.clone()] {
                        *slot = Some(Outcome::Unknown);
                    }
                    break;
                }
                Err(Failure::Aborted(e)) if crate::db::is_connection_error(&e) => {
                    broken = true;
                    tracing::error!(error = %e, jobs = range.len(), "a batch lost its connection and was rolled back");
                    for slot in &mut outcomes[range.clone()] {
                        *slot = Some(Outcome::RolledBack { transient: true });
                    }
                    break;
                }
                Err(Failure::Aborted(e)) => {
                    // A unique key taken by a concurrent batch (another instance
                    // storing the same idempotency key) is settled by reading again.
                    let transient = crate::db::is_transient(&e);
                    if (transient || crate::db::is_unique_violation(&e)) && attempt < RETRIES {
                        attempt += 1;
                        metrics::counter!("shop_batch_retries_total").increment(1);
                        tracing::info!(error = %e, attempt, "a batch failed for a passing reason; running it again");
                        tokio::time::sleep(crate::retry::backoff(
                            attempt.into(),
                            Duration::from_millis(5),
                            Duration::from_millis(200),
                        ))
                        .await;
                        continue;
                    }
                    if range.len() > 1 {
                        metrics::counter!("shop_batch_splits_total").increment(1);
                        tracing::warn!(error = %e, jobs = range.len(), "a batch failed; running it again in halves");
                        let mid = range.start + range.len() / 2;
                        pending.push(mid..range.end);
                        pending.push(range.start..mid);
                        break;
                    }
                    tracing::error!(error = %e, jobs = range.len(), "a write failed and was rolled back");
                    for slot in &mut outcomes[range.clone()] {
                        *slot = Some(Outcome::RolledBack { transient });
                    }
                    break;
                }
            }
        }
    }
    let outcomes = outcomes
        .into_iter()
        .map(|o| o.expect("every job ran"))
        .collect();
    (outcomes, broken)
}

/// One attempt at a batch: read, decide, write, commit.
async fn apply(
    backend: Backend,
    conn: &mut AnyConnection,
    rules: &Rules,
    now: chrono::DateTime<chrono::Utc>,
    jobs: &[&Job],
) -> Result<Vec<Outcome>, Failure> {
    let now_ms = to_millis(now);
    let mut clock = Phases::start();
    let mut tx = begin(backend, conn).await.map_err(Failure::Aborted)?;
    clock.lap("begin");
    let works: Vec<&Work> = jobs.iter().map(|j| &j.work).collect();
    let keys: Vec<(&str, &str)> = jobs
        .iter()
        .filter_map(|j| j.key.as_ref())
        .map(|(c, _)| (c.scope.as_str(), c.key.as_str()))
        .collect();
    let (mut state, mut stored) = match sql::load(&mut tx, backend, &works, &keys, now_ms).await {
        Ok(loaded) => loaded,
        Err(e) => return Err(abort(tx, e).await),
    };
    clock.lap("read");
    let mut new_keys = Vec::new();
    let mut outcomes = Vec::with_capacity(jobs.len());
    for job in jobs {
        if let Some((claim, _)) = &job.key
            && let Some(first) = stored.get(&(claim.scope.clone(), claim.key.clone()))
        {
            state.skip(&job.work);
            outcomes.push(if first.fingerprint == claim.fingerprint {
                Outcome::Replayed(Answer {
                    status: u16::try_from(first.status_code).unwrap_or(500),
                    body: Bytes::from(first.body.clone()),
                })
            } else {
                Outcome::KeyReused
            });
            continue;
        }
        state.touched.clear();
        let decision = rules::decide(&mut state, &job.work, rules, now);
        let touched = std::mem::take(&mut state.touched);
        let stored_key = match &decision {
            Err(refused) if refused.leaves_no_trace() => None,
            _ => job.key.as_ref(),
        };
        let answer = stored_key.map(|(claim, render)| {
            let answer = render(&decision);
            let body = String::from_utf8_lossy(&answer.body).into_owned();
            // A later job of this batch with the same key replays this answer.
            stored.insert(
                (claim.scope.clone(), claim.key.clone()),
                sql::StoredKey {
                    scope: claim.scope.clone(),
                    idem_key: claim.key.clone(),
                    fingerprint: claim.fingerprint.clone(),
                    status_code: i64::from(answer.status),
                    body: body.clone(),
                },
            );
            new_keys.push(sql::NewKey {
                scope: claim.scope.clone(),
                key: claim.key.clone(),
                fingerprint: claim.fingerprint.clone(),
                status: answer.status,
                body,
            });
            answer
        });
        outcomes.push(Outcome::Decided {
            decision,
            answer,
            touched,
        });
    }
    clock.lap("decide");
    if state.changes.is_empty() && new_keys.is_empty() {
        // Only refusals and replays: nothing to make durable. Rolled back now, not on
        // drop: a dropped transaction's rollback waits for the connection's next use,
        // and until then its row locks (FOR UPDATE) stay held on PostgreSQL, even
        // with the connection idle in the pool.
        tx.rollback().await.map_err(Failure::Aborted)?;
        return Ok(outcomes);
    }
    if let Err(e) = sql::write(&mut tx, backend, &state, &new_keys, now_ms).await {
        return Err(abort(tx, e).await);
    }
    clock.lap("write");
    tx.commit().await.map_err(|e| match e {
        // The database answered: it rolled back.
        sqlx::Error::Database(_) => Failure::Aborted(e),
        other => Failure::Unknown(other),
    })?;
    clock.lap("commit");
    Ok(outcomes)
}

/// A failed batch's transaction, rolled back at once (its locks released now, not
/// at the connection's next use); `err` is what failed.
async fn abort(tx: sqlx::Transaction<'_, sqlx::Any>, err: sqlx::Error) -> Failure {
    if !crate::db::is_connection_error(&err)
        && let Err(e) = tx.rollback().await
    {
        tracing::warn!(error = %e, "rolling back a failed batch");
    }
    Failure::Aborted(err)
}

/// Times the phases of a batch (`shop_batch_phase_seconds{phase}`).
struct Phases(Instant);

impl Phases {
    fn start() -> Phases {
        Phases(Instant::now())
    }

    fn lap(&mut self, phase: &'static str) {
        let now = Instant::now();
        metrics::histogram!("shop_batch_phase_seconds", "phase" => phase)
            .record((now - self.0).as_secs_f64());
        self.0 = now;
    }
}

/// The number of writer tasks: one on SQLite (one writer); on PostgreSQL `asked` (by
/// default one per write connection, at most that many: a writer holds its connection
/// while it has work).
pub fn writers(backend: Backend, asked: Option<usize>, max_connections: u32) -> usize {
    match backend {
        Backend::Sqlite => 1,
        Backend::Postgres => {
            let connections = crate::db::pool_sizes(max_connections).0 as usize;
            asked.unwrap_or(connections).clamp(1, connections)
        }
    }
}
