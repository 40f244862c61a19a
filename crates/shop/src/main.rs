//! `shop`: config -> telemetry -> check settings -> bind -> build app -> serve +
//! background workers. Or an operator command (`migrate`, `backup`,
//! `consume-events`).
//!
//! Start-up fails fast and says why: settings are checked and the port is bound before
//! anything touches the database, so a taken port or a bad setting creates nothing.

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use shop::app::{self, AppState};
use shop::clock::SystemClock;
use shop::config::{Command, Config};
use shop::outbox::sink::redact;
use tokio_util::sync::CancellationToken;

fn main() -> anyhow::Result<()> {
    // Before any thread or file exists: everything the server creates (the SQLite
    // database and its -wal/-shm, the events file, the admin token, backups) is
    // readable by its owner only.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let config = Config::parse();
    let traces = shop::telemetry::init_logs(config.log_json, config.otlp_endpoint.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(run(config));
    if let Err(e) = &result {
        tracing::error!(error = format!("{e:#}"), "shop stopped");
    }
    drop(runtime);
    if let Some(traces) = traces {
        traces.shutdown();
    }
    result
}

async fn run(mut config: Config) -> anyhow::Result<()> {
    match config.command.take() {
        Some(Command::ConsumeEvents(consumer)) => {
            let shutdown = CancellationToken::new();
            let signal = shutdown.clone();
            tokio::spawn(async move {
                wait_for_signal().await;
                signal.cancel();
            });
            tracing::info!(nats = %redact(&consumer.nats_url), "consuming events");
            return shop::consumer::run(&consumer, shutdown).await;
        }
        Some(Command::Migrate { status }) => return shop::ops::migrate(&config, status).await,
        Some(Command::Backup { path }) => return shop::ops::backup(&config, &path).await,
        None => {}
    }
    config.validate()?;
    config.max_connections = fit_to_file_limit(config.max_connections, raise_open_file_limit());
    let listener = tokio::net::TcpListener::bind(config.listen.as_str())
        .await
        .with_context(|| format!("could not listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let events = match (&config.nats_url, &config.data_platform_url) {
        (Some(nats), _) => format!("nats {}", redact(nats)),
        (None, Some(webhook)) => format!("webhook {}", redact(webhook)),
        (None, None) => String::new(),
    };
    let state = AppState::new(config, Arc::new(SystemClock)).await?;
    let events = if events.is_empty() {
        format!("file {}", app::events_file(&state).display())
    } else {
        events
    };
    let shutdown = CancellationToken::new();
    let workers = app::spawn_workers(&state, shutdown.clone()).await?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        backend = state.db.backend.name(),
        redis = %state.cache.address(),
        events = %events,
        listen = %addr,
        max_connections = state.config.max_connections,
        "shop listening on http://{addr} (Swagger UI at /docs)"
    );
    let signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: finishing in-flight requests");
        signal.cancel();
    });
    app::serve(listener, state.clone(), shutdown).await?;
    for w in workers {
        let _ = w.await;
    }
    state.db.close().await;
    Ok(())
}

/// Raises the soft limit on open files to the hard limit (every connection is an open
/// file). Returns the soft limit in force after, `None` when unlimited.
fn raise_open_file_limit() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current == limit.maximum {
        return limit.current;
    }
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => limit.maximum,
        Err(e) => {
            tracing::warn!(error = %e, soft = ?limit.current, hard = ?limit.maximum,
                "could not raise the open-file limit");
            limit.current
        }
    }
}

/// Files kept aside for the database, logs, the events file and the like.
const SPARE_FILES: u64 = 256;

/// `max_connections`, lowered (with a warning) so that connections cannot exhaust the
/// open-file limit.
fn fit_to_file_limit(max_connections: usize, open_files: Option<u64>) -> usize {
    let Some(open_files) = open_files else {
        return max_connections;
    };
    let room = open_files.saturating_sub(SPARE_FILES).max(1);
    if max_connections as u64 <= room {
        return max_connections;
    }
    tracing::warn!(
        open_file_limit = open_files,
        "SHOP_MAX_CONNECTIONS ({max_connections}) is more than the open-file limit allows; \
         serving at most {room} connections at once"
    );
    room as usize
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
