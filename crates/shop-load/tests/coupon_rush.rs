//! Runs the coupon-rush scenario, small, against a real shop server started in this
//! process on a temporary SQLite database, and checks the verdict.

mod common;

use std::time::Duration;

use shop_load::runner::RunConfig;
use shop_load::scenario::{Scenario, Sizes};
use shop_load::{LoadConfig, run_scenario, verdict};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coupon_rush_issues_exactly_the_quantity() {
    let server = common::start(|_| {}).await;
    let (database_url, shutdown) = (server.database_url.clone(), server.shutdown.clone());

    let cfg = LoadConfig {
        url: server.url.clone(),
        run: RunConfig {
            connections: 32,
            rate: None,
            requests: 400,
            duration: Duration::from_secs(120),
            progress: false,
        },
        sizes: Sizes {
            users: Some(200),
            coupons: Some(20),
            ..Sizes::default()
        },
        prepare_concurrency: 16,
        database_url: Some(database_url),
        // Read from shop.db.admin-token, where the server stored the one it generated.
        admin_token: None,
        verbose: false,
        keys: true,
    };
    let report = run_scenario(&cfg, Scenario::CouponRush).await.unwrap();
    shutdown.cancel();

    let checks = report.checks.as_deref().expect("a verdict");
    assert!(report.passed(), "{}", verdict::render(checks));
    assert_eq!(report.started, 400);
    assert_eq!(report.summary.requests, 400);
    assert_eq!(report.summary.status(201), 20, "{}", report.table());
    assert_eq!(report.summary.status(409), 380, "{}", report.table());
    assert_eq!(report.summary.transport_errors, 0);
    assert_eq!(
        report.summary.by_code.values().sum::<u64>(),
        380,
        "every refusal carries a code"
    );
    assert!(
        checks
            .iter()
            .any(|c| c.name.starts_with("coupon-rush: issued ==") && c.pass),
        "the scenario checks ran"
    );
}
