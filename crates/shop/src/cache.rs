//! Redis: optional, shared by all instances, and never the source of truth for money
//! or stock. It holds copies (product details, computed rankings) that are dropped
//! on every change, and the coupon gate, which only repeats refusals the database has
//! already made (sold out and inactive ones until the admin edits the coupon: each
//! edit bumps the coupon's generation, and a refusal is learnt only under the
//! generation its request began with). Every call fails open: when Redis is down or slow (a short response
//! timeout), the caller goes to the database and the readiness check says "degraded".
//! After a flush or restart nothing is lost: copies are read again from the database
//! and the gate learns again from the database's answers.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ids::{CouponId, ProductId, UserId};

/// The cache in use: none, or Redis. A closed set, so an enum.
#[derive(Clone, Default)]
pub enum Cache {
    #[default]
    Off,
    Redis(Arc<Redis>),
}

pub struct Redis {
    client: redis::Client,
    conn: RwLock<Option<ConnectionManager>>,
    prefix: String,
    gate: redis::Script,
    learn: redis::Script,
    forget: redis::Script,
}

/// What the coupon gate knows before the database is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Nothing known: ask the database.
    Pass,
    /// The database said the coupon is sold out (until the admin raises its total).
    SoldOut,
    /// The database said the coupon is INACTIVE (until the admin re-activates it).
    Inactive,
    /// The database issued this coupon to this user.
    AlreadyIssued,
}

/// One Lua script, so the checks see one consistent moment: the verdict and the
/// coupon's generation (keys: holders, sold-out, inactive, generation).
const GATE_SCRIPT: &str = r"
local generation = tonumber(redis.call('GET', KEYS[4]) or '0')
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return {2, generation} end
if redis.call('EXISTS', KEYS[3]) == 1 then return {3, generation} end
if redis.call('EXISTS', KEYS[2]) == 1 then return {1, generation} end
return {0, generation}
";

/// Sets a refusal flag (KEYS[1]) only if the generation (KEYS[2]) is still ARGV[1].
const LEARN_SCRIPT: &str = r"
if tonumber(redis.call('GET', KEYS[2]) or '0') ~= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], 1, 'EX', ARGV[2])
return 1
";

/// Bumps the generation (KEYS[1]) and drops the sold-out and inactive flags.
const FORGET_SCRIPT: &str = r"
redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2], KEYS[3])
return 1
";

/// The channel (under the prefix) on which instances announce changed products.
const PRODUCT_CHANGES: &str = "products-changed";

/// The channel (under the prefix) on which instances announce edited coupons.
const COUPON_CHANGES: &str = "coupons-changed";

/// A coupon's generation in the gate, as read with its verdict (`None`: Redis did not
/// answer, so nothing may be learnt into it).
pub type Generation = Option<i64>;

/// The channel (under the prefix) on which instances announce revocations (see
/// [`crate::account::revocations`]).
const REVOCATIONS: &str = "revocations";

/// How long gate knowledge is kept after its last change.
const GATE_TTL_SECS: i64 = 7 * 24 * 3600;

fn config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(500)))
        .set_response_timeout(Some(Duration::from_millis(300)))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(2))
}

impl Cache {
    /// Redis at `url` (keys under `prefix`), or `Off`. Starts even when Redis is down:
    /// a background task keeps trying to connect.
    pub async fn connect(url: Option<&str>, prefix: &str) -> anyhow::Result<Cache> {
        let Some(url) = url else {
            return Ok(Cache::Off);
        };
        let client = redis::Client::open(url)?;
        let redis = Arc::new(Redis {
            client,
            conn: RwLock::new(None),
            prefix: prefix.to_string(),
            gate: redis::Script::new(GATE_SCRIPT),
            learn: redis::Script::new(LEARN_SCRIPT),
            forget: redis::Script::new(FORGET_SCRIPT),
        });
        if let Err(e) = redis.try_connect().await {
            let addr = redis.address();
            tracing::warn!(redis = %addr, error = %e, "Redis is not reachable; running degraded until it is");
            let r = redis.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if r.try_connect().await.is_ok() {
                        tracing::info!(redis = %addr, "connected to Redis");
                        return;
                    }
                }
            });
        }
        Ok(Cache::Redis(redis))
    }

    fn redis(&self) -> Option<(&Redis, ConnectionManager)> {
        match self {
            Cache::Off => None,
            Cache::Redis(r) => {
                let conn = r.conn.read().unwrap_or_else(|e| e.into_inner()).clone()?;
                Some((r, conn))
            }
        }
    }

    pub fn is_on(&self) -> bool {
        matches!(self, Cache::Redis(_))
    }

    /// `host:port` of the Redis in use (never its password), or `off`.
    pub fn address(&self) -> String {
        match self {
            Cache::Off => "off".to_string(),
            Cache::Redis(r) => r.address(),
        }
    }

    /// `None` when off; otherwise whether Redis answers.
    pub async fn ping(&self) -> Option<bool> {
        if !self.is_on() {
            return None;
        }
        let Some((_, mut conn)) = self.redis() else {
            return Some(false);
        };
        Some(
            redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .is_ok(),
        )
    }

    async fn get_json<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        let (r, mut conn) = self.redis()?;
        match conn.get::<_, Option<Vec<u8>>>(r.key(key)).await {
            Ok(Some(bytes)) => serde_json::from_slice(&bytes).ok(),
            Ok(None) => None,
            Err(e) => failed("get", e),
        }
    }

    async fn put_json<T: Serialize>(&self, key: &str, value: &T, ttl: Duration) {
        let Some((r, mut conn)) = self.redis() else {
            return;
        };
        let ms = ttl.as_millis() as u64;
        if ms == 0 {
            return;
        }
        let Ok(bytes) = serde_json::to_vec(value) else {
            return;
        };
        if let Err(e) = conn.pset_ex::<_, _, ()>(r.key(key), bytes, ms).await {
            failed::<()>("set", e);
        }
    }

    /// A product as last read from the database, if cached.
    pub async fn product(&self, id: ProductId) -> Option<crate::product::Product> {
        self.get_json(&format!("product:{id}")).await
    }

    pub async fn put_product(&self, product: &crate::product::Product, ttl: Duration) {
        self.put_json(&format!("product:{}", product.id), product, ttl)
            .await;
    }

    /// Drops cached copies of products that just changed (after the commit), and tells
    /// the other instances to drop their in-process copies.
    pub async fn forget_products(&self, ids: &[ProductId]) {
        let Some((r, mut conn)) = self.redis() else {
            return;
        };
        if ids.is_empty() {
            return;
        }
        let keys: Vec<String> = ids
            .iter()
            .map(|id| r.key(&format!("product:{id}")))
            .collect();
        let news = ids
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let done = redis::pipe()
            .del(keys)
            .ignore()
            .publish(r.key(PRODUCT_CHANGES), news)
            .ignore()
            .query_async::<()>(&mut conn)
            .await;
        if let Err(e) = done {
            failed::<()>("del", e);
        }
    }

    /// Follows the product and coupon changes instances publish (this one's too),
    /// dropping `local` copies and refusals, until `shutdown`. After any gap (not yet
    /// subscribed, Redis down) every product copy and every sold-out or inactive
    /// verdict is dropped, since news may have been missed.
    pub async fn follow_changes(
        &self,
        local: std::sync::Arc<crate::local_cache::LocalCache>,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let Cache::Redis(r) = self else {
            return;
        };
        let (products, coupons) = (r.key(PRODUCT_CHANGES), r.key(COUPON_CHANGES));
        let forget_all = || {
            local.forget_all_products();
            local.forget_all_coupons();
        };
        let news = |channel: &str, news: String| {
            let ids = news.split(',').filter_map(|id| id.parse().ok());
            if channel == coupons {
                ids.map(CouponId).for_each(|c| local.forget_coupon(c));
            } else {
                local.forget_products(ids.map(ProductId));
            }
        };
        r.follow(&[&products, &coupons], &shutdown, forget_all, news)
            .await;
    }

    /// Tells the other instances about a revocation (after its commit). Best effort:
    /// they also poll the database.
    pub async fn publish_revocation(&self, message: &str) {
        let Some((r, mut conn)) = self.redis() else {
            return;
        };
        if let Err(e) = conn.publish::<_, _, ()>(r.key(REVOCATIONS), message).await {
            failed::<()>("publish", e);
        }
    }

    /// Applies the revocations other instances publish to `view`, until `shutdown`.
    /// Nothing is lost in a gap (Redis down, not yet subscribed): the poller of
    /// `revocations` reads every row anyway.
    pub async fn follow_revocations(
        &self,
        view: std::sync::Arc<crate::account::revocations::Revocations>,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        use crate::account::revocations::Change;
        let Cache::Redis(r) = self else {
            return;
        };
        let apply = |_: &str, text: String| match Change::from_message(&text) {
            Some(change) => view.apply(change),
            None => tracing::warn!("ignored a malformed revocation message"),
        };
        r.follow(&[&r.key(REVOCATIONS)], &shutdown, || {}, apply)
            .await;
    }

    /// A computed ranking shared by all instances, with how long ago it was computed.
    pub async fn popular(
        &self,
        days: i64,
        limit: i64,
    ) -> Option<(crate::ranking::Popular, Duration)> {
        let (at_ms, value): (i64, crate::ranking::Popular) =
            self.get_json(&format!("popular:{days}:{limit}")).await?;
        let age = chrono::Utc::now()
            .timestamp_millis()
            .saturating_sub(at_ms)
            .max(0);
        Some((value, Duration::from_millis(age as u64)))
    }

    pub async fn put_popular(
        &self,
        days: i64,
        limit: i64,
        value: &crate::ranking::Popular,
        ttl: Duration,
    ) {
        let at_ms = chrono::Utc::now().timestamp_millis();
        self.put_json(&format!("popular:{days}:{limit}"), &(at_ms, value), ttl)
            .await;
    }

    /// The coupon gate: refusals the database has already made, answered without it,
    /// and the coupon's generation to learn new ones under.
    pub async fn coupon_gate(&self, coupon: CouponId, user: UserId) -> (Gate, Generation) {
        let Some((r, mut conn)) = self.redis() else {
            return (Gate::Pass, None);
        };
        let verdict = r
            .gate
            .key(r.key(&format!("coupon:{coupon}:users")))
            .key(r.key(&format!("coupon:{coupon}:sold-out")))
            .key(r.key(&format!("coupon:{coupon}:inactive")))
            .key(r.key(&format!("coupon:{coupon}:generation")))
            .arg(user.0)
            .invoke_async::<(i64, i64)>(&mut conn)
            .await;
        match verdict {
            Ok((2, generation)) => (Gate::AlreadyIssued, Some(generation)),
            Ok((1, generation)) => (Gate::SoldOut, Some(generation)),
            Ok((3, generation)) => (Gate::Inactive, Some(generation)),
            Ok((_, generation)) => (Gate::Pass, Some(generation)),
            Err(e) => (failed("coupon gate", e).unwrap_or(Gate::Pass), None),
        }
    }

    /// Teaches the gate what the database decided (after the commit): a sold-out or
    /// inactive verdict only under the generation `generation` the request began with.
    pub async fn coupon_decided(
        &self,
        coupon: CouponId,
        user: UserId,
        verdict: Gate,
        generation: Generation,
    ) {
        let Some((r, mut conn)) = self.redis() else {
            return;
        };
        let flag = match verdict {
            Gate::Pass => return,
            Gate::AlreadyIssued => {
                let key = r.key(&format!("coupon:{coupon}:users"));
                let result = redis::pipe()
                    .sadd(&key, user.0)
                    .ignore()
                    .expire(&key, GATE_TTL_SECS)
                    .ignore()
                    .query_async::<()>(&mut conn)
                    .await;
                if let Err(e) = result {
                    failed::<()>("coupon gate update", e);
                }
                return;
            }
            Gate::SoldOut => "sold-out",
            Gate::Inactive => "inactive",
        };
        let Some(generation) = generation else { return };
        let result = r
            .learn
            .key(r.key(&format!("coupon:{coupon}:{flag}")))
            .key(r.key(&format!("coupon:{coupon}:generation")))
            .arg(generation)
            .arg(GATE_TTL_SECS)
            .invoke_async::<i64>(&mut conn)
            .await;
        if let Err(e) = result {
            failed::<()>("coupon gate update", e);
        }
    }

    /// The admin edited `coupon` (after the commit): the gate forgets its sold-out and
    /// inactive verdicts, and every instance is told to forget its own.
    pub async fn forget_coupon(&self, coupon: CouponId) {
        let Some((r, mut conn)) = self.redis() else {
            return;
        };
        let forgot = r
            .forget
            .key(r.key(&format!("coupon:{coupon}:generation")))
            .key(r.key(&format!("coupon:{coupon}:sold-out")))
            .key(r.key(&format!("coupon:{coupon}:inactive")))
            .arg(GATE_TTL_SECS)
            .invoke_async::<i64>(&mut conn)
            .await;
        if let Err(e) = forgot {
            failed::<()>("coupon gate forget", e);
        }
        let told = conn
            .publish::<_, _, ()>(r.key(COUPON_CHANGES), coupon.to_string())
            .await;
        if let Err(e) = told {
            failed::<()>("publish", e);
        }
    }
}

impl Redis {
    /// Hands every message published on `channels` to `on_message` (its channel and
    /// payload) until `shutdown`. A subscription that fails or ends is made again a
    /// second later; `on_gap` runs as each subscription starts and as it ends, since
    /// messages may have been missed outside it.
    async fn follow(
        &self,
        channels: &[&str],
        shutdown: &tokio_util::sync::CancellationToken,
        on_gap: impl Fn(),
        on_message: impl Fn(&str, String),
    ) {
        use futures::StreamExt;
        while !shutdown.is_cancelled() {
            let subscribed = async {
                let mut pubsub = self.client.get_async_pubsub().await?;
                for channel in channels {
                    pubsub.subscribe(*channel).await?;
                }
                redis::RedisResult::Ok(pubsub)
            };
            let stream = tokio::select! {
                s = subscribed => s,
                () = shutdown.cancelled() => return,
            };
            match stream {
                Ok(pubsub) => {
                    on_gap();
                    let mut messages = pubsub.into_on_message();
                    loop {
                        let msg = tokio::select! {
                            m = messages.next() => m,
                            () = shutdown.cancelled() => return,
                        };
                        let Some(msg) = msg else { break };
                        on_message(
                            msg.get_channel_name(),
                            msg.get_payload().unwrap_or_default(),
                        );
                    }
                    on_gap();
                }
                Err(e) => {
                    failed::<()>("subscribe", e);
                }
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    fn key(&self, k: &str) -> String {
        format!("{}{k}", self.prefix)
    }

    fn address(&self) -> String {
        self.client.get_connection_info().addr().to_string()
    }

    async fn try_connect(&self) -> redis::RedisResult<()> {
        let manager = self
            .client
            .get_connection_manager_with_config(config())
            .await?;
        *self.conn.write().unwrap_or_else(|e| e.into_inner()) = Some(manager);
        Ok(())
    }
}

/// Logs and counts a failed Redis call; the caller carries on without it.
fn failed<T>(what: &str, err: redis::RedisError) -> Option<T> {
    metrics::counter!("shop_redis_errors_total").increment(1);
    tracing::debug!(error = %err, what, "Redis call failed; using the database");
    None
}
