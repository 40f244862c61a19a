//! The verdict after a run: the contract's invariants, read from the server's
//! database (each query counts violations and must return 0), and the scenario's own
//! checks (what it must have come to, given how many requests it started).

use serde::Serialize;

use crate::scenario::{Prepared, Scenario};
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
                let sql =
                    format!("select cast(stock as bigint) from products where id = {product}");
                out.push(match optional(db, &sql).await? {
                    Some(stock) => equal("hot-product: stock sold out", stock, 0),
                    None => missing("hot-product: stock sold out", &format!("product {product}")),
                });
            }
        }
        Scenario::SpreadOrders => {
            let paid = scalar(
                db,
                &format!(
                    "select count(distinct o.id) from orders o join order_items i on i.order_id = o.id
                     where o.status = 'PAID' and i.product_id in ({})",
                    id_list(&prepared.products)
                ),
            )
            .await?;
            out.push(equal(
                "spread-orders: paid orders == 201 answers",
                paid,
                created,
            ));
        }
    }
    Ok(out)
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
}
