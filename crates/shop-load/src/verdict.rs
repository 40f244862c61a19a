//! The verdict after a run: the contract's invariants, read from the server's
//! database (each query counts violations and must return 0), and the scenario's own
//! checks (what it must have come to, given how many requests it started).

use serde::Serialize;

use crate::scenario::{Action, MIX_CHARGE, Prepared, Scenario, mixed_count};
use crate::stats::Summary;

/// The contract's invariants, from the server library (shared with its tests).
pub use shop::invariants::CHECKS as INVARIANTS;

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckOutcome {
    pub name: String,
    pub pass: bool,
    /// What was found (and wanted).
    pub detail: String,
}

/// A violation count: passes when 0.
pub fn zero(name: &str, count: i64) -> CheckOutcome {
    CheckOutcome {
        name: name.to_string(),
        pass: count == 0,
        detail: format!("{count} found"),
    }
}

/// A value that must equal `want`.
pub fn equal(name: &str, got: i64, want: i64) -> CheckOutcome {
    CheckOutcome {
        name: name.to_string(),
        pass: got == want,
        detail: format!("got {got}, want {want}"),
    }
}

/// Evaluates violation counts ((name, count) pairs): each passes when 0.
pub fn evaluate(counts: &[(&str, i64)]) -> Vec<CheckOutcome> {
    counts.iter().map(|(name, n)| zero(name, *n)).collect()
}

/// Whether every check passed.
pub fn all_pass(outcomes: &[CheckOutcome]) -> bool {
    outcomes.iter().all(|o| o.pass)
}

/// One line per check, PASS or FAIL.
pub fn render(outcomes: &[CheckOutcome]) -> String {
    outcomes
        .iter()
        .map(|o| {
            format!(
                "{}  {} ({})\n",
                if o.pass { "PASS" } else { "FAIL" },
                o.name,
                o.detail
            )
        })
        .collect()
}

/// The one value `sql` selects; `None` when it selects no row.
async fn optional(db: &shop::db::Db, sql: &str) -> anyhow::Result<Option<i64>> {
    let row: Option<(i64,)> = sqlx::query_as(sql)
        .fetch_optional(db.read())
        .await
        .map_err(|e| anyhow::anyhow!("{e}: {sql}"))?;
    Ok(row.map(|(n,)| n))
}

async fn scalar(db: &shop::db::Db, sql: &str) -> anyhow::Result<i64> {
    optional(db, sql)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no row: {sql}"))
}

/// A row the scenario created that the database does not have (the wrong database?).
fn missing(name: &str, what: &str) -> CheckOutcome {
    CheckOutcome {
        name: name.to_string(),
        pass: false,
        detail: format!("{what} not found in this database"),
    }
}

/// Runs `checks` ((name, SQL counting violations)) against `db`.
pub async fn run_sql_checks(
    db: &shop::db::Db,
    checks: &[(&str, &str)],
) -> anyhow::Result<Vec<CheckOutcome>> {
    let mut counts = Vec::with_capacity(checks.len());
    for (name, sql) in checks {
        counts.push((*name, scalar(db, sql).await?));
    }
    Ok(evaluate(&counts))
}

fn id_list(ids: &[i64]) -> String {
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

/// The scenario's own checks, after `started` requests with answers `summary`.
pub async fn scenario_checks(
    db: &shop::db::Db,
    prepared: &Prepared,
    started: u64,
    summary: &Summary,
) -> anyhow::Result<Vec<CheckOutcome>> {
    let attempts = started;
    let started = i64::try_from(started)?;
    let created = i64::try_from(summary.status(201))?;
    let quantity = i64::try_from(prepared.quantity)?;
    let mut out = Vec::new();
    match prepared.scenario {
        Scenario::Browse => {}
        Scenario::CouponRush => {
            let coupon = prepared.coupon.unwrap_or(0);
            let sql =
                format!("select cast(issued_quantity as bigint) from coupons where id = {coupon}");
            let Some(issued) = optional(db, &sql).await? else {
                out.push(missing(
                    "coupon-rush: the coupon",
                    &format!("coupon {coupon}"),
                ));
                return Ok(out);
            };
            let tried = started.min(prepared.users.len() as i64);
            out.push(equal(
                "coupon-rush: issued == min(users who tried, quantity)",
                issued,
                tried.min(quantity),
            ));
            out.push(equal("coupon-rush: issued == 201 answers", issued, created));
        }
        Scenario::HotProduct => {
            let product = prepared.products[0];
            let paid = scalar(
                db,
                &format!(
                    "select count(distinct o.id) from orders o join order_items i on i.order_id = o.id
                     where o.status = 'PAID' and i.product_id = {product}"
                ),
            )
            .await?;
            out.push(equal(
                "hot-product: paid orders == min(buyers, stock)",
                paid,
                started.min(quantity),
            ));
            out.push(equal(
                "hot-product: paid orders == 201 answers",
                paid,
                created,
            ));
            if started >= quantity {
                let sql = format!(
                    "select cast(sum(stock) as bigint) from variants where product_id = {product}"
                );
                out.push(match optional(db, &sql).await? {
                    Some(stock) => equal("hot-product: stock sold out", stock, 0),
                    None => missing("hot-product: stock sold out", &format!("product {product}")),
                });
            }
        }
        Scenario::SpreadOrders => {
            let paid = paid_orders(db, &prepared.products).await?;
            out.push(equal(
                "spread-orders: paid orders == 201 answers",
                paid,
                created,
            ));
        }
        Scenario::Mixed => {
            let coupon = prepared.coupon.unwrap_or(0);
            let sql =
                format!("select cast(issued_quantity as bigint) from coupons where id = {coupon}");
            let Some(issued) = optional(db, &sql).await? else {
                out.push(missing("mixed: the coupon", &format!("coupon {coupon}")));
                return Ok(out);
            };
            let count = |action| i64::try_from(mixed_count(action, attempts));
            // Attempt n goes to user n % users: the first `users` attempts are distinct.
            let tried = count(Action::IssueCoupon)?.min(prepared.users.len() as i64);
            out.push(equal(
                "mixed: coupons issued == min(users who tried, quantity)",
                issued,
                tried.min(quantity),
            ));
            let paid = paid_orders(db, &prepared.products).await?;
            out.push(equal(
                "mixed: paid orders == order attempts (stock and balances cover each)",
                paid,
                count(Action::OrderAndPay)?,
            ));
            out.push(equal(
                "mixed: paid orders + coupons issued == 201 answers",
                paid + issued,
                created,
            ));
            let ids: Vec<i64> = prepared.users.iter().map(|u| u.id).collect();
            let charges = scalar(
                db,
                &format!(
                    "select count(*) from balance_ledger where kind = 'CHARGE'
                     and amount = {MIX_CHARGE} and user_id in ({})",
                    id_list(&ids)
                ),
            )
            .await?;
            out.push(equal(
                "mixed: charges applied == charge attempts",
                charges,
                count(Action::Charge)?,
            ));
        }
        Scenario::Cart => {
            let paid = paid_orders(db, &prepared.products).await?;
            out.push(equal(
                "cart: paid orders == checkouts answered 201",
                paid,
                created,
            ));
            let ids: Vec<i64> = prepared.users.iter().map(|u| u.id).collect();
            let leftover = scalar(
                db,
                &format!(
                    "select count(*) from cart_items i join orders o on o.user_id = i.user_id
                     join order_items oi on oi.order_id = o.id and oi.variant_id = i.variant_id
                     where i.user_id in ({}) and i.added_at <= o.created_at",
                    id_list(&ids)
                ),
            )
            .await?;
            out.push(zero(
                "cart: a line ordered by a checkout still in its cart",
                leftover,
            ));
        }
    }
    Ok(out)
}

/// PAID orders of any of `products`.
async fn paid_orders(db: &shop::db::Db, products: &[i64]) -> anyhow::Result<i64> {
    scalar(
        db,
        &format!(
            "select count(distinct o.id) from orders o join order_items i on i.order_id = o.id
             where o.status = 'PAID' and i.product_id in ({})",
            id_list(products)
        ),
    )
    .await
}

/// Connects to `database_url` (through the server's own `Db`, whose migrations are
/// already applied there) and runs the invariants and the scenario's checks.
pub async fn verdict(
    database_url: &str,
    prepared: &Prepared,
    started: u64,
    summary: &Summary,
) -> anyhow::Result<Vec<CheckOutcome>> {
    let db = shop::db::Db::connect(database_url, 4, std::time::Duration::from_secs(5)).await?;
    let mut out = run_sql_checks(&db, INVARIANTS).await?;
    out.extend(scenario_checks(&db, prepared, started, summary).await?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonzero_count_fails() {
        let outcomes = evaluate(&[("fine", 0), ("broken", 3), ("also fine", 0)]);
        assert_eq!(outcomes.len(), 3);
        assert!(outcomes[0].pass && outcomes[2].pass);
        assert!(!outcomes[1].pass);
        assert!(!all_pass(&outcomes));
        let text = render(&outcomes);
        assert!(text.contains("FAIL  broken (3 found)"), "{text}");
        assert!(text.contains("PASS  fine"), "{text}");
    }

    #[test]
    fn all_zero_passes() {
        assert!(all_pass(&evaluate(&[("a", 0), ("b", 0)])));
        assert!(all_pass(&[]));
        assert!(!equal("x", 19, 20).pass);
        assert!(equal("x", 20, 20).pass);
    }

    #[tokio::test]
    async fn invariants_run_on_a_fresh_database() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("shop.db").display());
        let db = shop::db::Db::connect(&url, 2, std::time::Duration::from_secs(5))
            .await
            .unwrap();
        let outcomes = run_sql_checks(&db, INVARIANTS).await.unwrap();
        assert_eq!(outcomes.len(), INVARIANTS.len());
        assert!(all_pass(&outcomes), "{}", render(&outcomes));
        let broken = run_sql_checks(&db, &[("always one", "select cast(1 as bigint)")])
            .await
            .unwrap();
        assert!(!all_pass(&broken));
    }

    #[tokio::test]
    async fn mixed_checks_compare_the_database_with_the_attempts() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("shop.db").display());
        let db = shop::db::Db::connect(&url, 2, std::time::Duration::from_secs(5))
            .await
            .unwrap();
        let users: Vec<crate::scenario::LoadUser> = (1..=3)
            .map(|id| crate::scenario::LoadUser {
                id,
                auth: crate::scenario::bearer("t").unwrap(),
            })
            .collect();
        let prepared = Prepared::new(
            Scenario::Mixed,
            "http://127.0.0.1:1",
            users,
            vec![1],
            Some(9),
            5,
        )
        .unwrap();
        let empty = crate::stats::Recorder::default().summary(std::time::Duration::from_secs(1));

        let outcomes = scenario_checks(&db, &prepared, 0, &empty).await.unwrap();
        assert_eq!(outcomes.len(), 1, "{}", render(&outcomes));
        assert!(!outcomes[0].pass, "no coupon 9 in this database");

        let mut tx = db.begin().await.unwrap();
        sqlx::query(
            "insert into coupons (id, name, discount_type, discount_value, total_quantity,
               valid_days, created_at) values (9, 'c', 'FIXED', 1000, 5, 30, 0)",
        )
        .execute(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let outcomes = scenario_checks(&db, &prepared, 0, &empty).await.unwrap();
        assert_eq!(outcomes.len(), 4, "{}", render(&outcomes));
        assert!(
            all_pass(&outcomes),
            "nothing tried, nothing done: {}",
            render(&outcomes)
        );

        // One cycle of the mix: 4 issue attempts (3 users), 6 orders, 1 charge, none
        // of which reached this database.
        let outcomes = scenario_checks(&db, &prepared, 40, &empty).await.unwrap();
        let failed: Vec<&str> = outcomes
            .iter()
            .filter(|o| !o.pass)
            .map(|o| o.detail.as_str())
            .collect();
        assert_eq!(
            failed,
            ["got 0, want 3", "got 0, want 6", "got 0, want 1"],
            "{}",
            render(&outcomes)
        );
    }
}
