//! `shop`: config -> telemetry -> build app -> serve + background workers.

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use shop::app::{self, AppState};
use shop::clock::SystemClock;
use shop::config::Config;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    shop::telemetry::init_logs(config.log_json);
    if let Some(shop::config::Command::ConsumeEvents(consumer)) = &config.command {
        let shutdown = CancellationToken::new();
        let signal = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            signal.cancel();
        });
        tracing::info!(nats = %consumer.nats_url, db = %consumer.database_url, "consuming events");
        return shop::consumer::run(consumer, shutdown).await;
    }
    let listen = config.listen;
    let state = AppState::new(config, Arc::new(SystemClock)).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    tracing::info!(
        "shop listening on http://{} (Swagger UI at /docs, database {:?})",
        listener.local_addr()?,
        state.db.backend
    );

    let shutdown = CancellationToken::new();
    let workers = app::spawn_workers(&state, shutdown.clone()).await?;
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
