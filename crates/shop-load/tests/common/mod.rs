//! A real shop server in this process, on a temporary SQLite database.

use std::sync::Arc;

use shop::app::{self, AppState};
use shop::clock::SystemClock;
use shop::config::Config;
use tokio_util::sync::CancellationToken;

pub struct Server {
    pub url: String,
    pub database_url: String,
    pub shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

/// Starts a server (no demo data) after `tweak` has changed its configuration.
pub async fn start(tweak: impl FnOnce(&mut Config)) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}", dir.path().join("shop.db").display());
    let mut config = Config::defaults();
    config.database_url = database_url.clone();
    config.demo_data = Some(false);
    config.events_file = Some(dir.path().join("shop.events.jsonl"));
    config.listen = "127.0.0.1:0".parse().unwrap();
    tweak(&mut config);
    let state = AppState::new(config, Arc::new(SystemClock)).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    app::spawn_workers(&state, shutdown.clone()).await.unwrap();
    tokio::spawn(app::serve(listener, state, shutdown.clone()));
    Server {
        url: format!("http://{addr}"),
        database_url,
        shutdown,
        _dir: dir,
    }
}
