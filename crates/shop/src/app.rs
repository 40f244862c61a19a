//! The application: state, router, server and background workers.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use crate::cache::Cache;
use crate::clock::Clock;
use crate::config::Config;
use crate::db::Db;
use crate::error::{ApiError, ErrorCode};
use crate::outbox::relay::Relay;
use crate::outbox::sink::{Sink, SinkHealth};
use crate::ranking::RankingCache;
use crate::{http, telemetry};

/// What handlers share: one pointer, cloned by every layer of every request (a struct
/// of a dozen handles cloned and dropped per layer cost 10% of a cached read's CPU).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] points to. Small and concrete.
pub struct Shared {
    pub db: Db,
    pub clock: Arc<dyn Clock>,
    pub config: Arc<Config>,
    pub ranking: RankingCache,
    pub cache: Cache,
    pub writer: crate::batch::Writer,
    /// Idempotency keys of requests in flight on this instance.
    pub in_flight: Arc<http::idempotency::InFlight>,
    pub metrics: PrometheusHandle,
    pub auth: crate::auth::Auth,
    pub local: Arc<crate::local_cache::LocalCache>,
    pub rate_limits: http::limits::RateLimits,
    /// Login attempts per email.
    pub login_limit: http::limits::LoginLimit,
    /// How the data-platform sink is doing (for readiness), fed by the relay.
    pub sink: SinkHealth,
}

impl AppState {
    /// Checks the settings, connects to the database (running migrations) and seeds
    /// demo data when asked.
    pub async fn new(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<AppState> {
        config.validate()?;
        let db = Db::connect(
            &config.database_url,
            config.db_max_connections,
            Duration::from_millis(config.db_statement_timeout_ms),
        )
        .await?;
        let cache = Cache::connect(config.redis_url.as_deref(), &config.redis_prefix).await?;
        let batch_max = if config.group_commit {
            config.batch_max
        } else {
            1
        };
        let writers =
            crate::batch::writers(db.backend, config.batch_writers, config.db_max_connections);
        let rules = crate::batch::Rules {
            order: config.order_rules(),
            max_balance: crate::money::Won(config.max_balance),
            max_daily_charge: crate::money::Won(config.max_daily_charge),
            timezone: config.timezone,
        };
        let admin_token = crate::auth::admin_token(
            config.admin_token.as_ref().map(|s| s.expose()),
            db.sqlite_path.as_deref(),
        )?;
        // The revocation view is complete before the first request is served.
        let revocations = Arc::new(crate::account::revocations::Revocations::new(
            Duration::from_secs(config.access_token_secs),
        ));
        revocations.poll(db.read()).await?;
        let auth = crate::auth::Auth::load(
            &db,
            config.token_secret.as_ref().map(|s| s.expose()),
            &admin_token,
            revocations,
        )
        .await?;
        let login_limit = http::limits::LoginLimit::new(config.login_attempts_per_minute);
        let rate_limits =
            http::limits::RateLimits::new(config.rate_limit_per_client, config.rate_limit_per_user);
        let local = Arc::new(crate::local_cache::LocalCache::new(Duration::from_millis(
            config.product_cache_ms,
        )));
        let state = AppState(Arc::new(Shared {
            auth,
            local,
            rate_limits,
            login_limit,
            writer: crate::batch::Writer::start(
                db.clone(),
                clock.clone(),
                rules,
                batch_max,
                writers,
            ),
            in_flight: Default::default(),
            db,
            cache,
            clock,
            config: Arc::new(config),
            ranking: RankingCache::default(),
            metrics: telemetry::metrics_handle(),
            sink: SinkHealth::default(),
        }));
        crate::demo::seed_if_wanted(&state).await?;
        Ok(state)
    }
}

/// Where the admin router is nested.
pub const ADMIN: &str = "/api/v1/admin";

/// Every API route, each declared once: `routes!(handler)` takes the handler's path,
/// method, OpenAPI entry and security requirement from its `#[utoipa::path]`. The
/// first router holds the public and user routes (absolute paths), the second the
/// admin routes (relative to [`ADMIN`]).
fn api_routes() -> (OpenApiRouter<AppState>, OpenApiRouter<AppState>) {
    use crate::{account, balance, cart, coupon, order, outbox, product, ranking};
    let api = OpenApiRouter::new()
        .merge(account::routes::router())
        .merge(balance::routes::router())
        .merge(ranking::router())
        .merge(product::routes::router())
        .merge(coupon::routes::router())
        .merge(order::routes::router())
        .merge(cart::routes::router());
    let admin = OpenApiRouter::new()
        .merge(account::routes::admin_router())
        .merge(product::routes::admin_router())
        .merge(coupon::routes::admin_router())
        .merge(order::routes::admin_router())
        .merge(outbox::routes::admin_router());
    (api, admin)
}

/// The OpenAPI document of [`api_routes`] (served at `/api-docs/openapi.json`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (api, admin) = api_routes();
    let doc = OpenApiRouter::with_openapi(crate::openapi::ApiDoc::openapi())
        .merge(api)
        .nest(ADMIN, admin)
        .into_openapi();
    crate::openapi::finish(doc)
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let (api, admin) = api_routes();
    // Innermost last: the rate limit, then the idempotency claim (scoped to the
    // caller). On the admin router, the admin check comes before both, once for all.
    let common = |routes: OpenApiRouter<AppState>| {
        routes
            .route_layer(middleware::from_fn_with_state(
                state.clone(),
                http::idempotency::layer,
            ))
            .route_layer(middleware::from_fn_with_state(
                state.clone(),
                http::limits::rate_limit,
            ))
    };
    let admin = common(admin).route_layer(middleware::from_fn(crate::auth::admin_only));
    let (api, doc) = OpenApiRouter::with_openapi(crate::openapi::ApiDoc::openapi())
        .merge(common(api))
        .nest(ADMIN, admin)
        // Outermost: who is asking.
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            crate::auth::authenticate,
        ))
        .split_for_parts();
    let doc = crate::openapi::finish(doc);
    let timeout = Duration::from_secs(state.config.request_timeout_secs.max(1));
    let write_timeout = Duration::from_secs(state.config.write_timeout_secs.max(1)).max(timeout);
    Router::new()
        .merge(api)
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/metrics", get(render_metrics))
        .merge(crate::web::router())
        .merge(SwaggerUi::new("/docs").url("/api-docs/openapi.json", doc))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            time_limit(timeout, write_timeout, req, next)
        }))
        .layer(
            tower::ServiceBuilder::new()
                .layer(axum::error_handling::HandleErrorLayer::new(
                    |_: tower::BoxError| async { http::limits::overloaded() },
                ))
                .load_shed()
                .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
                    state.config.max_in_flight.max(1),
                )),
        )
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::internal("a handler panicked").into_response()
        }))
        // outermost: every answer (shed, timed out, panicked) is counted and logged
        .layer(middleware::from_fn(telemetry::track))
        .with_state(state)
}

/// Answers a request that outlives its deadline. Before its write was handed over
/// for commit, nothing happened: 503 `TIMEOUT` with `Retry-After` at `limit`. After,
/// the answer is the write's outcome, awaited until `write_limit` (from the start);
/// only past that does it answer 504 `OUTCOME_UNKNOWN` (no `Retry-After`: a retry with
/// the same Idempotency-Key tells the outcome). The write itself runs in the writer
/// either way, never cancelled halfway.
async fn time_limit(
    limit: Duration,
    write_limit: Duration,
    mut req: Request,
    next: Next,
) -> Response {
    let started = http::idempotency::WriteStarted::default();
    req.extensions_mut().insert(started.clone());
    let work = next.run(req);
    tokio::pin!(work);
    tokio::select! {
        res = &mut work => return res,
        () = tokio::time::sleep(limit) => {}
    }
    if !started.is_set() {
        return ApiError::unavailable(ErrorCode::Timeout, "the request took too long")
            .into_response();
    }
    match tokio::time::timeout(write_limit.saturating_sub(limit), work).await {
        Ok(res) => res,
        Err(_) => http::idempotency::outcome_unknown().into_response(),
    }
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "method not allowed on this route",
    )
}

async fn live() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"status": "ok"}))
}

/// Ready when the database answers (503 otherwise). Redis and the event sink do not
/// decide the answers: when Redis is down requests succeed from the database, and
/// when the sink is down events wait in the outbox; either makes the status
/// "degraded". The sink's check also tells its backlog and how long the oldest
/// undelivered event has waited.
async fn ready(State(state): State<AppState>) -> Response {
    let db = state.db.ping().await;
    let redis = state.cache.ping().await;
    let sink = state.sink.report();
    let backlog = crate::outbox::store::backlog(state.db.read()).await.ok();
    let now = crate::clock::to_millis(state.clock.now());
    let status = match (db, redis, sink.up) {
        (false, _, _) => "unavailable",
        (true, Some(false), _) | (true, _, false) => "degraded",
        _ => "ok",
    };
    let body = serde_json::json!({
        "status": status,
        "checks": {
            "database": if db { "ok" } else { "down" },
            "redis": match redis { None => "off", Some(true) => "ok", Some(false) => "down" },
            "eventSink": {
                "kind": sink.kind.unwrap_or("not started"),
                "status": if sink.up { "ok" } else { "down" },
                "backlog": backlog.map(|(n, _)| n),
                "oldestUndeliveredAgeSeconds": backlog.map(|(_, oldest)| {
                    oldest.map_or(0.0, |at| (now - at).max(0) as f64 / 1000.0)
                }),
            },
        },
    });
    let status = if db {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn render_metrics(State(state): State<AppState>) -> impl IntoResponse {
    telemetry::sample(&state.db);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(),
    )
}

/// Starts the background workers: order expiry (with idempotency-key purge), the
/// outbox relay, the poller of revocations, and (with Redis) the followers of other
/// instances' product changes and revocations. They stop when `shutdown` is cancelled.
pub async fn spawn_workers(
    state: &AppState,
    shutdown: CancellationToken,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let config = &state.config;
    let sink = match (&config.nats_url, &config.data_platform_url) {
        (Some(nats), webhook) => {
            if let Some(webhook) = webhook {
                tracing::warn!(
                    nats = %crate::outbox::sink::redact(nats),
                    webhook = %crate::outbox::sink::redact(webhook),
                    "both SHOP_NATS_URL and SHOP_DATA_PLATFORM_URL are set: events go to NATS"
                );
            }
            Sink::nats(nats).await?
        }
        (None, Some(url)) => Sink::webhook(
            url.clone(),
            config.data_platform_secret.as_ref().map(|s| s.0.clone()),
        )?,
        (None, None) => Sink::file(events_file(state)),
    };
    let relay = Relay {
        writer: state.writer.clone(),
        db: state.db.clone(),
        sink,
        clock: state.clock.clone(),
        interval: Duration::from_millis(state.config.outbox_interval_ms.max(10)),
        locks: None,
        max_backoff: Duration::from_millis(config.outbox_max_backoff_ms),
        max_attempts: config.outbox_max_attempts.max(1),
        exit_after_publish: config.fault_exit_after_publish,
        published: 0,
        health: state.sink.clone(),
    };
    let relay = tokio::spawn(relay.run(shutdown.clone()));
    let expiry = tokio::spawn(expiry_worker(state.clone(), shutdown.clone()));
    let (cache, local) = (state.cache.clone(), state.local.clone());
    let stop = shutdown.clone();
    let news = tokio::spawn(async move { cache.follow_changes(local, stop).await });
    let (cache, view) = (state.cache.clone(), state.auth.revocations().clone());
    let stop = shutdown.clone();
    let revoked = tokio::spawn(async move { cache.follow_revocations(view, stop).await });
    let poller = tokio::spawn(poll_revocations(state.clone(), shutdown));
    Ok(vec![relay, expiry, news, revoked, poller])
}

/// The JSON-lines file events go to when no webhook is set: beside the database.
pub fn events_file(state: &AppState) -> std::path::PathBuf {
    if let Some(path) = &state.config.events_file {
        return path.clone();
    }
    match &state.db.sqlite_path {
        Some(db) => db.with_extension("events.jsonl"),
        None => std::path::PathBuf::from("shop-events.jsonl"),
    }
}

/// Reads new rows of `revocations` every [`crate::account::revocations::POLL`]: how
/// every instance converges, with or without Redis.
async fn poll_revocations(state: AppState, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(crate::account::revocations::POLL) => {}
        }
        if let Err(e) = state.auth.revocations().poll(state.db.read()).await {
            tracing::warn!(error = %e, "reading revocations failed");
        }
    }
}

async fn expiry_worker(state: AppState, shutdown: CancellationToken) {
    let interval = Duration::from_millis(state.config.expiry_interval_ms.max(10));
    let mut passes: u64 = 0;
    loop {
        let now = state.clock.now();
        match state.expire_due().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(expired = n, "expired unpaid orders"),
            Err(e) => tracing::warn!(error = %e, "order expiry pass failed"),
        }
        if passes.is_multiple_of(600)
            && let Err(e) = http::idempotency::purge_expired(&state.writer, now).await
        {
            tracing::warn!(error = %e, "idempotency purge failed");
        }
        if passes.is_multiple_of(600)
            && let Err(e) = state.prune_revocations().await
        {
            tracing::warn!(error = %e, "revocations pruning failed");
        }
        passes += 1;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// Serves until `shutdown` is cancelled, then finishes in-flight requests. Connections
/// are bounded in number and in idle and header time (see [`http::server`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let config = state.config.clone();
    serve_router(listener, router(state), &config, shutdown).await
}

/// [`serve`] with a router of the caller's: [`router`]'s, perhaps wrapped in a layer
/// (the tests check every answer against the OpenAPI document this way).
pub async fn serve_router(
    listener: tokio::net::TcpListener,
    router: Router,
    config: &Config,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let limits = http::server::Limits {
        header_read_timeout: Duration::from_secs(config.header_read_timeout_secs.max(1)),
        keepalive_timeout: Duration::from_secs(config.keepalive_timeout_secs.max(1)),
        max_connections: config.max_connections,
    };
    http::server::serve(listener, router, limits, shutdown).await
}

impl AppState {
    /// Deletes the rows of `revocations` no view needs any more (see
    /// [`crate::account::store::prune_revocations`]), once they are older than an
    /// access token lives plus ten minutes, long after every instance has read them.
    pub async fn prune_revocations(&self) -> Result<u64, sqlx::Error> {
        let keep = Duration::from_secs(self.config.access_token_secs) + Duration::from_secs(600);
        let before = crate::clock::to_millis(self.clock.now()) - keep.as_millis() as i64;
        self.writer
            .transact(Box::new(move |tx| {
                Box::pin(crate::account::store::prune_revocations(tx, before))
            }))
            .await
    }

    /// One pass of the expiry worker: expires due PENDING orders (through the write
    /// path, in batches of 200) and drops the cached copies of the products they gave
    /// back. Returns how many expired.
    pub async fn expire_due(&self) -> Result<usize, ApiError> {
        const LIMIT: i64 = 200;
        let mut expired = 0;
        loop {
            let job = crate::batch::Job {
                work: crate::batch::Work::ExpireDue { limit: LIMIT },
                key: None,
            };
            match self.writer.submit(job, None).await {
                crate::batch::Outcome::Decided {
                    decision: Ok(crate::batch::Done::Expired(orders)),
                    touched,
                    ..
                } => {
                    self.products_changed(touched).await;
                    expired += orders.len();
                    if (orders.len() as i64) < LIMIT {
                        return Ok(expired);
                    }
                }
                other => {
                    return Err(ApiError::internal(format!(
                        "the expiry pass did not run: {other:?}"
                    )));
                }
            }
        }
    }

    /// Drops cached copies of products whose stock, name or price just changed: this
    /// instance's at once, the shared ones in Redis and, through Redis, the other
    /// instances'.
    pub async fn products_changed(&self, ids: impl IntoIterator<Item = crate::ids::ProductId>) {
        let ids: Vec<_> = ids.into_iter().collect();
        self.local.forget_products(ids.iter().copied());
        self.cache.forget_products(&ids).await;
    }

    /// After the admin edited a coupon: its sold-out and inactive verdicts are
    /// forgotten here at once, in the Redis gate, and, through Redis, on every other
    /// instance.
    pub async fn coupon_changed(&self, id: crate::ids::CouponId) {
        self.local.forget_coupon(id);
        self.cache.forget_coupon(id).await;
    }
}
