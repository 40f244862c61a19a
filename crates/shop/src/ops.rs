//! Operator commands: `shop migrate` (run the migrations and exit), `shop migrate
//! --status` (list them, change nothing) and `shop backup PATH` (a consistent copy of
//! the embedded database while the server runs). They print to stdout and fail with
//! a non-zero exit and a message on stderr.

use std::path::Path;
use std::time::Duration;

use crate::config::Config;
use crate::db::{self, Db, MigrationStatus};

/// `shop migrate [--status]`.
pub async fn migrate(config: &Config, status_only: bool) -> anyhow::Result<()> {
    let timeout = Duration::from_millis(config.db_statement_timeout_ms.max(1));
    // Listing creates nothing; migrating a database that does not exist yet creates it.
    let db = Db::open(&config.database_url, 2, timeout, !status_only).await?;
    let result = if status_only {
        print_status(&db).await
    } else {
        let before = db.migration_status().await?;
        db.migrate().await?;
        let pending = before
            .iter()
            .filter(|m| m.status == MigrationStatus::Pending)
            .count();
        let latest = before.iter().map(|m| m.version).max().unwrap_or(0);
        println!("applied {pending} migration(s); the database is at version {latest}");
        Ok(())
    };
    db.close().await;
    result
}

async fn print_status(db: &Db) -> anyhow::Result<()> {
    for m in db.migration_status().await? {
        println!(
            "{:04}  {:<8}  {}",
            m.version,
            m.status.as_str(),
            m.description
        );
    }
    Ok(())
}

/// `shop backup PATH`: SQLite only; PostgreSQL is refused before anything connects.
pub async fn backup(config: &Config, target: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(
        !db::is_postgres_url(&config.database_url),
        "shop backup copies the embedded SQLite database; back up PostgreSQL with \
         pg_dump (for example `pg_dump -Fc -f shop.dump \"$SHOP_DATABASE_URL\"`)"
    );
    let timeout = Duration::from_millis(config.db_statement_timeout_ms.max(1));
    let db = Db::open(&config.database_url, 1, timeout, false).await?;
    let result = db.backup_to(target).await;
    db.close().await;
    result?;
    let bytes = std::fs::metadata(target).map(|m| m.len()).unwrap_or(0);
    println!("backed up to {} ({bytes} bytes)", target.display());
    Ok(())
}
