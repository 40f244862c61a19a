//! Where events go: NATS JetStream, a webhook (signed) or, by default, a JSON-lines
//! file beside the database. A closed set, so an enum.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::AsyncWriteExt;

use super::store::Pending;

/// The JetStream stream events are published to.
pub const STREAM: &str = "SHOP_EVENTS";

pub enum Sink {
    Nats(JetStream),
    Webhook(Webhook),
    File(JsonLines),
}

/// Published on `shop.events.<type>` with `Nats-Msg-Id: <event id>` (the stream drops
/// re-sends within its duplicate window); delivered once the stream acked.
pub struct JetStream {
    jetstream: async_nats::jetstream::Context,
    stream_ready: bool,
    /// `nats://host:port`, for messages.
    target: String,
}

/// `POST` of the document, signed when a secret is set.
pub struct Webhook {
    client: reqwest::Client,
    url: String,
    secret: Option<String>,
}

/// Appended as JSON lines to a file.
pub struct JsonLines {
    path: PathBuf,
    file: Option<tokio::fs::File>,
}

impl Sink {
    pub fn webhook(url: String, secret: Option<String>) -> anyhow::Result<Sink> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Sink::Webhook(Webhook {
            client,
            url,
            secret,
        }))
    }

    /// Connects in the background: the server starts (and takes payments) whether
    /// or not NATS is up; events wait in the outbox until it is. A first attempt,
    /// bounded by a few seconds, tells at once (a warning naming the server and the
    /// cause) when it is not.
    pub async fn nats(url: &str) -> anyhow::Result<Sink> {
        let target = redact(url);
        let first = tokio::time::timeout(
            Duration::from_secs(4),
            async_nats::ConnectOptions::new()
                .connection_timeout(Duration::from_secs(2))
                .connect(url),
        )
        .await;
        match first {
            Ok(Ok(client)) => drop(client),
            Ok(Err(e)) => tracing::warn!(
                nats = %target,
                error = %e,
                "NATS is not reachable; events wait in the outbox until it is"
            ),
            Err(_) => tracing::warn!(
                nats = %target,
                "NATS did not answer within 4 s; events wait in the outbox until it does"
            ),
        }
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(2))
            .connect(url)
            .await
            .with_context(|| format!("NATS at {target}"))?;
        Ok(Sink::Nats(JetStream {
            jetstream: async_nats::jetstream::new(client),
            stream_ready: false,
            target,
        }))
    }

    pub fn file(path: PathBuf) -> Sink {
        Sink::File(JsonLines { path, file: None })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Sink::Nats(_) => "nats",
            Sink::Webhook(_) => "webhook",
            Sink::File(_) => "file",
        }
    }

    /// Where events go, for logs: the NATS server or webhook without credentials,
    /// or the file's path.
    pub fn target(&self) -> String {
        match self {
            Sink::Nats(n) => n.target.clone(),
            Sink::Webhook(w) => redact(&w.url),
            Sink::File(f) => f.path.display().to_string(),
        }
    }

    /// Sends a batch of events of different orders; one result per event. To NATS
    /// they are all published before the acknowledgements are awaited; the file's
    /// lines are durable only after [`Sink::flush`].
    pub async fn send_batch(
        &mut self,
        events: &[&Pending],
        now_unix: i64,
    ) -> Vec<anyhow::Result<()>> {
        let mut results = Vec::with_capacity(events.len());
        match self {
            Sink::Nats(nats) => return nats.publish(events).await,
            Sink::Webhook(webhook) => {
                for ev in events {
                    results.push(webhook.post(ev, now_unix).await);
                }
            }
            Sink::File(file) => {
                for ev in events {
                    results.push(file.append(ev).await);
                }
            }
        }
        results
    }

    /// Makes what was sent durable (before rows are marked delivered).
    pub async fn flush(&mut self) -> anyhow::Result<()> {
        if let Sink::File(JsonLines { file: Some(f), .. }) = self {
            f.flush().await?;
            f.sync_data().await?;
        }
        Ok(())
    }
}

impl JetStream {
    async fn publish(&mut self, events: &[&Pending]) -> Vec<anyhow::Result<()>> {
        if !self.stream_ready {
            if let Err(e) = ensure_stream(&self.jetstream).await {
                return events
                    .iter()
                    .map(|_| Err(anyhow::anyhow!("JetStream: {e}")))
                    .collect();
            }
            self.stream_ready = true;
        }
        let mut pending = Vec::with_capacity(events.len());
        for ev in events {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", ev.id.as_str());
            let publish = self
                .jetstream
                .publish_with_headers(
                    format!("shop.events.{}", ev.event_type),
                    headers,
                    ev.payload.clone().into(),
                )
                .await;
            pending.push(publish);
        }
        let mut results = Vec::with_capacity(events.len());
        for publish in pending {
            let result: anyhow::Result<()> = async {
                let ack = publish?;
                tokio::time::timeout(Duration::from_secs(5), ack).await??;
                Ok(())
            }
            .await;
            if result.is_err() {
                // The stream may have been deleted: make sure of it next time.
                self.stream_ready = false;
            }
            results.push(result.map_err(|e| anyhow::anyhow!("JetStream did not acknowledge: {e}")));
        }
        results
    }
}

impl Webhook {
    async fn post(&self, ev: &Pending, now_unix: i64) -> anyhow::Result<()> {
        let mut req = self
            .client
            .post(self.url.as_str())
            .header("content-type", "application/json")
            .header("Shop-Event-Id", ev.id.as_str())
            .header("Shop-Timestamp", now_unix.to_string());
        if let Some(secret) = &self.secret {
            req = req.header("Shop-Signature", signature(secret, now_unix, &ev.payload));
        }
        let res = req.body(ev.payload.clone()).send().await?;
        anyhow::ensure!(
            res.status().is_success(),
            "receiver answered {}",
            res.status()
        );
        Ok(())
    }
}

impl JsonLines {
    async fn append(&mut self, ev: &Pending) -> anyhow::Result<()> {
        if self.file.is_none() {
            let mut options = tokio::fs::OpenOptions::new();
            options.create(true).append(true);
            // Events carry orders: readable by the server's user only.
            #[cfg(unix)]
            options.mode(0o600);
            let file = options
                .open(&self.path)
                .await
                .with_context(|| format!("opening the events file {}", self.path.display()))?;
            self.file = Some(file);
        }
        let f = self.file.as_mut().expect("opened above");
        let mut line = Vec::with_capacity(ev.payload.len() + 1);
        line.extend_from_slice(ev.payload.as_bytes());
        line.push(b'\n');
        if let Err(e) = f.write_all(&line).await {
            // Open it again next time (it may have been moved or its disk replaced).
            self.file = None;
            return Err(e)
                .with_context(|| format!("writing the events file {}", self.path.display()));
        }
        Ok(())
    }
}

/// What readiness knows of the sink: its kind, and whether it is taking events. The
/// relay reports each delivery attempt; for NATS the client's connection state
/// counts too (a broken connection is down before any event waits).
#[derive(Clone, Default)]
pub struct SinkHealth(Arc<RwLock<Option<Watched>>>);

struct Watched {
    kind: &'static str,
    nats: Option<async_nats::Client>,
    /// The last delivery attempt failed for every event it tried.
    failing: bool,
}

/// The sink's state for readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkReport {
    /// `nats`, `webhook` or `file`; `None` before the relay started.
    pub kind: Option<&'static str>,
    pub up: bool,
}

impl SinkHealth {
    /// Starts watching `sink` (when the relay starts).
    pub fn watch(&self, sink: &Sink) {
        let nats = match sink {
            Sink::Nats(n) => Some(n.jetstream.client()),
            _ => None,
        };
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Some(Watched {
            kind: sink.name(),
            nats,
            failing: false,
        });
    }

    /// The outcome of a delivery attempt: whether anything went through (or nothing
    /// failed).
    pub fn record(&self, ok: bool) {
        if let Some(w) = self.0.write().unwrap_or_else(|e| e.into_inner()).as_mut() {
            w.failing = !ok;
        }
    }

    pub fn report(&self) -> SinkReport {
        let guard = self.0.read().unwrap_or_else(|e| e.into_inner());
        match guard.as_ref() {
            None => SinkReport {
                kind: None,
                up: true,
            },
            Some(w) => {
                let connected = w.nats.as_ref().is_none_or(|c| {
                    c.connection_state() == async_nats::connection::State::Connected
                });
                SinkReport {
                    kind: Some(w.kind),
                    up: connected && !w.failing,
                }
            }
        }
    }
}

/// `scheme://host:port/path` of `url` without user, password or query (which may
/// hold credentials); the URL as given when it does not parse.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) if u.has_host() => {
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!(
                "{}://{}{port}{}",
                u.scheme(),
                u.host_str().unwrap_or_default(),
                u.path().trim_end_matches('/')
            )
        }
        _ => url.split('@').next_back().unwrap_or(url).to_string(),
    }
}

/// Creates the stream if absent (subjects `shop.events.>`, file storage).
pub async fn ensure_stream(jetstream: &async_nats::jetstream::Context) -> anyhow::Result<()> {
    jetstream
        .get_or_create_stream(async_nats::jetstream::stream::Config {
            name: STREAM.to_string(),
            subjects: vec!["shop.events.>".to_string()],
            storage: async_nats::jetstream::stream::StorageType::File,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await?;
    Ok(())
}

/// `v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`.
pub fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacted_urls_keep_where_and_drop_who() {
        assert_eq!(
            super::redact("nats://user:pw@127.0.0.1:4222"),
            "nats://127.0.0.1:4222"
        );
        assert_eq!(
            super::redact("https://hook.example/in?token=abc"),
            "https://hook.example/in"
        );
        assert_eq!(super::redact("user:pw@10.0.0.1:4222"), "10.0.0.1:4222");
    }

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Computed independently with Python's hmac module.
        assert_eq!(
            super::signature("whsec", 1_700_000_000, r#"{"a":1}"#),
            "v1=8ad37ba156048ae0e0a5533c75cdf26fee88b07f93cb57ee4c80adb053012032"
        );
    }
}
