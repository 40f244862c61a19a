//! Runs the mixed scenario, small, against a real shop server started in this process
//! on a temporary SQLite database with a configured admin token, and checks that every
//! request got past authentication and that the verdict passes.

mod common;

use std::time::Duration;

use shop::config::Secret;
use shop_load::runner::RunConfig;
use shop_load::scenario::{Action, Scenario, Sizes, mixed_count};
use shop_load::{LoadConfig, run_scenario, verdict};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_passes_its_verdict_with_every_request_authorized() {
    let server = common::start(|config| {
        config.admin_token = Some(Secret("the-admin-token".into()));
    })
    .await;
    let (database_url, shutdown) = (server.database_url.clone(), server.shutdown.clone());

    let requests = 800;
    let mut cfg = LoadConfig {
        url: server.url.clone(),
        run: RunConfig {
            connections: 16,
            rate: None,
            requests,
            duration: Duration::from_secs(120),
            progress: false,
        },
        sizes: Sizes {
            users: Some(30),
            products: Some(10),
            coupons: Some(10),
            ..Sizes::default()
        },
        prepare_concurrency: 8,
        database_url: Some(database_url),
        admin_token: Some(Secret("a-wrong-token".into())),
        verbose: false,
        keys: true,
    };
    let refused = run_scenario(&cfg, Scenario::Mixed).await.unwrap_err();
    assert!(
        format!("{refused:#}").contains("answered 403")
            || format!("{refused:#}").contains("answered 401"),
        "{refused:#}"
    );

    cfg.admin_token = Some(Secret("the-admin-token".into()));
    let report = run_scenario(&cfg, Scenario::Mixed).await.unwrap();
    shutdown.cancel();

    let checks = report.checks.as_deref().expect("a verdict");
    assert!(report.passed(), "{}", verdict::render(checks));
    let s = &report.summary;
    assert_eq!(report.started, requests);
    assert_eq!(s.requests, requests);
    assert_eq!(s.transport_errors, 0);
    assert_eq!(s.status(401) + s.status(403), 0, "{}", report.table());
    // 10 coupons to 30 users: 80 attempts, 10 issued, 20 sold out, 50 already issued.
    let issues = mixed_count(Action::IssueCoupon, requests);
    let orders = mixed_count(Action::OrderAndPay, requests);
    assert_eq!((issues, orders), (80, 120));
    assert_eq!(s.status(201), 10 + orders, "{}", report.table());
    assert_eq!(s.status(409), issues - 10, "{}", report.table());
    assert_eq!(
        s.status(200),
        requests - issues - orders,
        "{}",
        report.table()
    );
    assert_eq!(
        checks
            .iter()
            .filter(|c| c.name.starts_with("mixed:"))
            .count(),
        4,
        "the scenario checks ran: {}",
        verdict::render(checks)
    );
}
