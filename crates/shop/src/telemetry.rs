//! Structured logs (`RUST_LOG`, text or flat JSON lines on stderr), one line per
//! request, and the Prometheus metrics recorder.
//!
//! Label values are bounded: a request's method is one of the known methods or
//! `other`, its route is the matched route template or `other`, so no client can grow
//! `/metrics` by sending made-up methods or paths. Every series has a `# HELP` line,
//! and every histogram is rendered as a Prometheus histogram (buckets), never a summary.

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing::Instrument;
use tracing_subscriber::EnvFilter;

use crate::db::Db;

/// Installs the log subscriber (once; later calls are ignored). Logs go to stderr,
/// coloured only when stderr is a terminal; `json` writes one flat JSON object per
/// line (the event's fields at the top level). With `otlp`, spans also go to that
/// OpenTelemetry collector (see [`Traces`]).
pub fn init_logs(json: bool, otlp: Option<&str>) -> anyhow::Result<Option<Traces>> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let traces = otlp.map(Traces::start).transpose()?;
    let otel = traces.as_ref().map(|t| {
        use opentelemetry::trace::TracerProvider as _;
        tracing_opentelemetry::layer().with_tracer(t.provider.tracer("shop"))
    });
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let _ = if json {
        registry
            .with(fmt.json().flatten_event(true).with_span_list(false))
            .try_init()
    } else {
        registry.with(fmt).try_init()
    };
    Ok(traces)
}

/// Spans exported over OTLP/HTTP in batches, from a thread of the exporter's own.
/// Dropping it (or [`Traces::shutdown`]) sends what is still buffered.
pub struct Traces {
    provider: opentelemetry_sdk::trace::SdkTracerProvider,
}

impl Traces {
    fn start(endpoint: &str) -> anyhow::Result<Traces> {
        use opentelemetry_otlp::WithExportConfig;
        let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(url.clone())
            .with_timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| anyhow::anyhow!("SHOP_OTLP_ENDPOINT {url}: {e}"))?;
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name("shop")
            .with_attribute(opentelemetry::KeyValue::new(
                "service.version",
                env!("CARGO_PKG_VERSION"),
            ))
            .build();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        Ok(Traces { provider })
    }

    /// Sends the buffered spans and stops the exporter.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("shop: sending the last traces: {e}");
        }
    }
}

/// Latency buckets, in seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Jobs per group commit.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// The process-wide metrics recorder (installed on first use).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // Buckets for every histogram: without them the exporter renders summaries.
            let recorder = PrometheusBuilder::new()
                .set_buckets(LATENCY_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full("shop_batch_size".into()), BATCH_BUCKETS)
                })
                .expect("buckets are not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (tests link the library many
            // times over); the handle then simply renders nothing of ours.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            handle
        })
        .clone()
}

/// A `# HELP` for every metric the server emits. Unlabelled counters start at 0, so
/// that they are scraped (and described) before their first event.
fn describe() {
    describe_counter!(
        "http_requests_total",
        "HTTP requests answered, by method, route template and status"
    );
    describe_histogram!(
        "http_request_duration_seconds",
        Unit::Seconds,
        "Time to answer an HTTP request, by method, route template and status"
    );
    describe_gauge!("http_requests_in_flight", "HTTP requests being served now");
    describe_gauge!("http_connections_open", "Client connections open now");
    describe_gauge!(
        "shop_build_info",
        "Always 1; the labels say the version and the database backend"
    );
    describe_gauge!(
        "shop_db_pool_connections",
        "Database connections of each pool, by state (in_use, idle), sampled at scrape"
    );
    describe_gauge!(
        "shop_db_pool_max_connections",
        "Most connections each database pool may open"
    );
    describe_histogram!(
        "shop_batch_size",
        "Jobs decided and committed together in one batch of the write path"
    );
    describe_histogram!(
        "shop_batch_seconds",
        Unit::Seconds,
        "Time a batch of the write path takes: read, decide, write, commit"
    );
    describe_histogram!(
        "shop_batch_phase_seconds",
        Unit::Seconds,
        "Time each phase of a batch takes: begin (waiting for the write connection or lock), read, decide, write, commit"
    );
    describe_counter!(
        "shop_batch_jobs_total",
        "Jobs through the write path, by kind (order, order_and_pay, pay, cancel, charge, coupon_issue, stock, expire)"
    );
    describe_counter!(
        "shop_batch_retries_total",
        "Batches run again after a transient failure (deadlock, lost connection, busy database)"
    );
    describe_counter!(
        "shop_batch_splits_total",
        "Batches that failed as a whole and were run again in halves"
    );
    describe_counter!(
        "shop_orders_paid_total",
        "Orders paid (alone or created and paid at once)"
    );
    describe_counter!("shop_coupons_issued_total", "Coupons issued to users");
    describe_gauge!(
        "shop_outbox_backlog",
        "Data-platform events not yet delivered"
    );
    describe_gauge!(
        "shop_outbox_oldest_age_seconds",
        Unit::Seconds,
        "Age of the oldest undelivered data-platform event (0 when none waits)"
    );
    describe_counter!(
        "shop_outbox_delivered_total",
        "Data-platform events delivered, by sink"
    );
    describe_counter!(
        "shop_outbox_failures_total",
        "Failed deliveries of data-platform events, by sink (each is retried)"
    );
    describe_counter!(
        "shop_outbox_parked_total",
        "Data-platform events parked after too many failed deliveries, by sink"
    );
    describe_counter!(
        "shop_redis_errors_total",
        "Redis calls that failed (the database answered instead)"
    );
    process_collector().describe();
    for counter in [
        "shop_orders_paid_total",
        "shop_coupons_issued_total",
        "shop_redis_errors_total",
        "shop_batch_retries_total",
        "shop_batch_splits_total",
    ] {
        metrics::counter!(counter).increment(0);
    }
}

fn process_collector() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}

/// Samples what is read rather than counted (process figures, database pools, build
/// information) just before a scrape renders.
pub fn sample(db: &Db) {
    process_collector().collect();
    metrics::gauge!(
        "shop_build_info",
        "version" => env!("CARGO_PKG_VERSION"),
        "backend" => db.backend.name(),
    )
    .set(1.0);
    for (pool, stats) in db.pool_stats() {
        metrics::gauge!("shop_db_pool_connections", "pool" => pool, "state" => "in_use")
            .set(stats.in_use as f64);
        metrics::gauge!("shop_db_pool_connections", "pool" => pool, "state" => "idle")
            .set(stats.idle as f64);
        metrics::gauge!("shop_db_pool_max_connections", "pool" => pool).set(stats.max as f64);
    }
}

/// The `method` label: a known method, else `other`.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The header that carries a request's id, in and out.
pub const REQUEST_ID: &str = "x-request-id";

/// The request's id: the caller's `x-request-id` when it is sane (1..=128 characters
/// of letters, digits and `-_.:@/+=`), else a new UUIDv7. An insane one (too long,
/// spaces, control characters) is replaced rather than logged.
fn request_id(req: &Request) -> HeaderValue {
    let sane = |v: &HeaderValue| {
        let b = v.as_bytes();
        (1..=128).contains(&b.len())
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || b"-_.:@/+=".contains(c))
    };
    match req.headers().get(REQUEST_ID) {
        Some(v) if sane(v) => v.clone(),
        _ => HeaderValue::try_from(uuid::Uuid::now_v7().to_string())
            .expect("a UUID is a valid header value"),
    }
}

/// Decrements `http_requests_in_flight` when the request is done (or dropped).
struct InFlight;

impl InFlight {
    fn start() -> InFlight {
        metrics::gauge!("http_requests_in_flight").increment(1.0);
        InFlight
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!("http_requests_in_flight").decrement(1.0);
    }
}

/// Per request: gives it an id (answered in `x-request-id`, and carried by the span
/// of everything logged while serving it), counts it and records its latency by
/// method, route template and status, and logs one INFO line when it is answered.
/// Headers, bodies and query strings are never logged.
pub async fn track(mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let _in_flight = InFlight::start();
    let method = method_label(req.method());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "other".to_owned(), |p| p.as_str().to_owned());
    let id = request_id(&req);
    req.headers_mut().insert(REQUEST_ID, id.clone());
    let id_str = id.to_str().unwrap_or_default().to_owned();
    // Exported as an OpenTelemetry span when SHOP_OTLP_ENDPOINT is set.
    let span = tracing::info_span!(
        "request",
        request_id = %id_str,
        otel.name = %format!("{method} {route}"),
        http.request.method = method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
    );
    let mut res = next.run(req).instrument(span.clone()).await;
    res.headers_mut().insert(REQUEST_ID, id);
    let status = res.status().as_u16();
    span.record("http.response.status_code", status);
    let elapsed = started.elapsed();
    let labels = [
        ("method", method.to_owned()),
        ("route", route.clone()),
        ("status", status.to_string()),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels).record(elapsed.as_secs_f64());
    tracing::info!(
        target: "shop::request",
        request_id = %id_str,
        method,
        route = %route,
        status,
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_outside_the_known_set_are_other() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::OPTIONS), "OPTIONS");
        for odd in ["BREW", "PROPFIND", "CONNECT", "TRACE"] {
            assert_eq!(
                method_label(&Method::from_bytes(odd.as_bytes()).unwrap()),
                "other"
            );
        }
    }

    #[test]
    fn a_sane_request_id_is_kept_and_anything_else_replaced() {
        let with = |v: &str| {
            let mut req = Request::new(axum::body::Body::empty());
            req.headers_mut()
                .insert(REQUEST_ID, HeaderValue::from_str(v).unwrap());
            request_id(&req)
        };
        assert_eq!(with("abc-123_x.y:z"), "abc-123_x.y:z");
        for bad in ["", "a b", "x\"y", &"a".repeat(129), "tab\there"] {
            let id = with(bad);
            assert_ne!(id, bad);
            assert!(uuid::Uuid::parse_str(id.to_str().unwrap()).is_ok(), "{bad}");
        }
        let none = request_id(&Request::new(axum::body::Body::empty()));
        assert!(uuid::Uuid::parse_str(none.to_str().unwrap()).is_ok());
    }
}
