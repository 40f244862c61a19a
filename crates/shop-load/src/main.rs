//! `shop-load <scenario> [options]`: load a shop server on loopback, print the
//! results, and exit non-zero when a check of the verdict fails.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use shop::config::Secret;
use shop_load::runner::RunConfig;
use shop_load::scenario::{Scenario, Sizes};
use shop_load::{LoadConfig, run_scenario};

#[derive(Debug, Parser)]
#[command(
    name = "shop-load",
    about = "Load generator for the shop server (loopback only)"
)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
    /// The server (loopback only: 127.0.0.0/8, localhost, ::1).
    #[arg(long, global = true, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Closed loop: concurrent connections. Open loop: most requests in flight.
    #[arg(long, global = true, default_value_t = 64)]
    connections: usize,
    /// Open loop at this many arrivals per second (latency from the intended send time).
    #[arg(long, global = true)]
    rate: Option<f64>,
    /// At most this many requests.
    #[arg(long, global = true, default_value_t = 20_000)]
    requests: u64,
    /// At most this many seconds.
    #[arg(long, global = true, default_value_t = 30.0)]
    duration: f64,
    /// Users to create (coupon-rush, hot-product and mixed: 1000; spread-orders: 2000).
    #[arg(long, global = true)]
    users: Option<usize>,
    /// Products to create (browse and mixed: 100; spread-orders: 1000).
    #[arg(long, global = true)]
    products: Option<usize>,
    /// coupon-rush and mixed: coupons to issue (default 100).
    #[arg(long, global = true)]
    coupons: Option<u64>,
    /// hot-product: the product's stock (default 100).
    #[arg(long, global = true)]
    stock: Option<u64>,
    /// Concurrent requests while preparing.
    #[arg(long, global = true, default_value_t = 32)]
    prepare_concurrency: usize,
    /// Print one JSON document instead of the table (no progress bar).
    #[arg(long, global = true)]
    json: bool,
    /// The server's database (sqlite://PATH or postgres://...): check the invariants.
    #[arg(long, global = true)]
    database_url: Option<String>,
    /// The server's admin token (scenarios create their products and coupons through
    /// the admin routes). Unset: read from PATH.admin-token with --database-url
    /// sqlite://PATH (where a server without SHOP_ADMIN_TOKEN stores the one it made).
    #[arg(long, global = true, env = "SHOP_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<Secret>,
    /// Send no `Idempotency-Key` (by default every mutation carries one of its own, as
    /// a client that retries safely does).
    #[arg(long, global = true)]
    no_idempotency: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("shop-load: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<bool> {
    if cli.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        anyhow::bail!("--rate must be a positive number");
    }
    if !(cli.duration.is_finite() && cli.duration > 0.0) {
        anyhow::bail!("--duration must be a positive number of seconds");
    }
    let cfg = LoadConfig {
        url: cli.url,
        run: RunConfig {
            connections: cli.connections.max(1),
            rate: cli.rate,
            requests: cli.requests,
            duration: Duration::from_secs_f64(cli.duration),
            progress: !cli.json,
        },
        sizes: Sizes {
            users: cli.users,
            products: cli.products,
            coupons: cli.coupons,
            stock: cli.stock,
        },
        prepare_concurrency: cli.prepare_concurrency.max(1),
        database_url: cli.database_url,
        admin_token: cli.admin_token,
        verbose: !cli.json,
        keys: !cli.no_idempotency,
    };
    let report = run_scenario(&cfg, cli.scenario).await?;
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(report.passed())
}
