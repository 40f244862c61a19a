//! The database. The backend is a closed set chosen by the URL scheme: embedded
//! SQLite (the default) or PostgreSQL. Both are reached through sqlx's `Any` driver,
//! so every store function is written once, in portable SQL (`$N` placeholders,
//! guarded `update ... where ... returning`, `insert ... on conflict`).
//!
//! SQLite allows one writer at a time. Rather than let writers collide on the file
//! lock and poll, writes go through a pool of exactly one connection (so they queue
//! in the application, in order) and every write transaction begins `IMMEDIATE`;
//! reads use a separate pool of connections that WAL lets run beside the writer.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use futures::future::BoxFuture;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyPool, Executor, Transaction};

/// Which database the server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A write transaction. Store functions take `&mut Tx` (or any executor).
pub type Tx = Transaction<'static, Any>;

#[derive(Debug, Clone)]
pub struct Db {
    pub backend: Backend,
    write: AnyPool,
    read: AnyPool,
    /// The SQLite database file, when embedded.
    pub sqlite_path: Option<PathBuf>,
    url: String,
}

impl Db {
    /// Connects to `url` and runs the migrations of its backend. On PostgreSQL every
    /// statement is bounded by `statement_timeout` (so a stuck query cannot hold a
    /// row lock forever) and an idle transaction by four times that.
    pub async fn connect(
        url: &str,
        max_connections: u32,
        statement_timeout: Duration,
    ) -> anyhow::Result<Db> {
        sqlx::any::install_default_drivers();
        let db = if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            let path = path.split('?').next().unwrap_or(path);
            let file = PathBuf::from(path);
            if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            let url = format!("sqlite://{path}?mode=rwc");
            let opts = AnyConnectOptions::from_str(&url)?;
            let write = AnyPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(30))
                .after_connect(|conn, _meta| Box::pin(sqlite_pragmas(conn)))
                .connect_with(opts.clone())
                .await
                .with_context(|| format!("opening {url}"))?;
            let read = AnyPoolOptions::new()
                .max_connections(max_connections.max(1))
                .after_connect(|conn, _meta| Box::pin(sqlite_pragmas(conn)))
                .connect_with(opts)
                .await?;
            Db {
                backend: Backend::Sqlite,
                write,
                read,
                sqlite_path: Some(file),
                url,
            }
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let timeout_ms = statement_timeout.as_millis().max(1) as u64;
            let pool = AnyPoolOptions::new()
                .max_connections(max_connections.max(2))
                .acquire_timeout(Duration::from_secs(30))
                .after_connect(move |conn, _meta| {
                    Box::pin(async move {
                        conn.execute(format!("SET statement_timeout = {timeout_ms}").as_str())
                            .await?;
                        conn.execute(
                            format!(
                                "SET idle_in_transaction_session_timeout = {}",
                                timeout_ms * 4
                            )
                            .as_str(),
                        )
                        .await?;
                        Ok(())
                    })
                })
                .connect(url)
                .await
                .context("connecting to PostgreSQL")?;
            Db {
                backend: Backend::Postgres,
                write: pool.clone(),
                read: pool,
                sqlite_path: None,
                url: url.to_string(),
            }
        } else {
            anyhow::bail!("unsupported database URL (expected sqlite://PATH or postgres://...)");
        };
        db.migrate().await?;
        Ok(db)
    }

    async fn migrate(&self) -> anyhow::Result<()> {
        match self.backend {
            Backend::Sqlite => {
                sqlx::migrate!("./migrations/sqlite")
                    .run(&self.write)
                    .await?
            }
            Backend::Postgres => {
                sqlx::migrate!("./migrations/postgres")
                    .run(&self.write)
                    .await?
            }
        }
        Ok(())
    }

    /// Begins a write transaction (`BEGIN IMMEDIATE` on SQLite: take the write lock
    /// up front, so a transaction that reads before it writes cannot fail to upgrade).
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.write.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.write.begin().await,
        }
    }

    /// Runs `work` in a write transaction and commits it when `work` succeeds (rolls
    /// back otherwise). The transaction runs in a task of its own, so a request that
    /// is dropped (a timeout, a client gone) cannot cancel it halfway or hand its
    /// connection back to the pool inside a transaction.
    pub async fn transact<T, E, F>(&self, work: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<sqlx::Error> + Send + 'static,
        F: for<'c> FnOnce(&'c mut sqlx::AnyConnection) -> BoxFuture<'c, Result<T, E>>
            + Send
            + 'static,
    {
        let db = self.clone();
        let task = tokio::spawn(async move {
            let mut tx = db.begin().await?;
            let value = work(&mut tx).await?;
            tx.commit().await?;
            Ok(value)
        });
        match task.await {
            Ok(result) => result,
            Err(e) => Err(E::from(sqlx::Error::Protocol(format!(
                "a write task failed: {e}"
            )))),
        }
    }

    /// The pool for reads outside a transaction.
    pub fn read(&self) -> &AnyPool {
        &self.read
    }

    /// Whether the database answers (for readiness).
    pub async fn ping(&self) -> bool {
        sqlx::query("select 1").execute(&self.read).await.is_ok()
    }

    pub fn is_postgres(&self) -> bool {
        self.backend == Backend::Postgres
    }

    /// A connection of its own, outside the pools (for a holder of session locks).
    pub async fn dedicated_connection(&self) -> Result<sqlx::AnyConnection, sqlx::Error> {
        use sqlx::Connection;
        sqlx::AnyConnection::connect(&self.url).await
    }

    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }
}

/// WAL: readers never block the writer. synchronous=FULL: a commit is on disk before
/// it is acknowledged (money is durable).
async fn sqlite_pragmas(conn: &mut sqlx::AnyConnection) -> Result<(), sqlx::Error> {
    for pragma in [
        "PRAGMA journal_mode = WAL",
        "PRAGMA synchronous = FULL",
        "PRAGMA busy_timeout = 10000",
        "PRAGMA foreign_keys = ON",
    ] {
        conn.execute(pragma).await?;
    }
    Ok(())
}

/// Whether `err` is a unique-constraint violation (mapped to a 409 by the caller).
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(e) if e.is_unique_violation())
}

/// Whether a failed statement or transaction may succeed if simply run again: a
/// deadlock or serialization failure, a lock or statement timeout, a busy SQLite
/// database, a lost connection or an exhausted pool. Decided by the database's error
/// class, never by message text.
pub fn is_transient(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(e) => {
            if let Some(pg) = e.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                let code = pg.code();
                // 40: transaction rollback (serialization, deadlock); 08: connection
                // exception; 53: insufficient resources; 55P03: lock not available;
                // 57014: statement timeout; 57P0x: the server is shutting down.
                code.starts_with("40")
                    || code.starts_with("08")
                    || code.starts_with("53")
                    || code == "55P03"
                    || code.starts_with("57")
            } else if let Some(lite) = e.try_downcast_ref::<sqlx::sqlite::SqliteError>() {
                // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with their extended codes.
                sqlx::error::DatabaseError::code(lite)
                    .and_then(|c| c.parse::<i32>().ok())
                    .is_some_and(|c| matches!(c & 0xff, 5 | 6))
            } else {
                false
            }
        }
        _ => false,
    }
}
