//! The verdict after a run: the contract's invariants, read from the server's
//! database (each query counts violations and must return 0), and the scenario's own
//! checks (what it must have come to, given how many requests it started).

use serde::Serialize;

use crate::scenario::{Prepared, Scenario};
use crate::stats::Summary;

/// The invariants: (what a nonzero count means, SQL that counts it). The same list as
/// `check_invariants` in the shop crate's tests/api/helpers.rs.
pub const INVARIANTS: &[(&str, &str)] = &[
    (
        "a balance below zero",
        "select count(*) from users where balance < 0",
    ),
    (
        "a balance that differs from its ledger",
        "select count(*) from users u where u.balance <>
           (select coalesce(cast(sum(l.amount) as bigint), 0) from balance_ledger l where l.user_id = u.id)",
    ),
    (
        "a ledger entry whose balanceAfter is not the running sum",
        "select count(*) from balance_ledger l where l.balance_after <>
           (select cast(sum(m.amount) as bigint) from balance_ledger m where m.user_id = l.user_id and m.id <= l.id)",
    ),
    (
        "stock below zero",
        "select count(*) from products where stock < 0",
    ),
    (
        "stock that is not adjustments minus what PENDING and PAID orders hold",
        "select count(*) from products p where p.stock <>
           (select coalesce(cast(sum(a.delta) as bigint), 0) from stock_adjustments a where a.product_id = p.id)
           - (select coalesce(cast(sum(i.quantity) as bigint), 0) from order_items i join orders o on o.id = i.order_id
              where i.product_id = p.id and o.status in ('PENDING', 'PAID'))",
    ),
    (
        "a coupon issued above its total, or a counter that is not the issued count",
        "select count(*) from coupons c where c.issued_quantity > c.total_quantity
           or c.issued_quantity <> (select count(*) from user_coupons uc where uc.coupon_id = c.id)",
    ),
    (
        "a PAID order without exactly one PAYMENT of its final amount",
        "select count(*) from orders o where o.status = 'PAID' and
           (select count(*) from balance_ledger l where l.order_id = o.id and l.kind = 'PAYMENT' and l.amount = -o.final_amount) <> 1",
    ),
    (
        "a PAID order without exactly one order.paid event",
        "select count(*) from orders o where o.status = 'PAID' and
           (select count(*) from outbox_events e where e.order_id = o.id and e.event_type = 'order.paid') <> 1",
    ),
    (
        "a payment entry for an order that was never paid",
        "select count(*) from balance_ledger l join orders o on o.id = l.order_id
           where l.kind = 'PAYMENT' and o.paid_at is null",
    ),
    (
        "a cancelled paid order without exactly one refund",
        "select count(*) from orders o where o.status = 'CANCELLED' and o.paid_at is not null and
           (select count(*) from balance_ledger l where l.order_id = o.id and l.kind = 'REFUND' and l.amount = o.final_amount) <> 1",
    ),
    (
        "a coupon held by an order that is not PENDING or PAID, or not its own",
        "select count(*) from user_coupons uc left join orders o on o.id = uc.order_id
           where uc.order_id is not null and (o.id is null or o.status not in ('PENDING', 'PAID')
           or o.user_coupon_id <> uc.id or o.user_id <> uc.user_id)",
    ),
    (
        "a PENDING or PAID order with a coupon that it does not hold",
        "select count(*) from orders o join user_coupons uc on uc.id = o.user_coupon_id
           where o.status in ('PENDING', 'PAID') and (uc.order_id is null or uc.order_id <> o.id)",
    ),
    (
        "hourly sales that differ from the PAID orders they roll up",
        "select count(*) from (
           select product_id, hour, cast(sum(q) as bigint) as diff from (
             select product_id, hour, quantity as q from product_sales_hourly
             union all
             select i.product_id, o.paid_at / 3600000, -i.quantity
             from orders o join order_items i on i.order_id = o.id where o.status = 'PAID'
           ) x group by product_id, hour
         ) d where d.diff <> 0",
    ),
    (
        "an order whose final amount is not total minus discount",
        "select count(*) from orders where final_amount <> total_amount - discount_amount or final_amount < 0",
    ),
];

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
