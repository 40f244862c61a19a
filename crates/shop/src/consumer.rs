//! The reference consumer (`shop consume-events`): how a data platform receives each
//! event exactly once in effect. A durable JetStream pull consumer reads
//! `SHOP_EVENTS`; each event is written into the consumer's own table keyed by event
//! id (`insert ... on conflict do nothing`) and only then acknowledged. A crash
//! between the write and the ack makes JetStream deliver the event again, and the
//! key makes the second write a no-op: at-least-once delivery, exactly-once effect.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};
use tokio_util::sync::CancellationToken;

use crate::outbox::sink::{STREAM, ensure_stream};

#[derive(Debug, Clone, clap::Args)]
pub struct ConsumerConfig {
    /// NATS with JetStream to read events from.
    #[arg(long, env = "SHOP_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// The consumer's own database (`sqlite://PATH` or `postgres://...`).
    #[arg(
        long,
        env = "SHOP_CONSUMER_DATABASE_URL",
        default_value = "sqlite://consumer.db"
    )]
    pub database_url: String,
    /// The durable consumer's name: its progress is kept by JetStream under it.
    #[arg(long, env = "SHOP_CONSUMER_NAME", default_value = "data-platform")]
    pub name: String,
}

/// Opens the consumer's database and creates its table.
pub async fn open_store(url: &str) -> anyhow::Result<AnyPool> {
    sqlx::any::install_default_drivers();
    let url = match url.strip_prefix("sqlite://") {
        Some(path) if !path.contains('?') => format!("sqlite://{path}?mode=rwc"),
        _ => url.to_string(),
    };
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .connect_with(AnyConnectOptions::from_str(&url)?)
        .await
        .with_context(|| format!("opening {url}"))?;
    pool.execute(
        "create table if not exists received_events (
            event_id text primary key,
            event_type text not null,
            order_id bigint not null,
            stream_seq bigint not null,
            payload text not null,
            received_at bigint not null
        )",
    )
    .await?;
    Ok(pool)
}

/// Runs until `shutdown`, reconnecting after NATS outages.
pub async fn run(config: &ConsumerConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let store = open_store(&config.database_url).await?;
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(config.nats_url.as_str())
        .await?;
    let jetstream = async_nats::jetstream::new(client);
    loop {
        let result = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = consume(&jetstream, &config.name, &store) => r,
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "consumer interrupted; starting again");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

async fn consume(
    jetstream: &async_nats::jetstream::Context,
    name: &str,
    store: &AnyPool,
) -> anyhow::Result<()> {
    use async_nats::jetstream::consumer::{AckPolicy, pull};
    ensure_stream(jetstream).await?;
    let stream = jetstream.get_stream(STREAM).await?;
    let consumer: async_nats::jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(
            name,
            pull::Config {
                durable_name: Some(name.to_string()),
                ack_policy: AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                ..Default::default()
            },
        )
        .await?;
    loop {
        // A batch at a time: one transaction (one fsync) for the whole batch, then the
        // acks. A crash in between re-delivers the batch; the key drops the repeats.
        let mut batch = consumer
            .fetch()
            .max_messages(500)
            .expires(Duration::from_millis(500))
            .messages()
            .await?;
        let mut messages = Vec::new();
        while let Some(message) = batch.next().await {
            messages.push(message.map_err(|e| anyhow::anyhow!("{e}"))?);
        }
        if messages.is_empty() {
            continue;
        }
        let mut tx = store.begin().await?;
        for message in &messages {
            let seq = message
                .info()
                .map(|i| i.stream_sequence)
                .unwrap_or_default();
            let event: serde_json::Value = match serde_json::from_slice(&message.payload) {
                Ok(v) => v,
                Err(e) => {
                    // Not ours to fix: acknowledged below so it cannot block the consumer.
                    tracing::error!(error = %e, seq, "undecodable event; skipped");
                    continue;
                }
            };
            let id = event["id"].as_str().unwrap_or_default();
            let inserted = sqlx::query(
                "insert into received_events (event_id, event_type, order_id, stream_seq, payload, received_at)
                 values ($1, $2, $3, $4, $5, $6) on conflict (event_id) do nothing",
            )
            .bind(id)
            .bind(event["type"].as_str().unwrap_or_default())
            .bind(event["data"]["id"].as_i64().unwrap_or_default())
            .bind(seq as i64)
            .bind(String::from_utf8_lossy(&message.payload).into_owned())
            .bind(chrono::Utc::now().timestamp_millis())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 0 {
                tracing::info!(event = id, "duplicate event dropped");
            }
        }
        tx.commit().await?;
        for message in &messages {
            message.ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
        }
    }
}
