//! The contract's invariants as SQL: each query counts violations and must return 0.
//! The integration tests and the load tool's verdict both run this list against a
//! database after racing requests at the server.

use crate::db::Db;

pub const CHECKS: &[(&str, &str)] = &[
    (
        "a balance below zero",
        "select count(*) from users where balance < 0",
    ),
    (
        "a balance that differs from its ledger",
        "select count(*) from users u
           left join (select user_id, cast(sum(amount) as bigint) as total
                      from balance_ledger group by user_id) l on l.user_id = u.id
           where u.balance <> coalesce(l.total, 0)",
    ),
    (
        "a ledger entry whose balanceAfter is not the running sum",
        "select count(*) from balance_ledger l where l.balance_after <>
           (select cast(sum(m.amount) as bigint) from balance_ledger m where m.user_id = l.user_id and m.id <= l.id)",
    ),
    (
        "stock below zero",
        "select count(*) from variants where stock < 0",
    ),
    (
        "a variant's stock that is not its adjustments minus what open and paid orders hold",
        // Grouped once, not one subquery per variant: this runs on tables of a million
        // products.
        "select count(*) from variants v
           left join (select variant_id, cast(sum(delta) as bigint) as added
                      from stock_adjustments group by variant_id) a on a.variant_id = v.id
           left join (select i.variant_id, cast(sum(i.quantity) as bigint) as held
                      from order_items i join orders o on o.id = i.order_id
                      where o.status in ('PENDING', 'PAID', 'SHIPPED', 'DELIVERED')
                      group by i.variant_id) h on h.variant_id = v.id
           where v.stock <> coalesce(a.added, 0) - coalesce(h.held, 0)",
    ),
    (
        "a product whose price is not its lowest variant price",
        "select count(*) from products p
           where p.price <> (select min(v.price) from variants v where v.product_id = p.id)",
    ),
    (
        "a coupon issued above its total, or a counter that is not the issued count",
        "select count(*) from coupons c where c.issued_quantity > c.total_quantity
           or c.issued_quantity <> (select count(*) from user_coupons uc where uc.coupon_id = c.id)",
    ),
    (
        "a paid order without exactly one PAYMENT of its final amount",
        "select count(*) from orders o where o.status in ('PAID', 'SHIPPED', 'DELIVERED') and
           (select count(*) from balance_ledger l where l.order_id = o.id and l.kind = 'PAYMENT' and l.amount = -o.final_amount) <> 1",
    ),
    (
        "a paid order without exactly one order.paid event",
        "select count(*) from orders o where o.status in ('PAID', 'SHIPPED', 'DELIVERED') and
           (select count(*) from outbox_events e where e.order_id = o.id and e.event_type = 'order.paid') <> 1",
    ),
    (
        "a paid order without exactly one succeeded payment of its final amount",
        "select count(*) from orders o where o.paid_at is not null and
           (select count(*) from payments p where p.order_id = o.id and p.status = 'SUCCEEDED'
              and p.amount = o.final_amount) <> 1",
    ),
    (
        "a shipped or delivered order without its events, in order",
        "select count(*) from orders o where o.status in ('SHIPPED', 'DELIVERED') and (
           (select count(*) from outbox_events e where e.order_id = o.id and e.event_type = 'order.shipped') <> 1
           or (o.status = 'DELIVERED' and
               (select count(*) from outbox_events e where e.order_id = o.id and e.event_type = 'order.delivered') <> 1))",
    ),
    (
        "a ledger entry whose balance before is not its balance after minus its amount",
        "select count(*) from balance_ledger where balance_before <> balance_after - amount",
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
        "a coupon held by an order that is not open or paid, or not its own",
        "select count(*) from user_coupons uc left join orders o on o.id = uc.order_id
           where uc.order_id is not null and (o.id is null
           or o.status not in ('PENDING', 'PAID', 'SHIPPED', 'DELIVERED')
           or o.user_coupon_id <> uc.id or o.user_id <> uc.user_id)",
    ),
    (
        "an open or paid order with a coupon that it does not hold",
        "select count(*) from orders o join user_coupons uc on uc.id = o.user_coupon_id
           where o.status in ('PENDING', 'PAID', 'SHIPPED', 'DELIVERED')
             and (uc.order_id is null or uc.order_id <> o.id)",
    ),
    (
        "hourly sales (units or won) that differ from the paid orders they roll up",
        "select count(*) from (
           select product_id, hour, cast(sum(q) as bigint) as dq, cast(sum(w) as bigint) as dw
           from (
             select product_id, hour, quantity as q, amount as w from product_sales_hourly
             union all
             select i.product_id, o.paid_at / 3600000, -i.quantity, -i.amount
             from orders o join order_items i on i.order_id = o.id
             where o.status in ('PAID', 'SHIPPED', 'DELIVERED')
           ) x group by product_id, hour
         ) d where d.dq <> 0 or d.dw <> 0",
    ),
    (
        "an order whose final amount is not total minus discount",
        "select count(*) from orders where final_amount <> total_amount - discount_amount or final_amount < 0",
    ),
];

/// Runs every check; returns (name, violations) for each.
pub async fn violations(db: &Db) -> Result<Vec<(&'static str, i64)>, sqlx::Error> {
    let mut out = Vec::with_capacity(CHECKS.len());
    for (name, sql) in CHECKS {
        let (n,): (i64,) = sqlx::query_as(sql).fetch_one(db.read()).await?;
        out.push((*name, n));
    }
    Ok(out)
}
