//! SQL for orders and their items.

use std::collections::HashMap;

use sqlx::{AnyConnection, FromRow};

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
    fn into_order(self, items: Vec<OrderItem>) -> Result<Order, sqlx::Error> {
        let status = OrderStatus::parse(&self.status).ok_or_else(|| {
            sqlx::Error::Decode(format!("unknown order status `{}`", self.status).into())
        })?;
        Ok(Order {
            id: OrderId(self.id),
            user_id: UserId(self.user_id),
            status,
            items,
            user_coupon_id: self.user_coupon_id.map(UserCouponId),
            total_amount: Won(self.total_amount),
            discount_amount: Won(self.discount_amount),
            final_amount: Won(self.final_amount),
            created_at: from_millis(self.created_at),
            paid_at: self.paid_at.map(from_millis),
            expires_at: from_millis(self.expires_at),
        })
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
    Ok(row.into_order(items.into_iter().map(OrderItem::from).collect())?)
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
    rows.into_iter()
        .map(|r| {
            let items = by_order.remove(&r.id).unwrap_or_default();
            r.into_order(items)
        })
        .collect()
}
