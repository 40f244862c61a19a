//! The order flows. Each function runs inside the caller's transaction and either
//! finishes its whole change or returns an error (the caller then drops the
//! transaction, which rolls everything back: nothing half-applied).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::AnyConnection;

use super::store::{self, NewOrder};
use super::{Order, OrderError, OrderItem, OrderStatus};
use crate::balance::{self, LedgerKind};
use crate::clock::{from_millis, to_millis};
use crate::coupon::{self, UserCouponStatus};
use crate::ids::{OrderId, ProductId, UserCouponId, UserId};
use crate::money::{self, Won};
use crate::outbox;
use crate::product;

/// One requested line.
#[derive(Debug, Clone, Copy)]
pub struct Line {
    pub product: ProductId,
    pub quantity: i64,
}

/// A validated order request.
#[derive(Debug, Clone)]
pub struct PlaceOrder {
    pub user: UserId,
    pub lines: Vec<Line>,
    pub user_coupon: Option<UserCouponId>,
    pub pay: bool,
}

/// Limits from configuration.
#[derive(Debug, Clone, Copy)]
pub struct OrderRules {
    pub max_items: usize,
    pub max_quantity: i64,
    pub ttl: TimeDelta,
}

/// Checks the shape of a request: 1..=max items, quantities 1..=max, positive ids.
pub fn validate_lines(lines: &[Line], rules: OrderRules) -> Result<(), OrderError> {
    if lines.is_empty() || lines.len() > rules.max_items {
        return Err(OrderError::Invalid(format!(
            "an order has 1..={} items",
            rules.max_items
        )));
    }
    for line in lines {
        if line.product.0 <= 0 {
            return Err(OrderError::Invalid(
                "productId must be a positive id".into(),
            ));
        }
        if !(1..=rules.max_quantity).contains(&line.quantity) {
            return Err(OrderError::Invalid(format!(
                "quantity must be 1..={}",
                rules.max_quantity
            )));
        }
    }
    Ok(())
}

/// Demand summed per product, in product-id order (every transaction takes product
/// rows in the same order, so two orders cannot deadlock on PostgreSQL).
pub fn demand(lines: &[Line]) -> BTreeMap<ProductId, i64> {
    super::per_product(lines.iter().map(|l| (l.product, l.quantity)))
}

/// Places an order: holds all its stock and its coupon, or nothing. With `pay`, also
/// pays it in the same transaction.
pub async fn place(
    conn: &mut AnyConnection,
    req: &PlaceOrder,
    rules: OrderRules,
    now: DateTime<Utc>,
) -> Result<Order, OrderError> {
    validate_lines(&req.lines, rules)?;
    if !balance::store::user_exists(&mut *conn, req.user).await? {
        return Err(OrderError::UserNotFound(req.user));
    }
    let mut priced = BTreeMap::new();
    for (&product_id, &quantity) in &demand(&req.lines) {
        match product::store::take_stock(&mut *conn, product_id, quantity).await? {
            Some(p) => {
                priced.insert(product_id, p);
            }
            None => {
                return Err(match product::store::get(&mut *conn, product_id).await {
                    Ok(_) => OrderError::InsufficientStock(product_id),
                    Err(product::ProductError::NotFound(_)) => {
                        OrderError::ProductNotFound(product_id)
                    }
                    Err(product::ProductError::Db(e)) => OrderError::Db(e),
                    Err(_) => OrderError::InsufficientStock(product_id),
                });
            }
        }
    }
    let items: Vec<OrderItem> = req
        .lines
        .iter()
        .map(|line| {
            let p = &priced[&line.product];
            let amount = p.price.checked_mul(line.quantity).ok_or_else(overflow)?;
            Ok(OrderItem {
                product_id: line.product,
                name: p.name.clone(),
                unit_price: p.price,
                quantity: line.quantity,
                amount,
            })
        })
        .collect::<Result<_, OrderError>>()?;
    let total = money::order_total(items.iter().map(|i| (i.unit_price, i.quantity)))
        .ok_or_else(overflow)?;

    let discount = match req.user_coupon {
        None => Won::ZERO,
        Some(id) => {
            let c = coupon::store::get_user_coupon(&mut *conn, id, now)
                .await?
                .filter(|c| c.user_id == req.user)
                .ok_or(OrderError::CouponNotUsable("not one of the user's coupons"))?;
            match c.status {
                UserCouponStatus::Available => {}
                UserCouponStatus::Used => return Err(OrderError::CouponNotUsable("already used")),
                UserCouponStatus::Expired => return Err(OrderError::CouponNotUsable("expired")),
            }
            if total < c.min_order_amount {
                return Err(OrderError::CouponNotUsable(
                    "the order is under the minimum amount",
                ));
            }
            money::discount(c.discount_type, c.discount_value, total)
        }
    };

    let now_ms = to_millis(now);
    let expires_at_ms = to_millis(now + rules.ttl);
    let paid_at_ms = req.pay.then_some(now_ms);
    let id = store::insert(
        conn,
        &NewOrder {
            user: req.user,
            user_coupon: req.user_coupon,
            total,
            discount,
            items: &items,
            created_at_ms: now_ms,
            expires_at_ms,
            paid_at_ms,
        },
    )
    .await?;
    if let Some(c) = req.user_coupon {
        // Guarded: only one order can take a free coupon, however many race for it.
        if !coupon::store::hold(&mut *conn, c, req.user, id, now_ms).await? {
            return Err(OrderError::CouponNotUsable("already used"));
        }
    }
    // The order as a read would give it back (times at millisecond precision), without
    // reading it back.
    let order = Order {
        id,
        user_id: req.user,
        status: if req.pay {
            OrderStatus::Paid
        } else {
            OrderStatus::Pending
        },
        items,
        user_coupon_id: req.user_coupon,
        total_amount: total,
        discount_amount: discount,
        final_amount: Won(total.0 - discount.0),
        created_at: from_millis(now_ms),
        paid_at: paid_at_ms.map(from_millis),
        expires_at: from_millis(expires_at_ms),
    };
    if req.pay {
        settle_payment(conn, &order, now).await?;
    }
    Ok(order)
}

fn overflow() -> OrderError {
    OrderError::Invalid("the order total is too large".into())
}

/// Pays a PENDING order from the user's balance, at most once. Refusals leave the
/// order as it was.
pub async fn pay(
    conn: &mut AnyConnection,
    id: OrderId,
    now: DateTime<Utc>,
) -> Result<Order, OrderError> {
    let now_ms = to_millis(now);
    if !store::transition(
        &mut *conn,
        id,
        OrderStatus::Pending,
        OrderStatus::Paid,
        now_ms,
    )
    .await?
    {
        return Err(match store::status(&mut *conn, id).await? {
            None => OrderError::NotFound(id),
            Some(s) => OrderError::NotPayable(s),
        });
    }
    let order = store::get(&mut *conn, id).await?;
    settle_payment(conn, &order, now).await?;
    Ok(order)
}

/// What paying `order` (now PAID) does besides its status: the debit with its ledger
/// entry, the sales rollup and the `order.paid` event.
async fn settle_payment(
    conn: &mut AnyConnection,
    order: &Order,
    now: DateTime<Utc>,
) -> Result<(), OrderError> {
    let now_ms = to_millis(now);
    balance::store::debit_for_order(
        &mut *conn,
        order.user_id,
        order.final_amount,
        order.id,
        now_ms,
    )
    .await?;
    for (product_id, quantity) in order.quantities() {
        crate::ranking::record_sale(&mut *conn, now_ms, product_id, quantity).await?;
    }
    outbox::store::enqueue(conn, outbox::EventType::OrderPaid, order, now).await?;
    Ok(())
}

/// Cancels a PENDING order (releasing what it holds) or a PAID one (also refunding the
/// balance). EXPIRED and CANCELLED orders cannot be cancelled.
pub async fn cancel(
    conn: &mut AnyConnection,
    id: OrderId,
    now: DateTime<Utc>,
) -> Result<Order, OrderError> {
    let now_ms = to_millis(now);
    let was_paid = if store::transition(
        &mut *conn,
        id,
        OrderStatus::Pending,
        OrderStatus::Cancelled,
        now_ms,
    )
    .await?
    {
        false
    } else if store::transition(
        &mut *conn,
        id,
        OrderStatus::Paid,
        OrderStatus::Cancelled,
        now_ms,
    )
    .await?
    {
        true
    } else {
        return Err(match store::status(&mut *conn, id).await? {
            None => OrderError::NotFound(id),
            Some(s) => OrderError::NotCancellable(s),
        });
    };
    let order = store::get(&mut *conn, id).await?;
    // Rows are locked in one order everywhere (products, then coupons, then users),
    // so concurrent flows cannot deadlock on PostgreSQL: release before refunding.
    release(&mut *conn, &order).await?;
    if was_paid {
        balance::store::credit(
            &mut *conn,
            order.user_id,
            order.final_amount,
            None,
            LedgerKind::Refund,
            Some(id),
            now_ms,
        )
        .await?;
        let paid_at = order.paid_at.map(to_millis).unwrap_or(now_ms);
        for (product_id, quantity) in order.quantities() {
            crate::ranking::record_sale(&mut *conn, paid_at, product_id, -quantity).await?;
        }
    }
    outbox::store::enqueue(conn, outbox::EventType::OrderCancelled, &order, now).await?;
    Ok(order)
}

/// Expires `id` if it is still PENDING and its time is up. Returns the expired
/// order, or `None` when it was not due or no longer PENDING.
pub async fn expire(
    conn: &mut AnyConnection,
    id: OrderId,
    now: DateTime<Utc>,
) -> Result<Option<Order>, OrderError> {
    if !store::transition(
        &mut *conn,
        id,
        OrderStatus::Pending,
        OrderStatus::Expired,
        to_millis(now),
    )
    .await?
    {
        return Ok(None);
    }
    let order = store::get(&mut *conn, id).await?;
    release(conn, &order).await?;
    Ok(Some(order))
}

/// Gives back the stock and coupon an order held.
async fn release(conn: &mut AnyConnection, order: &Order) -> Result<(), OrderError> {
    for (product_id, quantity) in order.quantities() {
        product::store::return_stock(&mut *conn, product_id, quantity).await?;
    }
    if let Some(c) = order.user_coupon_id {
        coupon::store::release(conn, c, order.id).await?;
    }
    Ok(())
}

/// Expires every PENDING order whose time is up (in batches of `batch`), releasing
/// what they hold; returns the products whose stock came back. Safe to run beside
/// requests and on many instances at once: each expiry is a guarded transition, so a
/// payment racing it either wins (and the expiry skips it) or loses, and no order is
/// expired twice.
pub async fn expire_due(
    db: &crate::db::Db,
    now: DateTime<Utc>,
    batch: i64,
) -> Result<(usize, BTreeSet<ProductId>), OrderError> {
    let skip_locked = db.backend == crate::db::Backend::Postgres;
    let mut expired = 0;
    let mut products = BTreeSet::new();
    loop {
        let mut tx = db.begin().await?;
        let due = store::due_for_expiry(&mut tx, to_millis(now), batch, skip_locked).await?;
        let mut moved = 0;
        for id in &due {
            if let Some(order) = expire(&mut tx, *id, now).await? {
                products.extend(order.items.iter().map(|i| i.product_id));
                moved += 1;
            }
        }
        tx.commit().await?;
        expired += moved;
        if (due.len() as i64) < batch || moved == 0 {
            return Ok((expired, products));
        }
    }
}
