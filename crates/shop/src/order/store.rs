//! SQL for orders and their items.

use std::collections::HashMap;

use sqlx::{Any, AnyConnection, Executor, FromRow};

use super::{Order, OrderError, OrderItem, OrderStatus};
use crate::clock::from_millis;
use crate::http::Paging;
use crate::ids::{OrderId, ProductId, UserCouponId, UserId};
use crate::money::Won;

#[derive(FromRow)]
struct OrderRow {
    id: i64,
    user_id: i64,
    status: String,
    user_coupon_id: Option<i64>,
    total_amount: i64,
    discount_amount: i64,
    final_amount: i64,
    created_at: i64,
    paid_at: Option<i64>,
    expires_at: i64,
}

const ORDER_COLUMNS: &str = "id, user_id, status, user_coupon_id, total_amount, discount_amount, \
    final_amount, created_at, paid_at, expires_at";

#[derive(FromRow)]
struct ItemRow {
    order_id: i64,
    product_id: i64,
    name: String,
    unit_price: i64,
    quantity: i64,
    amount: i64,
}

impl OrderRow {
    fn into_order(self, items: Vec<OrderItem>) -> Order {
        Order {
            id: OrderId(self.id),
            user_id: UserId(self.user_id),
            status: OrderStatus::parse(&self.status).unwrap_or(OrderStatus::Pending),
            items,
            user_coupon_id: self.user_coupon_id.map(UserCouponId),
            total_amount: Won(self.total_amount),
            discount_amount: Won(self.discount_amount),
            final_amount: Won(self.final_amount),
            created_at: from_millis(self.created_at),
            paid_at: self.paid_at.map(from_millis),
            expires_at: from_millis(self.expires_at),
        }
    }
}

impl From<ItemRow> for OrderItem {
    fn from(r: ItemRow) -> Self {
        OrderItem {
            product_id: ProductId(r.product_id),
            name: r.name,
            unit_price: Won(r.unit_price),
            quantity: r.quantity,
            amount: Won(r.amount),
        }
    }
}

/// An order to insert; amounts already computed.
pub struct NewOrder<'a> {
    pub user: UserId,
    pub user_coupon: Option<UserCouponId>,
    pub total: Won,
    pub discount: Won,
    pub items: &'a [OrderItem],
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    /// `Some(now)`: inserted PAID (created and paid in one step).
    pub paid_at_ms: Option<i64>,
}

pub async fn insert(conn: &mut AnyConnection, o: &NewOrder<'_>) -> Result<OrderId, sqlx::Error> {
    let final_amount = Won(o.total.0 - o.discount.0);
    let (id,): (i64,) = sqlx::query_as(
        "insert into orders (user_id, status, user_coupon_id, total_amount, discount_amount,
            final_amount, created_at, expires_at, paid_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9) returning id",
    )
    .bind(o.user.0)
    .bind(if o.paid_at_ms.is_some() {
        OrderStatus::Paid.as_str()
    } else {
        OrderStatus::Pending.as_str()
    })
    .bind(o.user_coupon.map(|c| c.0))
    .bind(o.total.0)
    .bind(o.discount.0)
    .bind(final_amount.0)
    .bind(o.created_at_ms)
    .bind(o.expires_at_ms)
    .bind(o.paid_at_ms)
    .fetch_one(&mut *conn)
    .await?;
    for item in o.items {
        sqlx::query(
            "insert into order_items (order_id, product_id, name, unit_price, quantity, amount)
             values ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id)
        .bind(item.product_id.0)
        .bind(&item.name)
        .bind(item.unit_price.0)
        .bind(item.quantity)
        .bind(item.amount.0)
        .execute(&mut *conn)
        .await?;
    }
    Ok(OrderId(id))
}

/// Reads an order with its items.
pub async fn get(conn: &mut AnyConnection, id: OrderId) -> Result<Order, OrderError> {
    let row: Option<OrderRow> =
        sqlx::query_as(&format!("select {ORDER_COLUMNS} from orders where id = $1"))
            .bind(id.0)
            .fetch_optional(&mut *conn)
            .await?;
    let row = row.ok_or(OrderError::NotFound(id))?;
    let items: Vec<ItemRow> = sqlx::query_as(
        "select order_id, product_id, name, unit_price, quantity, amount
         from order_items where order_id = $1 order by id",
    )
    .bind(id.0)
    .fetch_all(conn)
    .await?;
    Ok(row.into_order(items.into_iter().map(OrderItem::from).collect()))
}

/// The status of an order, if it exists.
/// Who placed order `id`, if it exists.
pub async fn owner(
    ex: impl Executor<'_, Database = Any>,
    id: OrderId,
) -> Result<Option<UserId>, sqlx::Error> {
    let row: Option<(i64,)> = sqlx::query_as("select user_id from orders where id = $1")
        .bind(id.0)
        .fetch_optional(ex)
        .await?;
    Ok(row.map(|(u,)| UserId(u)))
}

pub async fn status(
    ex: impl Executor<'_, Database = Any>,
    id: OrderId,
) -> Result<Option<OrderStatus>, sqlx::Error> {
    let row: Option<(String,)> = sqlx::query_as("select status from orders where id = $1")
        .bind(id.0)
        .fetch_optional(ex)
        .await?;
    Ok(row.and_then(|(s,)| OrderStatus::parse(&s)))
}

/// A user's orders, newest first (`limit + 1` rows), with their items.
pub async fn list_for_user(
    conn: &mut AnyConnection,
    user: UserId,
    paging: Paging,
) -> Result<Vec<Order>, sqlx::Error> {
    let rows: Vec<OrderRow> = sqlx::query_as(&format!(
        "select {ORDER_COLUMNS} from orders where user_id = $1 and id < $2 order by id desc limit $3"
    ))
    .bind(user.0)
    .bind(paging.after.unwrap_or(i64::MAX))
    .bind(paging.limit + 1)
    .fetch_all(&mut *conn)
    .await?;
    let (Some(newest), Some(oldest)) = (rows.first(), rows.last()) else {
        return Ok(Vec::new());
    };
    // One query for the items of the whole page: the page's ids form a range of
    // this user's orders.
    let items: Vec<ItemRow> = sqlx::query_as(
        "select i.order_id, i.product_id, i.name, i.unit_price, i.quantity, i.amount
         from order_items i join orders o on o.id = i.order_id
         where o.user_id = $1 and i.order_id between $2 and $3 order by i.id",
    )
    .bind(user.0)
    .bind(oldest.id)
    .bind(newest.id)
    .fetch_all(&mut *conn)
    .await?;
    let mut by_order: HashMap<i64, Vec<OrderItem>> = HashMap::new();
    for item in items {
        by_order.entry(item.order_id).or_default().push(item.into());
    }
    Ok(rows
        .into_iter()
        .map(|r| {
            let items = by_order.remove(&r.id).unwrap_or_default();
            r.into_order(items)
        })
        .collect())
}

/// Moves an order from `from` to `to` if it is still in `from` (and, when given, due
/// before `due_before_ms` / still payable at `payable_at_ms`). Returns whether it moved.
pub async fn transition(
    conn: &mut AnyConnection,
    id: OrderId,
    from: OrderStatus,
    to: OrderStatus,
    now_ms: i64,
) -> Result<bool, sqlx::Error> {
    let sql = match to {
        // Payment must also come before the order's expiry time.
        OrderStatus::Paid => {
            "update orders set status = $1, paid_at = $2 where id = $3 and status = $4 and expires_at > $2"
        }
        OrderStatus::Expired => {
            "update orders set status = $1, cancelled_at = $2 where id = $3 and status = $4 and expires_at <= $2"
        }
        OrderStatus::Cancelled | OrderStatus::Pending => {
            "update orders set status = $1, cancelled_at = $2 where id = $3 and status = $4"
        }
    };
    let done = sqlx::query(sql)
        .bind(to.as_str())
        .bind(now_ms)
        .bind(id.0)
        .bind(from.as_str())
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// PENDING orders whose time is up, oldest first. With `skip_locked` (PostgreSQL),
/// rows another instance is expiring right now are locked for this transaction or
/// skipped, so instances share the work instead of repeating it.
pub async fn due_for_expiry(
    conn: &mut AnyConnection,
    now_ms: i64,
    limit: i64,
    skip_locked: bool,
) -> Result<Vec<OrderId>, sqlx::Error> {
    let lock = if skip_locked {
        " for update skip locked"
    } else {
        ""
    };
    let rows: Vec<(i64,)> = sqlx::query_as(&format!(
        "select id from orders where status = 'PENDING' and expires_at <= $1
         order by expires_at limit $2{lock}"
    ))
    .bind(now_ms)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|(id,)| OrderId(id)).collect())
}
