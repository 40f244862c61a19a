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

impl Backend {
    /// A query answering one text: the rows `inner` selects, `columns` of each as a
    /// JSON array, all in one JSON array in `inner`'s order (`[]` for none). One
    /// round trip for any number of rows.
    pub fn rows_as_json(self, columns: &str, inner: &str) -> String {
        match self {
            Backend::Sqlite => {
                format!("select json_group_array(json_array({columns})) from ({inner}) as t")
            }
            Backend::Postgres => format!(
                "select cast(coalesce(json_agg(json_build_array({columns})), '[]') as text) \
                 from ({inner}) as t"
            ),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// The embedded database file named by a `sqlite://PATH` (or `sqlite:PATH`) URL.
pub fn sqlite_file(url: &str) -> Option<PathBuf> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    Some(PathBuf::from(path.split('?').next().unwrap_or(path)))
}

/// Whether `url` names a PostgreSQL database.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// `host:port` of a PostgreSQL URL, for messages (never the user or password).
pub fn postgres_target(url: &str) -> String {
    match sqlx::postgres::PgConnectOptions::from_str(url) {
        Ok(opts) => format!("{}:{}", opts.get_host(), opts.get_port()),
        Err(_) => "an unparsable PostgreSQL URL".to_string(),
    }
}

/// How long the first connection to PostgreSQL may take before start-up gives up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections of one pool, sampled.
#[derive(Debug, Clone, Copy)]
pub struct PoolStats {
    pub in_use: u32,
    pub idle: u32,
    pub max: u32,
}

/// One migration of this build (or of the database) and whether it is applied.
#[derive(Debug, Clone)]
pub struct MigrationState {
    pub version: i64,
    pub description: String,
    pub status: MigrationStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationStatus {
    Applied,
    Pending,
    /// Applied, but this build's file differs from what was applied.
    Changed,
    /// Applied by a build that knows a migration this one does not.
    Unknown,
}

impl MigrationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MigrationStatus::Applied => "applied",
            MigrationStatus::Pending => "pending",
            MigrationStatus::Changed => "applied, but this build's file differs",
            MigrationStatus::Unknown => "applied, unknown to this build",
        }
    }
}

fn migrator(backend: Backend) -> sqlx::migrate::Migrator {
    match backend {
        Backend::Sqlite => sqlx::migrate!("./migrations/sqlite"),
        Backend::Postgres => sqlx::migrate!("./migrations/postgres"),
    }
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
        let db = Db::open(url, max_connections, statement_timeout, true).await?;
        db.migrate().await?;
        Ok(db)
    }

    /// Connects to `url` without running migrations. An embedded database file is
    /// created (mode 0600) only when `create`; otherwise a missing one is an error.
    /// A PostgreSQL server that does not answer within [`CONNECT_TIMEOUT`] is an
    /// error naming its `host:port` and the cause.
    pub async fn open(
        url: &str,
        max_connections: u32,
        statement_timeout: Duration,
        create: bool,
    ) -> anyhow::Result<Db> {
        sqlx::any::install_default_drivers();
        let db = if let Some(file) = sqlite_file(url) {
            let in_memory = file.as_os_str() == ":memory:";
            if create && !in_memory {
                create_private_file(&file)?;
            } else if !create && !in_memory && !file.exists() {
                anyhow::bail!("there is no database at {}", file.display());
            }
            let path = file.display().to_string();
            let mode = if create { "rwc" } else { "rw" };
            let url = format!("sqlite://{path}?mode={mode}");
            let opts = AnyConnectOptions::from_str(&url)?;
            let write = AnyPoolOptions::new()
                // A broken connection shows on use (and a batch runs again); a ping
                // before every use would double each request's round trips.
                .test_before_acquire(false)
                .max_connections(1)
                .acquire_timeout(Duration::from_secs(30))
                .after_connect(|conn, _meta| Box::pin(sqlite_pragmas(conn)))
                .connect_with(opts.clone())
                .await
                .with_context(|| format!("opening the database {path}"))?;
            let read = AnyPoolOptions::new()
                // A broken connection shows on use (and a batch runs again); a ping
                // before every use would double each request's round trips.
                .test_before_acquire(false)
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
        } else if is_postgres_url(url) {
            first_postgres_connection(url).await?;
            let timeout_ms = statement_timeout.as_millis().max(1) as u64;
            let (writes, reads) = pool_sizes(max_connections);
            let write = AnyPoolOptions::new()
                // A broken connection shows on use (and a batch runs again); a ping
                // before every use would double each request's round trips.
                .test_before_acquire(false)
                .max_connections(writes)
                .acquire_timeout(Duration::from_secs(30))
                .after_connect(move |conn, _meta| postgres_session(conn, timeout_ms, true))
                .connect(url)
                .await
                .with_context(|| format!("connecting to PostgreSQL at {}", postgres_target(url)))?;
            let read = AnyPoolOptions::new()
                .test_before_acquire(false)
                .max_connections(reads)
                .acquire_timeout(Duration::from_secs(30))
                .after_connect(move |conn, _meta| postgres_session(conn, timeout_ms, false))
                .connect(url)
                .await
                .with_context(|| format!("connecting to PostgreSQL at {}", postgres_target(url)))?;
            Db {
                backend: Backend::Postgres,
                write,
                read,
                sqlite_path: None,
                url: url.to_string(),
            }
        } else {
            anyhow::bail!("unsupported database URL (expected sqlite://PATH or postgres://...)");
        };
        Ok(db)
    }

    /// Runs the migrations this build has and the database lacks (on PostgreSQL on a
    /// connection with the planner's defaults).
    pub async fn migrate(&self) -> anyhow::Result<()> {
        let pool = match self.backend {
            Backend::Sqlite => &self.write,
            Backend::Postgres => &self.read,
        };
        migrator(self.backend)
            .run(pool)
            .await
            .context("running the database migrations")?;
        Ok(())
    }

    /// Each migration of this build (and any the database has that this build does
    /// not know), and whether it is applied. Changes nothing.
    pub async fn migration_status(&self) -> anyhow::Result<Vec<MigrationState>> {
        let has_table = match self.backend {
            Backend::Sqlite => {
                "select count(*) from sqlite_master where type = 'table' and name = '_sqlx_migrations'"
            }
            Backend::Postgres => {
                "select count(*) from information_schema.tables \
                 where table_name = '_sqlx_migrations' and table_schema = current_schema()"
            }
        };
        let (tables,): (i64,) = sqlx::query_as(has_table).fetch_one(&self.read).await?;
        let applied: Vec<(i64, Vec<u8>, String)> = if tables > 0 {
            sqlx::query_as(
                "select version, checksum, description from _sqlx_migrations \
                 where success order by version",
            )
            .fetch_all(&self.read)
            .await?
        } else {
            Vec::new()
        };
        let migrator = migrator(self.backend);
        let mut states: Vec<MigrationState> = migrator
            .iter()
            .filter(|m| !m.migration_type.is_down_migration())
            .map(|m| {
                let status = match applied.iter().find(|(v, _, _)| *v == m.version) {
                    None => MigrationStatus::Pending,
                    Some((_, checksum, _)) if checksum[..] == m.checksum[..] => {
                        MigrationStatus::Applied
                    }
                    Some(_) => MigrationStatus::Changed,
                };
                MigrationState {
                    version: m.version,
                    description: m.description.to_string(),
                    status,
                }
            })
            .collect();
        for (version, _, description) in &applied {
            if !states.iter().any(|s| s.version == *version) {
                states.push(MigrationState {
                    version: *version,
                    description: description.clone(),
                    status: MigrationStatus::Unknown,
                });
            }
        }
        states.sort_by_key(|s| s.version);
        Ok(states)
    }

    /// A consistent copy of the embedded database at `target` (which must not exist),
    /// taken while the server may be writing: `VACUUM INTO` reads one snapshot, and
    /// WAL lets it run beside the writer. Written beside `target` and renamed into
    /// place, so a copy that exists is whole.
    pub async fn backup_to(&self, target: &std::path::Path) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.backend == Backend::Sqlite,
            "backup copies the embedded SQLite database; back up PostgreSQL with pg_dump \
             (for example `pg_dump -Fc -f shop.dump \"$SHOP_DATABASE_URL\"`)"
        );
        anyhow::ensure!(
            !target.exists(),
            "{} exists already; choose a new path",
            target.display()
        );
        let mut partial = target.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        let _ = std::fs::remove_file(&partial);
        let path = partial
            .to_str()
            .ok_or_else(|| anyhow::anyhow!("the backup path must be UTF-8"))?;
        sqlx::query("VACUUM INTO $1")
            .bind(path)
            .execute(&self.read)
            .await
            .with_context(|| format!("copying the database into {}", partial.display()))?;
        std::fs::rename(&partial, target)
            .with_context(|| format!("renaming {} to {}", partial.display(), target.display()))?;
        Ok(())
    }

    /// Connections of each pool (`write` and `read` on SQLite; one `main` pool on
    /// PostgreSQL), sampled now.
    pub fn pool_stats(&self) -> Vec<(&'static str, PoolStats)> {
        let stats = |pool: &AnyPool| {
            let size = pool.size();
            let idle = u32::try_from(pool.num_idle()).unwrap_or(u32::MAX).min(size);
            PoolStats {
                in_use: size - idle,
                idle,
                max: pool.options().get_max_connections(),
            }
        };
        match self.backend {
            Backend::Sqlite => vec![("write", stats(&self.write)), ("read", stats(&self.read))],
            Backend::Postgres => vec![("main", stats(&self.write))],
        }
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

    /// A connection of the write pool (the one on SQLite), for the writer to hold.
    pub async fn write_connection(&self) -> Result<sqlx::pool::PoolConnection<Any>, sqlx::Error> {
        self.write.acquire().await
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

/// Creates the database file, readable by its owner only, unless it exists (SQLite
/// gives its `-wal` and `-shm` files the same mode).
fn create_private_file(file: &std::path::Path) -> anyhow::Result<()> {
    if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(file) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(anyhow::anyhow!(
            "creating the database {}: {e}",
            file.display()
        )),
    }
}

/// One connection before the pool is built, bounded by [`CONNECT_TIMEOUT`], so an
/// unreachable server is reported at once with its address and the cause (a pool
/// would retry in silence until its acquire timeout, then say only "timed out").
async fn first_postgres_connection(url: &str) -> anyhow::Result<()> {
    use sqlx::Connection;
    let target = postgres_target(url);
    match tokio::time::timeout(CONNECT_TIMEOUT, sqlx::AnyConnection::connect(url)).await {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            Ok(())
        }
        Ok(Err(e)) => Err(anyhow::anyhow!(
            "could not connect to PostgreSQL at {target}: {e}"
        )),
        Err(_) => Err(anyhow::anyhow!(
            "could not connect to PostgreSQL at {target}: no answer within {} s",
            CONNECT_TIMEOUT.as_secs()
        )),
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
/// A value read from the database that the code cannot decode (an unknown status, a
/// malformed JSON column): a logged 500, never a silent default.
pub fn corrupt(what: &str, e: impl std::fmt::Display) -> sqlx::Error {
    sqlx::Error::Decode(format!("{what} in the database: {e}").into())
}

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

/// Settings of every PostgreSQL connection: statements are bounded (a stuck query cannot
/// hold a row lock forever), an idle transaction by four times that. On the writers'
/// connections (`writes`) the planner looks rows up by key: their statements take lists
/// as one JSON parameter, whose length it cannot see, and would otherwise hash-join
/// them with whole tables.
fn postgres_session(
    conn: &mut sqlx::AnyConnection,
    timeout_ms: u64,
    writes: bool,
) -> BoxFuture<'_, Result<(), sqlx::Error>> {
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
        if writes {
            for off in ["enable_seqscan", "enable_hashjoin", "enable_mergejoin"] {
                conn.execute(format!("SET {off} = off").as_str()).await?;
            }
        }
        Ok(())
    })
}

/// How the `max` PostgreSQL connections of an instance are shared: (writers', readers').
/// The writers hold theirs while they have work; one writer per write connection.
pub fn pool_sizes(max: u32) -> (u32, u32) {
    let writes = (max / 4).clamp(2, 8);
    (writes, max.saturating_sub(writes).max(2))
}

/// Whether `err` says the connection itself failed (it should not be used again).
pub fn is_connection_error(err: &sqlx::Error) -> bool {
    matches!(
        err,
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed
    )
}
