//! SQL that reads orders (the write path writes them): one statement answers the orders
//! asked for with their items, as one JSON array, both for reads and for the write
//! path's batches.

use sqlx::AnyConnection;

use super::{Order, OrderError, OrderItem, OrderStatus, Payment, PaymentStatus};
use crate::clock::from_millis;
use crate::db::Backend;
use crate::ids::{OrderId, PaymentId, ProductId, UserCouponId, UserId, VariantId};
use crate::money::Won;

/// product, variant, name, options (JSON text), unit price, quantity, amount
type ItemRecord = (i64, i64, String, String, i64, i64, i64);

/// An order's columns as read (see [`order_columns`]), its items last.
#[derive(serde::Deserialize)]
pub struct OrderRecord {
    pub id: i64,
    user_id: i64,
    status: String,
    user_coupon_id: Option<i64>,
    total_amount: i64,
    discount_amount: i64,
    final_amount: i64,
    created_at: i64,
    paid_at: Option<i64>,
    expires_at: i64,
    pub cancelled_at: Option<i64>,
    shipped_at: Option<i64>,
    delivered_at: Option<i64>,
    tracking_number: Option<String>,
    items: Vec<ItemRecord>,
}

use crate::db::corrupt;

impl TryFrom<OrderRecord> for Order {
    type Error = sqlx::Error;

    fn try_from(r: OrderRecord) -> Result<Order, sqlx::Error> {
        let status = OrderStatus::parse(&r.status)
            .ok_or_else(|| corrupt("an unknown order status", &r.status))?;
        let items = r
            .items
            .into_iter()
            .map(|i| {
                Ok(OrderItem {
                    product_id: ProductId(i.0),
                    variant_id: VariantId(i.1),
                    name: i.2,
                    options: serde_json::from_str(&i.3)
                        .map_err(|e| corrupt("an item's options", e))?,
                    unit_price: Won(i.4),
                    quantity: i.5,
                    amount: Won(i.6),
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;
        Ok(Order {
            id: OrderId(r.id),
            user_id: UserId(r.user_id),
            status,
            items,
            user_coupon_id: r.user_coupon_id.map(UserCouponId),
            total_amount: Won(r.total_amount),
            discount_amount: Won(r.discount_amount),
            final_amount: Won(r.final_amount),
            created_at: from_millis(r.created_at),
            paid_at: r.paid_at.map(from_millis),
            expires_at: from_millis(r.expires_at),
            shipped_at: r.shipped_at.map(from_millis),
            delivered_at: r.delivered_at.map(from_millis),
            tracking_number: r.tracking_number,
        })
    }
}

const ORDER_COLUMNS: &str = "t.id, t.user_id, t.status, t.user_coupon_id, t.total_amount, \
    t.discount_amount, t.final_amount, t.created_at, t.paid_at, t.expires_at, t.cancelled_at, \
    t.shipped_at, t.delivered_at, t.tracking_number, {items}";

/// The columns of orders (a table `t`) read as an [`OrderRecord`]: their items as a
/// nested JSON array.
pub fn order_columns(backend: Backend) -> String {
    let items = match backend {
        // SQLite keeps a JSON value's kind only straight out of a JSON function.
        Backend::Sqlite => {
            "json((select json_group_array(json_array(i.product_id, i.variant_id, i.name, \
             i.options, i.unit_price, i.quantity, i.amount) order by i.id) \
             from order_items i where i.order_id = t.id))"
        }
        Backend::Postgres => {
            "(select coalesce(json_agg(json_build_array(i.product_id, i.variant_id, i.name, \
             i.options, i.unit_price, i.quantity, i.amount) order by i.id), '[]') \
             from order_items i where i.order_id = t.id)"
        }
    };
    ORDER_COLUMNS.replace("{items}", items)
}

/// The rows `inner` selects from `orders` (with `$1`.. bound to `params`), in its
/// order, with their items.
async fn read(
    conn: &mut AnyConnection,
    backend: Backend,
    inner: &str,
    params: &[i64],
) -> Result<Vec<Order>, sqlx::Error> {
    let sql = backend.rows_as_json(&order_columns(backend), inner);
    let mut query = sqlx::query_as::<_, (String,)>(&sql);
    for p in params {
        query = query.bind(*p);
    }
    let (text,) = query.fetch_one(conn).await?;
    let records: Vec<OrderRecord> =
        serde_json::from_str(&text).map_err(|e| corrupt("an order", e))?;
    records.into_iter().map(Order::try_from).collect()
}

/// An order with its items.
pub async fn get(
    conn: &mut AnyConnection,
    backend: Backend,
    id: OrderId,
) -> Result<Order, OrderError> {
    read(conn, backend, "select * from orders where id = $1", &[id.0])
        .await?
        .pop()
        .ok_or(OrderError::NotFound(id))
}

/// A user's orders, newest first (`limit + 1` rows), with their items.
pub async fn list_for_user(
    conn: &mut AnyConnection,
    backend: Backend,
    user: UserId,
    after: Option<i64>,
    limit: i64,
) -> Result<Vec<Order>, sqlx::Error> {
    read(
        conn,
        backend,
        "select * from orders where user_id = $1 and id < $2 order by id desc limit $3",
        &[user.0, after.unwrap_or(i64::MAX), limit + 1],
    )
    .await
}

/// Every order, newest first (`limit + 1` rows), of one status and one user when given.
pub async fn list(
    conn: &mut AnyConnection,
    backend: Backend,
    status: Option<OrderStatus>,
    user: Option<UserId>,
    after: Option<i64>,
    limit: i64,
) -> Result<Vec<Order>, sqlx::Error> {
    // The status is one of a closed set: written into the statement, not bound.
    let status = status
        .map(|s| format!(" and status = '{}'", s.as_str()))
        .unwrap_or_default();
    let (user_filter, params) = match user {
        Some(u) => (
            " and user_id = $3",
            vec![after.unwrap_or(i64::MAX), limit + 1, u.0],
        ),
        None => ("", vec![after.unwrap_or(i64::MAX), limit + 1]),
    };
    read(
        conn,
        backend,
        &format!(
            "select * from orders where id < $1{status}{user_filter} order by id desc limit $2"
        ),
        &params,
    )
    .await
}

/// Who placed order `id`, if it exists.
pub async fn owner(conn: &mut AnyConnection, id: OrderId) -> Result<Option<UserId>, sqlx::Error> {
    let row: Option<(i64,)> = sqlx::query_as("select user_id from orders where id = $1")
        .bind(id.0)
        .fetch_optional(conn)
        .await?;
    Ok(row.map(|(u,)| UserId(u)))
}

/// The payment attempts of order `id`, oldest first.
pub async fn payments(conn: &mut AnyConnection, id: OrderId) -> Result<Vec<Payment>, sqlx::Error> {
    let rows: Vec<(i64, String, i64, Option<String>, i64)> = sqlx::query_as(
        "select id, status, amount, failure_code, at from payments where order_id = $1 order by id",
    )
    .bind(id.0)
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|(id, status, amount, failure_code, at)| {
            Ok(Payment {
                id: PaymentId(id),
                status: PaymentStatus::parse(&status)
                    .ok_or_else(|| corrupt("an unknown payment status", &status))?,
                amount: Won(amount),
                failure_code,
                at: from_millis(at),
            })
        })
        .collect()
}
