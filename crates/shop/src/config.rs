//! Settings. Every setting is an environment variable and a flag of the same name
//! (`SHOP_LISTEN` / `--listen`), as the contract's "Running" table says.

use std::time::Duration;

use clap::Parser;
use clap::builder::BoolishValueParser;

#[derive(Debug, Clone, Parser)]
#[command(name = "shop", version, about = "E-commerce backend")]
pub struct Config {
    /// Without a command, `shop` serves the API.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Address to serve on: `host:port` (a name such as `localhost` is resolved).
    #[arg(long, env = "SHOP_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,

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
    #[arg(long, env = "SHOP_DEMO_DATA", value_parser = BoolishValueParser::new())]
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

    /// Most won one user may charge in one calendar day (of `SHOP_TIMEZONE`).
    #[arg(long, env = "SHOP_MAX_DAILY_CHARGE", default_value_t = 5_000_000)]
    pub max_daily_charge: i64,

    /// The time zone whose calendar days the daily charge limit counts.
    #[arg(long, env = "SHOP_TIMEZONE", default_value = "Asia/Seoul")]
    pub timezone: chrono_tz::Tz,

    /// How long a session's access token works, in seconds (15 minutes by default).
    #[arg(long, env = "SHOP_ACCESS_TOKEN_SECS", default_value_t = 900)]
    pub access_token_secs: u64,

    /// How long a session's refresh token works, in seconds (30 days by default). Each
    /// refresh hands out a new one with a new lifetime; each works once.
    #[arg(long, env = "SHOP_REFRESH_TOKEN_SECS", default_value_t = 30 * 24 * 3600)]
    pub refresh_token_secs: u64,

    /// Login attempts per email per minute on one instance; beyond them
    /// `POST /api/v1/sessions` answers 429 `RATE_LIMITED` with `Retry-After`.
    #[arg(long, env = "SHOP_LOGIN_ATTEMPTS_PER_MINUTE", default_value_t = 5)]
    pub login_attempts_per_minute: u32,

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

    /// Requests taking longer are answered 503 `TIMEOUT`, in seconds (nothing was
    /// done). A request whose write was already handed over for commit waits for its
    /// outcome instead, up to `SHOP_WRITE_TIMEOUT_SECS`.
    #[arg(long, env = "SHOP_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,

    /// How long a request whose write was handed over for commit waits for its
    /// outcome, in seconds from its start; past it, 504 `OUTCOME_UNKNOWN` (the write
    /// still commits or not, and a retry with the same Idempotency-Key tells which).
    #[arg(long, env = "SHOP_WRITE_TIMEOUT_SECS", default_value_t = 60)]
    pub write_timeout_secs: u64,

    /// Database connections for reads (writes on SQLite use one connection).
    #[arg(long, env = "SHOP_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,

    /// Longest a single SQL statement may run on PostgreSQL, in milliseconds.
    #[arg(long, env = "SHOP_DB_STATEMENT_TIMEOUT_MS", default_value_t = 5000)]
    pub db_statement_timeout_ms: u64,

    /// Group commit: concurrent orders, payments, cancels, charges and coupon issues
    /// share one durable commit per short batch. `false`: one transaction each.
    #[arg(long, env = "SHOP_GROUP_COMMIT", default_value_t = true, action = clap::ArgAction::Set,
        value_parser = BoolishValueParser::new(), num_args = 0..=1, default_missing_value = "true")]
    pub group_commit: bool,

    /// Most jobs in one group commit.
    #[arg(long, env = "SHOP_BATCH_MAX", default_value_t = 128)]
    pub batch_max: usize,

    /// Writer tasks taking batches, each with a queue and a connection of its own; a
    /// job goes to the writer of the row it contends for most (its product, coupon,
    /// user or order). Default: 1 on SQLite (one writer); on PostgreSQL the size of the
    /// write pool (a quarter of `SHOP_DB_MAX_CONNECTIONS`, 2..=8).
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

    /// Seconds a client has to send a request's head (its line and headers): on a
    /// new connection from the accept, on a kept-alive one from the head's first byte.
    /// Slower clients are disconnected (a trickle of header bytes holds no slot).
    #[arg(long, env = "SHOP_HEADER_READ_TIMEOUT_SECS", default_value_t = 10)]
    pub header_read_timeout_secs: u64,

    /// Seconds a kept-alive connection may wait idle for its next request before the
    /// server closes it (longer than a load balancer's usual 60 s, so the balancer,
    /// which knows, closes first).
    #[arg(long, env = "SHOP_KEEPALIVE_TIMEOUT_SECS", default_value_t = 75)]
    pub keepalive_timeout_secs: u64,

    /// Client connections served at once; further ones wait in the listen backlog
    /// until one closes. Lowered to fit the open-file limit when that is smaller.
    #[arg(long, env = "SHOP_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Log as JSON lines instead of human-readable text (`true`/`false`, `1`/`0`,
    /// `yes`/`no`).
    #[arg(long, env = "SHOP_LOG_JSON", default_value_t = false, action = clap::ArgAction::Set,
        value_parser = BoolishValueParser::new(), num_args = 0..=1, default_missing_value = "true")]
    pub log_json: bool,

    /// Send traces (a span per request, with the request id and matched route) to this
    /// OpenTelemetry collector over OTLP/HTTP (protobuf), e.g. `http://127.0.0.1:4318`;
    /// spans go to `<endpoint>/v1/traces`. Unset: no traces.
    #[arg(long, env = "SHOP_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Run the reference data-platform consumer: read SHOP_EVENTS from JetStream and
    /// write each event once into its own table.
    ConsumeEvents(crate::consumer::ConsumerConfig),
    /// Run the database migrations and exit (`--status`: list applied and pending
    /// migrations and change nothing).
    Migrate {
        /// List the migrations and whether each is applied; change nothing.
        #[arg(long)]
        status: bool,
    },
    /// Copy the embedded SQLite database to PATH (which must not exist): a consistent
    /// copy, safe while the server runs. PostgreSQL: use pg_dump.
    Backup {
        /// Where the copy goes.
        path: std::path::PathBuf,
    },
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

    /// Refuses settings the server cannot run with, naming the setting: zero sizes
    /// and intervals, limits that contradict each other, and limits whose arithmetic
    /// could overflow (an order's total is quantity × items × price in i64 won).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |msg: String| Err(ConfigError(msg));
        for (name, value) in [
            ("SHOP_ORDER_TTL_SECS", self.order_ttl_secs),
            ("SHOP_EXPIRY_INTERVAL_MS", self.expiry_interval_ms),
            ("SHOP_OUTBOX_INTERVAL_MS", self.outbox_interval_ms),
            ("SHOP_OUTBOX_MAX_BACKOFF_MS", self.outbox_max_backoff_ms),
            ("SHOP_REQUEST_TIMEOUT_SECS", self.request_timeout_secs),
            ("SHOP_WRITE_TIMEOUT_SECS", self.write_timeout_secs),
            ("SHOP_DB_STATEMENT_TIMEOUT_MS", self.db_statement_timeout_ms),
            (
                "SHOP_HEADER_READ_TIMEOUT_SECS",
                self.header_read_timeout_secs,
            ),
            ("SHOP_KEEPALIVE_TIMEOUT_SECS", self.keepalive_timeout_secs),
            ("SHOP_MAX_BODY_BYTES", self.max_body_bytes as u64),
            (
                "SHOP_DB_MAX_CONNECTIONS",
                u64::from(self.db_max_connections),
            ),
            ("SHOP_BATCH_MAX", self.batch_max as u64),
            ("SHOP_MAX_IN_FLIGHT", self.max_in_flight as u64),
            ("SHOP_MAX_CONNECTIONS", self.max_connections as u64),
            ("SHOP_MAX_ORDER_ITEMS", self.max_order_items as u64),
            ("SHOP_ACCESS_TOKEN_SECS", self.access_token_secs),
            ("SHOP_REFRESH_TOKEN_SECS", self.refresh_token_secs),
            (
                "SHOP_LOGIN_ATTEMPTS_PER_MINUTE",
                u64::from(self.login_attempts_per_minute),
            ),
        ] {
            if value == 0 {
                return fail(format!("{name} must be at least 1"));
            }
        }
        for (name, value) in [
            ("SHOP_MAX_CHARGE", self.max_charge),
            ("SHOP_MAX_BALANCE", self.max_balance),
            ("SHOP_MAX_DAILY_CHARGE", self.max_daily_charge),
            ("SHOP_MAX_ITEM_QUANTITY", self.max_item_quantity),
            ("SHOP_OUTBOX_MAX_ATTEMPTS", self.outbox_max_attempts),
        ] {
            if value < 1 {
                return fail(format!("{name} must be at least 1 (it is {value})"));
            }
        }
        for (name, value) in [
            ("SHOP_BATCH_WRITERS", self.batch_writers.map(|n| n as u64)),
            (
                "SHOP_RATE_LIMIT_PER_CLIENT",
                self.rate_limit_per_client.map(u64::from),
            ),
            (
                "SHOP_RATE_LIMIT_PER_USER",
                self.rate_limit_per_user.map(u64::from),
            ),
        ] {
            if value == Some(0) {
                return fail(format!(
                    "{name} must be at least 1 (leave it unset for the default)"
                ));
            }
        }
        if self.max_charge > self.max_balance {
            return fail(format!(
                "SHOP_MAX_CHARGE ({}) must not exceed SHOP_MAX_BALANCE ({})",
                self.max_charge, self.max_balance
            ));
        }
        let most_won = i64::try_from(self.max_order_items)
            .ok()
            .and_then(|items| items.checked_mul(self.max_item_quantity))
            .and_then(|units| units.checked_mul(crate::product::MAX_PRICE));
        if most_won.is_none() {
            return fail(format!(
                "SHOP_MAX_ITEM_QUANTITY ({}) × SHOP_MAX_ORDER_ITEMS ({}) × the largest price \
                 ({}) must fit in a 64-bit amount of won",
                self.max_item_quantity,
                self.max_order_items,
                crate::product::MAX_PRICE
            ));
        }
        if self.order_ttl_secs > MAX_ORDER_TTL_SECS {
            return fail(format!(
                "SHOP_ORDER_TTL_SECS must be at most {MAX_ORDER_TTL_SECS} (a year)"
            ));
        }
        if self.popular_cache_secs > 10 {
            return fail("SHOP_POPULAR_CACHE_SECS must be at most 10".into());
        }
        // PostgreSQL takes milliseconds as a 32-bit integer, and an idle transaction
        // is allowed four times the statement timeout.
        if self.db_statement_timeout_ms > i32::MAX as u64 / 4 {
            return fail(format!(
                "SHOP_DB_STATEMENT_TIMEOUT_MS must be at most {}",
                i32::MAX / 4
            ));
        }
        let secrets = [
            ("SHOP_ADMIN_TOKEN", &self.admin_token),
            ("SHOP_TOKEN_SECRET", &self.token_secret),
        ];
        for (name, secret) in secrets {
            if secret
                .as_ref()
                .is_some_and(|s| s.expose().trim().is_empty())
            {
                return fail(format!("{name} is set but empty"));
            }
        }
        if crate::db::is_postgres_url(&self.database_url) {
            if self.admin_token.is_none() {
                return fail(
                    "SHOP_ADMIN_TOKEN must be set when the database is PostgreSQL (every \
                     instance the same)"
                        .into(),
                );
            }
        } else if crate::db::sqlite_file(&self.database_url).is_none() {
            return fail("SHOP_DATABASE_URL must be sqlite://PATH or postgres://...".into());
        }
        if let Some(webhook) = &self.data_platform_url {
            match url::Url::parse(webhook) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => {
                    return fail(
                        "SHOP_DATA_PLATFORM_URL must be an http:// or https:// URL".into(),
                    );
                }
            }
        }
        if self
            .listen
            .rsplit_once(':')
            .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
        {
            return fail(format!(
                "SHOP_LISTEN must be host:port (it is `{}`)",
                self.listen
            ));
        }
        Ok(())
    }
}

/// The longest an order may stay PENDING.
pub const MAX_ORDER_TTL_SECS: u64 = 365 * 24 * 3600;

/// A setting the server cannot run with; the message names it.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting: {0}")]
pub struct ConfigError(pub String);

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

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(tweak: impl FnOnce(&mut Config)) -> String {
        let mut config = Config::defaults();
        tweak(&mut config);
        config.validate().expect_err("refused").to_string()
    }

    #[test]
    fn the_defaults_are_valid() {
        Config::defaults().validate().unwrap();
    }

    #[test]
    fn zero_sizes_and_intervals_are_refused_by_name() {
        assert!(refused(|c| c.outbox_interval_ms = 0).contains("SHOP_OUTBOX_INTERVAL_MS"));
        assert!(refused(|c| c.expiry_interval_ms = 0).contains("SHOP_EXPIRY_INTERVAL_MS"));
        assert!(refused(|c| c.db_max_connections = 0).contains("SHOP_DB_MAX_CONNECTIONS"));
        assert!(refused(|c| c.batch_max = 0).contains("SHOP_BATCH_MAX"));
        assert!(refused(|c| c.batch_writers = Some(0)).contains("SHOP_BATCH_WRITERS"));
        assert!(refused(|c| c.max_connections = 0).contains("SHOP_MAX_CONNECTIONS"));
        assert!(
            refused(|c| c.header_read_timeout_secs = 0).contains("SHOP_HEADER_READ_TIMEOUT_SECS")
        );
        assert!(refused(|c| c.rate_limit_per_user = Some(0)).contains("SHOP_RATE_LIMIT_PER_USER"));
        assert!(refused(|c| c.max_item_quantity = 0).contains("SHOP_MAX_ITEM_QUANTITY"));
        assert!(refused(|c| c.max_charge = -1).contains("SHOP_MAX_CHARGE"));
    }

    #[test]
    fn limits_that_contradict_or_overflow_are_refused() {
        let msg = refused(|c| {
            c.max_charge = 2_000;
            c.max_balance = 1_000;
        });
        assert!(
            msg.contains("SHOP_MAX_CHARGE") && msg.contains("SHOP_MAX_BALANCE"),
            "{msg}"
        );
        let msg = refused(|c| {
            c.max_item_quantity = i64::MAX / 2;
            c.max_order_items = 3;
        });
        assert!(
            msg.contains("SHOP_MAX_ITEM_QUANTITY") && msg.contains("SHOP_MAX_ORDER_ITEMS"),
            "{msg}"
        );
        assert!(refused(|c| c.order_ttl_secs = u64::MAX).contains("SHOP_ORDER_TTL_SECS"));
        assert!(
            refused(|c| c.db_statement_timeout_ms = u64::MAX)
                .contains("SHOP_DB_STATEMENT_TIMEOUT_MS")
        );
        assert!(refused(|c| c.popular_cache_secs = 11).contains("SHOP_POPULAR_CACHE_SECS"));
        // the largest limits that fit are accepted
        let mut c = Config::defaults();
        c.max_order_items = 1;
        c.max_item_quantity = i64::MAX / crate::product::MAX_PRICE;
        c.validate().unwrap();
    }

    #[test]
    fn postgres_needs_the_admin_token_and_urls_must_be_known() {
        let msg = refused(|c| {
            c.database_url = "postgres://postgres@127.0.0.1/shop".into();
            c.admin_token = None;
        });
        assert!(msg.contains("SHOP_ADMIN_TOKEN"), "{msg}");
        assert!(refused(|c| c.database_url = "mysql://x".into()).contains("SHOP_DATABASE_URL"));
        assert!(
            refused(|c| c.data_platform_url = Some("ftp://x".into()))
                .contains("SHOP_DATA_PLATFORM_URL")
        );
        assert!(refused(|c| c.admin_token = Some(Secret(" ".into()))).contains("SHOP_ADMIN_TOKEN"));
        assert!(refused(|c| c.listen = "8080".into()).contains("SHOP_LISTEN"));
        assert!(refused(|c| c.listen = "localhost:http".into()).contains("SHOP_LISTEN"));
    }

    #[test]
    fn listen_takes_host_names_and_booleans_take_1_0_yes_no() {
        let c = Config::try_parse_from(["shop", "--listen", "localhost:8080"]).unwrap();
        c.validate().unwrap();
        for (text, want) in [
            ("1", true),
            ("0", false),
            ("yes", true),
            ("no", false),
            ("true", true),
        ] {
            let c = Config::try_parse_from(["shop", "--log-json", text]).unwrap();
            assert_eq!(c.log_json, want, "{text}");
            let c = Config::try_parse_from(["shop", "--group-commit", text]).unwrap();
            assert_eq!(c.group_commit, want, "{text}");
            let c = Config::try_parse_from(["shop", "--demo-data", text]).unwrap();
            assert_eq!(c.demo_data, Some(want), "{text}");
        }
        assert!(
            Config::try_parse_from(["shop", "--log-json"])
                .unwrap()
                .log_json
        );
        assert!(Config::try_parse_from(["shop", "--log-json", "maybe"]).is_err());
    }

    #[test]
    fn operator_commands_parse() {
        let c = Config::try_parse_from(["shop", "migrate", "--status"]).unwrap();
        assert!(matches!(c.command, Some(Command::Migrate { status: true })));
        let c = Config::try_parse_from(["shop", "backup", "/tmp/copy.db"]).unwrap();
        assert!(matches!(c.command, Some(Command::Backup { .. })));
    }
}
