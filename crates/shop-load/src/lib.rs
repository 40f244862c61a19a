//! `shop-load`: drives a running shop server on loopback with one of a few
//! scenarios, sums up throughput and latency, and checks the contract's invariants
//! by reading the server's database.

pub mod runner; // closed and open loop
pub mod scenario; // preparation and request builders
pub mod stats; // histogram and summary
pub mod verdict; // invariant and scenario checks

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;
use shop::config::Secret;

use crate::runner::RunConfig;
use crate::scenario::{Scenario, Sizes};
use crate::stats::Summary;
use crate::verdict::CheckOutcome;

/// Refuses any target that is not this machine: the host must be `localhost`, an
/// address in 127.0.0.0/8, or `::1`. Returns the URL without a trailing slash.
pub fn check_loopback(url: &str) -> anyhow::Result<String> {
    let parsed = reqwest::Url::parse(url).with_context(|| format!("bad --url {url}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        bail!("--url must be http:// or https://, not {url}");
    }
    let host = parsed.host_str().context("--url has no host")?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        bail!("refusing to load {host}: only loopback targets (127.0.0.0/8, localhost, ::1)");
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// The admin token for preparing `scenario`: `explicit` (`--admin-token` or
/// `SHOP_ADMIN_TOKEN`) when given and not empty; otherwise, with `database_url`
/// `sqlite://PATH`, the token the server generated and stored in `PATH.admin-token`.
/// Fails with what to do when there is neither.
pub fn admin_token(
    scenario: Scenario,
    explicit: Option<&str>,
    database_url: Option<&str>,
) -> anyhow::Result<String> {
    if let Some(token) = explicit.map(str::trim).filter(|t| !t.is_empty()) {
        return Ok(token.to_string());
    }
    let needs = format!(
        "{} creates {} through /api/v1/admin/..., which needs the server's admin token",
        scenario.name(),
        scenario.admin_creates()
    );
    let sqlite = database_url.and_then(|url| {
        url.strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .map(|rest| rest.split('?').next().unwrap_or(rest))
    });
    let Some(db_path) = sqlite else {
        bail!(
            "{needs}: pass --admin-token (or set SHOP_ADMIN_TOKEN) to the server's \
             SHOP_ADMIN_TOKEN, or --database-url sqlite://PATH of a server that generated \
             its own (read from PATH.admin-token)"
        );
    };
    let path = shop::auth::admin_token_path(Path::new(db_path));
    let stored = std::fs::read_to_string(&path).map_err(|e| {
        anyhow::anyhow!(
            "{needs}: no --admin-token (or SHOP_ADMIN_TOKEN) was given and {} could not be \
             read ({e}); a server started with SHOP_ADMIN_TOKEN stores none: pass that \
             value with --admin-token",
            path.display()
        )
    })?;
    let stored = stored.trim();
    if stored.is_empty() {
        bail!("{needs}: {} is empty; pass --admin-token", path.display());
    }
    Ok(stored.to_string())
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub url: String,
    pub run: RunConfig,
    pub sizes: Sizes,
    /// Concurrent requests while preparing.
    pub prepare_concurrency: usize,
    /// When set, the verdict reads this database after the run (and, on SQLite, the
    /// admin token is read beside it when `admin_token` is unset).
    pub database_url: Option<String>,
    /// The admin token (`--admin-token`, `SHOP_ADMIN_TOKEN`); see [`admin_token`].
    pub admin_token: Option<Secret>,
    /// Print preparation steps to stderr.
    pub verbose: bool,
    /// Send an `Idempotency-Key` with every mutation, as a client that retries safely
    /// does (`--no-idempotency` turns it off, to compare).
    pub keys: bool,
}

/// A run's results.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub scenario: Scenario,
    /// Whether mutations carried an `Idempotency-Key`.
    pub keyed: bool,
    pub url: String,
    pub connections: usize,
    pub rate: Option<f64>,
    /// Requests started.
    pub started: u64,
    pub summary: Summary,
    /// `None` when no database was given.
    pub checks: Option<Vec<CheckOutcome>>,
}

impl Report {
    /// True unless a check failed.
    pub fn passed(&self) -> bool {
        self.checks.as_deref().is_none_or(verdict::all_pass)
    }

    pub fn table(&self) -> String {
        let mode = match self.rate {
            Some(rate) => format!(
                "open loop at {rate} req/s, at most {} in flight",
                self.connections
            ),
            None => format!("closed loop, {} connections", self.connections),
        };
        let mode = if self.keyed {
            format!("{mode}, every mutation keyed")
        } else {
            format!("{mode}, no Idempotency-Key")
        };
        let mut out = format!(
            "scenario     {} against {} ({mode})\n{}",
            self.scenario.name(),
            self.url,
            self.summary.table()
        );
        match &self.checks {
            Some(checks) => {
                out.push_str("\nverdict\n");
                out.push_str(&verdict::render(checks));
            }
            None => out.push_str("\nverdict      skipped (no --database-url)\n"),
        }
        out
    }
}

/// An HTTP client for loopback: no proxy, no redirects (so it cannot be led off this
/// machine), connections enough for the run.
pub fn client(connections: usize) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(connections.max(1))
        .timeout(Duration::from_secs(30))
        .build()?)
}

/// Prepares `scenario`, runs it, and (with a database URL) gives the verdict.
pub async fn run_scenario(cfg: &LoadConfig, scenario: Scenario) -> anyhow::Result<Report> {
    let url = check_loopback(&cfg.url)?;
    let admin = scenario::bearer(&admin_token(
        scenario,
        cfg.admin_token.as_ref().map(Secret::expose),
        cfg.database_url.as_deref(),
    )?)
    .context("the admin token")?;
    let client = client(cfg.run.connections.max(cfg.prepare_concurrency))?;
    if cfg.verbose {
        eprintln!("preparing {} on {url} ...", scenario.name());
    }
    let prepared = scenario::prepare(
        &client,
        &url,
        scenario,
        &cfg.sizes,
        cfg.run.requests,
        cfg.prepare_concurrency,
        &admin,
    )
    .await
    .context("preparing the scenario")?;
    if cfg.verbose {
        eprintln!(
            "prepared {} users, {} products{}; running ...",
            prepared.users.len(),
            prepared.products.len(),
            prepared
                .coupon
                .map(|c| format!(", coupon {c} of {}", prepared.quantity))
                .unwrap_or_default()
        );
    }
    let prepared = if cfg.keys {
        prepared
    } else {
        prepared.without_keys()
    };
    let shared = std::sync::Arc::new(prepared.clone());
    let run_client = client.clone();
    let result = runner::run(&cfg.run, move |i| shared.request(&run_client, i)).await;
    let checks = match &cfg.database_url {
        Some(db) => Some(
            verdict::verdict(db, &prepared, result.started, &result.summary)
                .await
                .context("checking the invariants")?,
        ),
        None => None,
    };
    Ok(Report {
        scenario,
        keyed: cfg.keys,
        url,
        connections: cfg.run.connections,
        rate: cfg.run.rate,
        started: result.started,
        summary: result.summary,
        checks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_targets_are_accepted() {
        for url in [
            "http://127.0.0.1:8080",
            "http://127.9.9.9",
            "http://localhost:8080/",
            "http://LOCALHOST",
            "http://[::1]:8080",
        ] {
            assert!(check_loopback(url).is_ok(), "{url}");
        }
        assert_eq!(
            check_loopback("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
    }

    #[test]
    fn other_targets_are_refused() {
        for url in [
            "http://10.0.0.1:8080",
            "http://example.com",
            "http://192.168.1.1",
            "http://[::2]",
            "http://0.0.0.0:8080",
            "http://localhost.example.com",
            "http://127.0.0.1.nip.io",
            "ftp://127.0.0.1",
            "not a url",
        ] {
            assert!(check_loopback(url).is_err(), "{url}");
        }
    }

    #[test]
    fn the_admin_token_is_the_explicit_one_or_the_one_beside_the_sqlite_database() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("shop.db");
        let url = format!("sqlite://{}", db.display());
        let mixed = Scenario::Mixed;

        let err = admin_token(mixed, None, Some(&url))
            .unwrap_err()
            .to_string();
        assert!(err.contains("shop.db.admin-token"), "{err}");
        assert!(err.contains("--admin-token"), "{err}");

        std::fs::write(dir.path().join("shop.db.admin-token"), "stored-token\n").unwrap();
        assert_eq!(
            admin_token(mixed, None, Some(&url)).unwrap(),
            "stored-token"
        );
        let with_query = format!("sqlite:{}?mode=rwc", db.display());
        assert_eq!(
            admin_token(mixed, None, Some(&with_query)).unwrap(),
            "stored-token"
        );
        assert_eq!(
            admin_token(mixed, Some("given"), Some(&url)).unwrap(),
            "given"
        );
        assert_eq!(
            admin_token(mixed, Some(""), Some(&url)).unwrap(),
            "stored-token"
        );
    }

    #[test]
    fn without_an_admin_token_the_error_says_what_to_do() {
        for db in [None, Some("postgres://postgres@127.0.0.1/shop")] {
            let err = admin_token(Scenario::Browse, None, db)
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("browse creates its products"), "{err}");
            assert!(err.contains("--admin-token"), "{err}");
            assert!(err.contains("SHOP_ADMIN_TOKEN"), "{err}");
        }
        assert_eq!(
            admin_token(Scenario::Browse, Some(" t "), None).unwrap(),
            "t"
        );
    }
}
