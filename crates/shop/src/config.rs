//! Settings. Every setting is an environment variable and a flag of the same name
//! (`SHOP_LISTEN` / `--listen`), as the contract's "Running" table says.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

#[derive(Debug, Clone, Parser)]
#[command(name = "shop", version, about = "E-commerce backend")]
pub struct Config {
    /// Without a command, `shop` serves the API.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Address to serve on.
    #[arg(long, env = "SHOP_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// `sqlite://PATH` (created if absent) or `postgres://...`.
    #[arg(long, env = "SHOP_DATABASE_URL", default_value = "sqlite://shop.db")]
    pub database_url: String,

    /// Redis for the product and ranking cache and the coupon gate (optional; never
    /// the source of truth).
    #[arg(long, env = "SHOP_REDIS_URL")]
    pub redis_url: Option<String>,

    /// Prefix of every Redis key (to share one Redis between deployments).
    #[arg(long, env = "SHOP_REDIS_PREFIX", default_value = "shop:")]
    pub redis_prefix: String,

    /// How long a product detail may be served from Redis, in milliseconds. Every
    /// change drops the copy at once; this bounds a copy written by a read that raced
    /// a change.
    #[arg(long, env = "SHOP_PRODUCT_CACHE_MS", default_value_t = 1000)]
    pub product_cache_ms: u64,

    /// NATS JetStream for data-platform events (stream `SHOP_EVENTS`, subjects
    /// `shop.events.<type>`). Takes precedence over the webhook.
    #[arg(long, env = "SHOP_NATS_URL")]
    pub nats_url: Option<String>,

    /// Webhook that receives data-platform events. When unset, events are appended as
    /// JSON lines to a file beside the database.
    #[arg(long, env = "SHOP_DATA_PLATFORM_URL")]
    pub data_platform_url: Option<String>,

    /// Where events go when no webhook is set (JSON lines). Default: beside the SQLite
    /// database (`shop.db` → `shop.events.jsonl`), or `shop-events.jsonl` in the
    /// working directory on PostgreSQL.
    #[arg(long, env = "SHOP_EVENTS_FILE")]
    pub events_file: Option<std::path::PathBuf>,

    /// Secret for the webhook's `Shop-Signature` (HMAC-SHA256).
    #[arg(long, env = "SHOP_DATA_PLATFORM_SECRET", hide_env_values = true)]
    pub data_platform_secret: Option<Secret>,

    /// Seed demo users, products and a coupon. Default: true on an empty embedded
    /// database, false otherwise.
    #[arg(long, env = "SHOP_DEMO_DATA")]
    pub demo_data: Option<bool>,

    /// Seconds a PENDING order holds its stock and coupon before it expires.
    #[arg(long, env = "SHOP_ORDER_TTL_SECS", default_value_t = 300)]
    pub order_ttl_secs: u64,

    /// How often the expiry worker looks for due orders, in milliseconds.
    #[arg(long, env = "SHOP_EXPIRY_INTERVAL_MS", default_value_t = 1000)]
    pub expiry_interval_ms: u64,

    /// Largest single charge, in won.
    #[arg(long, env = "SHOP_MAX_CHARGE", default_value_t = 1_000_000)]
    pub max_charge: i64,

    /// Largest balance a user may hold, in won.
    #[arg(long, env = "SHOP_MAX_BALANCE", default_value_t = 100_000_000)]
    pub max_balance: i64,

    /// Most items (lines) in one order.
    #[arg(long, env = "SHOP_MAX_ORDER_ITEMS", default_value_t = 50)]
    pub max_order_items: usize,

    /// Largest quantity of one item.
    #[arg(long, env = "SHOP_MAX_ITEM_QUANTITY", default_value_t = 1000)]
    pub max_item_quantity: i64,

    /// How long `/products/popular` may be served from cache, in seconds (at most 10).
    #[arg(long, env = "SHOP_POPULAR_CACHE_SECS", default_value_t = 5)]
    pub popular_cache_secs: u64,

    /// How often the outbox relay looks for new events, in milliseconds.
    #[arg(long, env = "SHOP_OUTBOX_INTERVAL_MS", default_value_t = 200)]
    pub outbox_interval_ms: u64,

    /// Failed attempts after which an event is parked until an admin retries it.
    #[arg(long, env = "SHOP_OUTBOX_MAX_ATTEMPTS", default_value_t = 25)]
    pub outbox_max_attempts: i64,

    /// Longest wait between two delivery attempts of one event, in milliseconds.
    #[arg(long, env = "SHOP_OUTBOX_MAX_BACKOFF_MS", default_value_t = 300_000)]
    pub outbox_max_backoff_ms: u64,

    /// Fault injection for tests only: exit right after this many publishes.
    #[arg(long, env = "SHOP_FAULT_EXIT_AFTER_PUBLISH", hide = true)]
    pub fault_exit_after_publish: Option<u64>,

    /// Largest request body, in bytes.
    #[arg(long, env = "SHOP_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,

    /// Requests taking longer are answered 503, in seconds.
    #[arg(long, env = "SHOP_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,

    /// Database connections for reads (writes on SQLite use one connection).
    #[arg(long, env = "SHOP_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,

    /// Longest a single SQL statement may run on PostgreSQL, in milliseconds.
    #[arg(long, env = "SHOP_DB_STATEMENT_TIMEOUT_MS", default_value_t = 5000)]
    pub db_statement_timeout_ms: u64,

    /// Group commit: concurrent orders, payments, cancels, charges and coupon issues
    /// share one durable commit per short batch. `false`: one transaction each.
    #[arg(long, env = "SHOP_GROUP_COMMIT", default_value_t = true, action = clap::ArgAction::Set)]
    pub group_commit: bool,

    /// Most jobs in one group commit.
    #[arg(long, env = "SHOP_BATCH_MAX", default_value_t = 128)]
    pub batch_max: usize,

    /// Writer tasks taking batches. Default: 1 on SQLite (one writer); 2 on PostgreSQL,
    /// whose batches take turns through an advisory lock (the whole pool without group
    /// commit, one order per transaction).
    #[arg(long, env = "SHOP_BATCH_WRITERS")]
    pub batch_writers: Option<usize>,

    /// The admin token (`Authorization: Bearer <token>` on `/api/v1/admin/...`). When
    /// unset on the embedded default, one is generated at first start, stored beside
    /// the database and printed once; PostgreSQL deployments must set it.
    #[arg(long, env = "SHOP_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<Secret>,

    /// Key that signs users' tokens. Unset: a random key made once and kept in the
    /// database, shared by every instance.
    #[arg(long, env = "SHOP_TOKEN_SECRET", hide_env_values = true)]
    pub token_secret: Option<Secret>,

    /// Requests per second allowed to one client address (bursts of as many). Unset: off.
    #[arg(long, env = "SHOP_RATE_LIMIT_PER_CLIENT")]
    pub rate_limit_per_client: Option<u32>,

    /// Requests per second allowed to one authenticated user (bursts of as many).
    /// Unset: off.
    #[arg(long, env = "SHOP_RATE_LIMIT_PER_USER")]
    pub rate_limit_per_user: Option<u32>,

    /// Requests served at once; beyond it, requests are answered 503 `OVERLOADED`
    /// (with `Retry-After`) at once instead of queueing without bound.
    #[arg(long, env = "SHOP_MAX_IN_FLIGHT", default_value_t = 10_000)]
    pub max_in_flight: usize,

    /// Log as JSON lines instead of human-readable text.
    #[arg(long, env = "SHOP_LOG_JSON", default_value_t = false)]
    pub log_json: bool,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Run the reference data-platform consumer: read SHOP_EVENTS from JetStream and
    /// write each event once into its own table.
    ConsumeEvents(crate::consumer::ConsumerConfig),
}

impl Config {
    /// The defaults, as if no flag or variable were set (for tests and tools).
    pub fn defaults() -> Self {
        Config::parse_from(["shop"])
    }

    pub fn order_ttl(&self) -> Duration {
        Duration::from_secs(self.order_ttl_secs)
    }

    pub fn order_rules(&self) -> crate::order::OrderRules {
        crate::order::OrderRules {
            max_items: self.max_order_items,
            max_quantity: self.max_item_quantity,
            ttl: chrono::TimeDelta::from_std(self.order_ttl())
                .unwrap_or(chrono::TimeDelta::minutes(5)),
        }
    }

    pub fn popular_cache_ttl(&self) -> Duration {
        Duration::from_secs(self.popular_cache_secs.min(10))
    }
}

/// A secret setting: its `Debug` never shows the value, so it cannot reach a log.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}
