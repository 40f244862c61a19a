//! The batch's SQL: one statement per table to read the rows a batch touches, and one
//! per table to write what it changed. Lists travel as one JSON parameter (an array of
//! rows, each an array of values), expanded by `json_each` on SQLite and
//! `json_array_elements` on PostgreSQL, so every statement text is fixed (prepared
//! once) whatever the batch's size, and the same text serves both backends.
//!
//! On PostgreSQL the rows are read `FOR UPDATE` in one global order: orders, products,
//! coupons, user coupons, users (each by id), then idempotency keys and new rows. A
//! batch never waits for a lock out of that order, so batches of many instances
//! cannot deadlock, and they run side by side unless they touch the same rows.

use std::collections::{BTreeSet, HashMap, VecDeque};

use serde::Serialize;
use sqlx::{AnyConnection, FromRow};

use super::rules::{Ids, OrderRow, ProductRow, State, UserCouponRow, UserRow, Work};
use crate::clock::{from_millis, to_millis};
use crate::coupon::Coupon;
use crate::db::Backend;
use crate::ids::{CouponId, OrderId, ProductId, UserCouponId, UserId};
use crate::money::{DiscountType, Won};
use crate::order::{Order, OrderItem, OrderStatus};
use crate::outbox::Event;

/// A stored idempotent answer, as read.
#[derive(Debug, Clone, FromRow)]
pub struct StoredKey {
    pub scope: String,
    pub idem_key: String,
    pub fingerprint: String,
    pub status_code: i64,
    pub body: String,
}

/// A key with its answer, to store.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub scope: String,
    pub key: String,
    pub fingerprint: String,
    pub status: u16,
    pub body: String,
}

/// Fills the statement templates for a backend: `{rows}` is the JSON list as a table
/// `j` with columns `value` (one row, a JSON array) and `key` (its position);
/// `{lock}` locks the rows read on PostgreSQL.
pub fn sql(backend: Backend, template: &str) -> String {
    let (rows, lock) = match backend {
        Backend::Sqlite => ("json_each($1) as j", ""),
        Backend::Postgres => (
            "json_array_elements($1::json) with ordinality as j(value, key)",
            " for update",
        ),
    };
    template.replace("{rows}", rows).replace("{lock}", lock)
}

fn json<T: Serialize>(rows: &T) -> String {
    serde_json::to_string(rows).expect("rows serialize")
}

/// The ids in `set` as a JSON list of one-value rows.
fn id_rows<T: Copy + Into<i64>>(set: &BTreeSet<T>) -> String {
    json(&set.iter().map(|&id| [id.into()]).collect::<Vec<_>>())
}

#[derive(FromRow)]
struct OrderRecord {
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
    cancelled_at: Option<i64>,
}

#[derive(FromRow)]
struct ItemRecord {
    order_id: i64,
    product_id: i64,
    name: String,
    unit_price: i64,
    quantity: i64,
    amount: i64,
}

#[derive(FromRow)]
struct ProductRecord {
    id: i64,
    name: String,
    price: i64,
    stock: i64,
}

#[derive(FromRow)]
struct UserCouponRecord {
    id: i64,
    coupon_id: i64,
    user_id: i64,
    issued_at: i64,
    expires_at: i64,
    order_id: Option<i64>,
    discount_type: String,
    discount_value: i64,
    min_order_amount: i64,
}

/// A database value the code does not know: a logged 500, never a silent default.
fn unknown(what: &str, value: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("unknown {what} `{value}` in the database").into())
}

/// Reads every row `works` touch (and the stored answers of `keys`) into a state.
pub async fn load(
    conn: &mut AnyConnection,
    backend: Backend,
    works: &[&Work],
    keys: &[(&str, &str)],
    now_ms: i64,
) -> Result<(State, HashMap<(String, String), StoredKey>), sqlx::Error> {
    let mut order_ids = BTreeSet::new();
    let mut product_ids = BTreeSet::new();
    let mut coupon_ids = BTreeSet::new();
    let mut pairs = BTreeSet::new();
    let mut user_coupon_ids = BTreeSet::new();
    let mut user_ids = BTreeSet::new();
    let mut expire_limit = 0;
    let (mut places, mut issues) = (0, 0);
    for work in works {
        match work {
            Work::Place(p) => {
                places += 1;
                user_ids.insert(p.user);
                product_ids.extend(p.lines.iter().map(|l| l.product));
                user_coupon_ids.extend(p.user_coupon);
            }
            Work::Pay { order, caller } | Work::Cancel { order, caller } => {
                order_ids.insert(*order);
                user_ids.insert(*caller);
            }
            Work::Charge { user, .. } => {
                user_ids.insert(*user);
            }
            Work::Issue { coupon, user } => {
                issues += 1;
                coupon_ids.insert(*coupon);
                pairs.insert((*coupon, *user));
                user_ids.insert(*user);
            }
            Work::AdjustStock { product, .. } => {
                product_ids.insert(*product);
            }
            Work::ExpireDue { limit } => expire_limit += limit,
        }
    }

    let stored = if keys.is_empty() {
        HashMap::new()
    } else {
        let rows: Vec<StoredKey> = sqlx::query_as(&sql(
            backend,
            "select scope, idem_key, fingerprint, status_code, body from idempotency_keys
             where (scope, idem_key) in (select j.value ->> 0, j.value ->> 1 from {rows})",
        ))
        .bind(json(&keys))
        .fetch_all(&mut *conn)
        .await?;
        rows.into_iter()
            .map(|k| ((k.scope.clone(), k.idem_key.clone()), k))
            .collect()
    };

    // Orders first (payments and cancels), then those due to expire: taken with SKIP
    // LOCKED, so instances share the expiry work and it never waits.
    let mut orders = Vec::new();
    if !order_ids.is_empty() {
        let rows: Vec<OrderRecord> = sqlx::query_as(&sql(
            backend,
            &format!(
                "select {ORDER_COLUMNS} from orders
             where id in (select cast(j.value ->> 0 as bigint) from {{rows}}) order by id{{lock}}"
            ),
        ))
        .bind(id_rows(&order_ids))
        .fetch_all(&mut *conn)
        .await?;
        orders.extend(rows);
    }
    let mut due = Vec::new();
    if expire_limit > 0 {
        let skip = match backend {
            Backend::Sqlite => "",
            Backend::Postgres => " for update skip locked",
        };
        let rows: Vec<OrderRecord> = sqlx::query_as(&format!(
            "select {ORDER_COLUMNS} from orders where status = 'PENDING' and expires_at <= $1
             order by expires_at, id limit $2{skip}"
        ))
        .bind(now_ms)
        .bind(expire_limit)
        .fetch_all(&mut *conn)
        .await?;
        for row in rows {
            due.push(OrderId(row.id));
            if !order_ids.contains(&OrderId(row.id)) {
                orders.push(row);
            }
        }
    }
    let mut loaded_orders = HashMap::new();
    if !orders.is_empty() {
        let ids: BTreeSet<OrderId> = orders.iter().map(|o| OrderId(o.id)).collect();
        let items: Vec<ItemRecord> = sqlx::query_as(&sql(
            backend,
            "select order_id, product_id, name, unit_price, quantity, amount from order_items
             where order_id in (select cast(j.value ->> 0 as bigint) from {rows}) order by id",
        ))
        .bind(id_rows(&ids))
        .fetch_all(&mut *conn)
        .await?;
        let mut by_order: HashMap<i64, Vec<OrderItem>> = HashMap::new();
        for i in items {
            by_order.entry(i.order_id).or_default().push(OrderItem {
                product_id: ProductId(i.product_id),
                name: i.name,
                unit_price: Won(i.unit_price),
                quantity: i.quantity,
                amount: Won(i.amount),
            });
        }
        for r in orders {
            let status =
                OrderStatus::parse(&r.status).ok_or_else(|| unknown("order status", &r.status))?;
            let order = Order {
                id: OrderId(r.id),
                user_id: UserId(r.user_id),
                status,
                items: by_order.remove(&r.id).unwrap_or_default(),
                user_coupon_id: r.user_coupon_id.map(UserCouponId),
                total_amount: Won(r.total_amount),
                discount_amount: Won(r.discount_amount),
                final_amount: Won(r.final_amount),
                created_at: from_millis(r.created_at),
                paid_at: r.paid_at.map(from_millis),
                expires_at: from_millis(r.expires_at),
            };
            // What paying, cancelling or expiring it touches.
            product_ids.extend(order.items.iter().map(|i| i.product_id));
            user_coupon_ids.extend(order.user_coupon_id);
            user_ids.insert(order.user_id);
            loaded_orders.insert(
                order.id,
                OrderRow {
                    order,
                    cancelled_at: r.cancelled_at,
                },
            );
        }
    }

    let mut products = HashMap::new();
    if !product_ids.is_empty() {
        let rows: Vec<ProductRecord> = sqlx::query_as(&sql(
            backend,
            "select id, name, price, stock from products
             where id in (select cast(j.value ->> 0 as bigint) from {rows}) order by id{lock}",
        ))
        .bind(id_rows(&product_ids))
        .fetch_all(&mut *conn)
        .await?;
        for p in rows {
            products.insert(
                ProductId(p.id),
                ProductRow {
                    name: p.name,
                    price: Won(p.price),
                    stock: p.stock,
                },
            );
        }
    }

    let mut coupons = HashMap::new();
    let mut issued = std::collections::HashSet::new();
    if !coupon_ids.is_empty() {
        let rows: Vec<crate::coupon::store::CouponRow> = sqlx::query_as(&sql(
            backend,
            &format!(
                "select {} from coupons
                 where id in (select cast(j.value ->> 0 as bigint) from {{rows}}) order by id{{lock}}",
                crate::coupon::store::COUPON_COLUMNS
            ),
        ))
        .bind(id_rows(&coupon_ids))
        .fetch_all(&mut *conn)
        .await?;
        for row in rows {
            let c = Coupon::try_from(row)?;
            coupons.insert(c.id, c);
        }
        // After the coupons' locks: what other batches issued before is visible.
        let pairs: Vec<[i64; 2]> = pairs.iter().map(|(c, u)| [c.0, u.0]).collect();
        let rows: Vec<(i64, i64)> = sqlx::query_as(&sql(
            backend,
            "select coupon_id, user_id from user_coupons
             where (coupon_id, user_id) in
                 (select cast(j.value ->> 0 as bigint), cast(j.value ->> 1 as bigint) from {rows})",
        ))
        .bind(json(&pairs))
        .fetch_all(&mut *conn)
        .await?;
        issued.extend(rows.into_iter().map(|(c, u)| (CouponId(c), UserId(u))));
    }

    let mut user_coupons = HashMap::new();
    if !user_coupon_ids.is_empty() {
        let lock = match backend {
            Backend::Sqlite => "",
            Backend::Postgres => " for update of uc",
        };
        let rows: Vec<UserCouponRecord> = sqlx::query_as(&sql(
            backend,
            &format!(
                "select uc.id, uc.coupon_id, uc.user_id, uc.issued_at, uc.expires_at, uc.order_id,
                        c.discount_type, c.discount_value, c.min_order_amount
                 from user_coupons uc join coupons c on c.id = uc.coupon_id
                 where uc.id in (select cast(j.value ->> 0 as bigint) from {{rows}})
                 order by uc.id{lock}"
            ),
        ))
        .bind(id_rows(&user_coupon_ids))
        .fetch_all(&mut *conn)
        .await?;
        for r in rows {
            let discount_type = DiscountType::parse(&r.discount_type)
                .ok_or_else(|| unknown("discount type", &r.discount_type))?;
            user_coupons.insert(
                UserCouponId(r.id),
                UserCouponRow {
                    coupon: CouponId(r.coupon_id),
                    user: UserId(r.user_id),
                    issued_at: r.issued_at,
                    expires_at: r.expires_at,
                    order: r.order_id.map(OrderId),
                    discount_type,
                    discount_value: r.discount_value,
                    min_order_amount: Won(r.min_order_amount),
                },
            );
        }
    }

    let mut users = HashMap::new();
    if !user_ids.is_empty() {
        let rows: Vec<(i64, i64)> = sqlx::query_as(&sql(
            backend,
            "select id, balance from users
             where id in (select cast(j.value ->> 0 as bigint) from {rows}) order by id{lock}",
        ))
        .bind(id_rows(&user_ids))
        .fetch_all(&mut *conn)
        .await?;
        for (id, balance) in rows {
            users.insert(
                UserId(id),
                UserRow {
                    balance: Won(balance),
                },
            );
        }
    }

    let order_ids = new_ids(conn, backend, "orders", places).await?;
    let user_coupon_ids = new_ids(conn, backend, "user_coupons", issues).await?;
    let mut state = State::new(order_ids, user_coupon_ids);
    state.users = users;
    state.products = products;
    state.coupons = coupons;
    state.issued = issued;
    state.user_coupons = user_coupons;
    state.orders = loaded_orders;
    state.due = due;
    Ok((state, stored))
}

const ORDER_COLUMNS: &str = "id, user_id, status, user_coupon_id, total_amount, discount_amount, \
    final_amount, created_at, paid_at, expires_at, cancelled_at";

/// Where the ids of up to `wanted` new rows of `table` come from. SQLite: the next
/// after the largest (the writer holds the database's write lock). PostgreSQL: that
/// many values reserved from the table's sequence (unused ones leave gaps).
async fn new_ids(
    conn: &mut AnyConnection,
    backend: Backend,
    table: &str,
    wanted: usize,
) -> Result<Ids, sqlx::Error> {
    if wanted == 0 {
        return Ok(Ids::Reserved(VecDeque::new()));
    }
    match backend {
        Backend::Sqlite => {
            let (max,): (i64,) =
                sqlx::query_as(&format!("select coalesce(max(id), 0) from {table}"))
                    .fetch_one(&mut *conn)
                    .await?;
            Ok(Ids::Next(max + 1))
        }
        Backend::Postgres => {
            let rows: Vec<(i64,)> = sqlx::query_as(&format!(
                "select nextval(pg_get_serial_sequence('{table}', 'id')) from generate_series(1, $1)"
            ))
            .bind(wanted as i64)
            .fetch_all(&mut *conn)
            .await?;
            Ok(Ids::Reserved(rows.into_iter().map(|(id,)| id).collect()))
        }
    }
}

/// Writes what the batch changed, one statement per table, and the keys' answers.
pub async fn write(
    conn: &mut AnyConnection,
    backend: Backend,
    state: &State,
    keys: &[NewKey],
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    let c = &state.changes;
    let exec = |template: &str, rows: String| (sql(backend, template), rows);
    let mut statements: Vec<(String, String)> = Vec::new();

    if !c.new_orders.is_empty() {
        let rows: Vec<_> = c
            .new_orders
            .iter()
            .map(|id| order_values(&state.orders[id]))
            .collect();
        statements.push(exec(
            "insert into orders (id, user_id, status, user_coupon_id, total_amount,
                     discount_amount, final_amount, created_at, paid_at, expires_at, cancelled_at)
                 select cast(j.value ->> 0 as bigint), cast(j.value ->> 1 as bigint), j.value ->> 2,
                     cast(j.value ->> 3 as bigint), cast(j.value ->> 4 as bigint),
                     cast(j.value ->> 5 as bigint), cast(j.value ->> 6 as bigint),
                     cast(j.value ->> 7 as bigint), cast(j.value ->> 8 as bigint),
                     cast(j.value ->> 9 as bigint), cast(j.value ->> 10 as bigint)
                 from {rows} order by j.key",
            json(&rows),
        ));
        let items: Vec<_> = c
            .new_orders
            .iter()
            .flat_map(|id| {
                state.orders[id].order.items.iter().map(move |i| {
                    (
                        id.0,
                        i.product_id.0,
                        i.name.as_str(),
                        i.unit_price.0,
                        i.quantity,
                        i.amount.0,
                    )
                })
            })
            .collect();
        statements.push(exec(
            "insert into order_items (order_id, product_id, name, unit_price, quantity, amount)
                 select cast(j.value ->> 0 as bigint), cast(j.value ->> 1 as bigint), j.value ->> 2,
                     cast(j.value ->> 3 as bigint), cast(j.value ->> 4 as bigint),
                     cast(j.value ->> 5 as bigint)
                 from {rows} order by j.key",
            json(&items),
        ));
    }
    if !c.orders.is_empty() {
        let rows: Vec<_> = c
            .orders
            .iter()
            .map(|id| {
                let r = &state.orders[id];
                (
                    id.0,
                    r.order.status.as_str(),
                    r.order.paid_at.map(to_millis),
                    r.cancelled_at,
                )
            })
            .collect();
        statements.push(exec(
            "update orders set status = j.value ->> 1, paid_at = cast(j.value ->> 2 as bigint),
                     cancelled_at = cast(j.value ->> 3 as bigint)
                 from {rows} where orders.id = cast(j.value ->> 0 as bigint)",
            json(&rows),
        ));
    }
    let stock: Vec<(i64, i64)> = c
        .stock
        .iter()
        .filter(|(_, d)| **d != 0)
        .map(|(p, d)| (p.0, *d))
        .collect();
    if !stock.is_empty() {
        statements.push(exec(
            "update products set stock = products.stock + cast(j.value ->> 1 as bigint)
                 from {rows} where products.id = cast(j.value ->> 0 as bigint)",
            json(&stock),
        ));
    }
    if !c.adjustments.is_empty() {
        let rows: Vec<_> = c
            .adjustments
            .iter()
            .map(|(p, d)| (p.0, *d, now_ms))
            .collect();
        statements.push(exec(
            "insert into stock_adjustments (product_id, delta, created_at)
                 select cast(j.value ->> 0 as bigint), cast(j.value ->> 1 as bigint),
                     cast(j.value ->> 2 as bigint)
                 from {rows} order by j.key",
            json(&rows),
        ));
        let touched: BTreeSet<i64> = c.adjustments.iter().map(|(p, _)| p.0).collect();
        let rows: Vec<_> = touched.iter().map(|p| (*p, now_ms)).collect();
        statements.push(exec(
            "update products set updated_at = cast(j.value ->> 1 as bigint)
                 from {rows} where products.id = cast(j.value ->> 0 as bigint)",
            json(&rows),
        ));
    }
    if !c.issued.is_empty() {
        let rows: Vec<(i64, i64)> = c.issued.iter().map(|(k, n)| (k.0, *n)).collect();
        statements.push(
            exec(
                "update coupons set issued_quantity = coupons.issued_quantity + cast(j.value ->> 1 as bigint)
                 from {rows} where coupons.id = cast(j.value ->> 0 as bigint)",
                json(&rows),
            )
        );
    }
    if !c.new_user_coupons.is_empty() {
        let rows: Vec<_> = c
            .new_user_coupons
            .iter()
            .map(|id| {
                let uc = &state.user_coupons[id];
                (
                    id.0,
                    uc.coupon.0,
                    uc.user.0,
                    uc.issued_at,
                    uc.expires_at,
                    uc.order.map(|o| o.0),
                )
            })
            .collect();
        statements.push(exec(
            "insert into user_coupons (id, coupon_id, user_id, issued_at, expires_at, order_id)
                 select cast(j.value ->> 0 as bigint), cast(j.value ->> 1 as bigint),
                     cast(j.value ->> 2 as bigint), cast(j.value ->> 3 as bigint),
                     cast(j.value ->> 4 as bigint), cast(j.value ->> 5 as bigint)
                 from {rows} order by j.key",
            json(&rows),
        ));
    }
    let held: Vec<_> = c
        .user_coupons
        .iter()
        .filter(|id| !c.new_user_coupons.contains(id))
        .map(|id| (id.0, state.user_coupons[id].order.map(|o| o.0)))
        .collect();
    if !held.is_empty() {
        statements.push(exec(
            "update user_coupons set order_id = cast(j.value ->> 1 as bigint)
                 from {rows} where user_coupons.id = cast(j.value ->> 0 as bigint)",
            json(&held),
        ));
    }
    let balances: Vec<(i64, i64)> = c
        .balances
        .iter()
        .filter(|(_, d)| **d != 0)
        .map(|(u, d)| (u.0, *d))
        .collect();
    if !balances.is_empty() {
        statements.push(exec(
            "update users set balance = users.balance + cast(j.value ->> 1 as bigint)
                 from {rows} where users.id = cast(j.value ->> 0 as bigint)",
            json(&balances),
        ));
    }
    if !c.ledger.is_empty() {
        let rows: Vec<_> = c
            .ledger
            .iter()
            .map(|e| {
                (
                    e.user.0,
                    e.kind.as_str(),
                    e.amount.0,
                    e.balance_after.0,
                    e.order.map(|o| o.0),
                    now_ms,
                )
            })
            .collect();
        statements.push(
            exec(
                "insert into balance_ledger (user_id, kind, amount, balance_after, order_id, created_at)
                 select cast(j.value ->> 0 as bigint), j.value ->> 1, cast(j.value ->> 2 as bigint),
                     cast(j.value ->> 3 as bigint), cast(j.value ->> 4 as bigint),
                     cast(j.value ->> 5 as bigint)
                 from {rows} order by j.key",
                json(&rows),
            )
        );
    }
    if !c.events.is_empty() {
        let occurred_at = from_millis(now_ms);
        let rows: Vec<_> = c
            .events
            .iter()
            .map(|(kind, order)| {
                let event = Event {
                    id: uuid::Uuid::now_v7().to_string(),
                    kind: *kind,
                    occurred_at,
                    data: order.clone(),
                };
                let payload = serde_json::to_string(&event).expect("an event serializes");
                (event.id, kind.as_str(), order.id.0, payload, now_ms)
            })
            .collect();
        statements.push(exec(
            "insert into outbox_events (id, event_type, order_id, payload, created_at, attempts,
                     next_attempt_at)
                 select j.value ->> 0, j.value ->> 1, cast(j.value ->> 2 as bigint), j.value ->> 3,
                     cast(j.value ->> 4 as bigint), 0, cast(j.value ->> 4 as bigint)
                 from {rows} order by j.key",
            json(&rows),
        ));
    }
    let sales: Vec<(i64, i64, i64)> = c
        .sales
        .iter()
        .filter(|(_, q)| **q != 0)
        .map(|((hour, p), q)| (*hour, p.0, *q))
        .collect();
    if !sales.is_empty() {
        statements.push(exec(
            "insert into product_sales_hourly (hour, product_id, quantity)
                 select cast(j.value ->> 0 as bigint), cast(j.value ->> 1 as bigint),
                     cast(j.value ->> 2 as bigint)
                 from {rows} where true order by j.key
                 on conflict (hour, product_id)
                 do update set quantity = product_sales_hourly.quantity + excluded.quantity",
            json(&sales),
        ));
    }
    if !keys.is_empty() {
        let mut rows: Vec<_> = keys
            .iter()
            .map(|k| {
                (
                    k.scope.as_str(),
                    k.key.as_str(),
                    k.fingerprint.as_str(),
                    i64::from(k.status),
                    k.body.as_str(),
                    now_ms,
                )
            })
            .collect();
        // One order for every batch, so two that store the same key cannot deadlock.
        rows.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        statements.push(exec(
            "insert into idempotency_keys (scope, idem_key, fingerprint, state, status_code, body,
                     created_at)
                 select j.value ->> 0, j.value ->> 1, j.value ->> 2, 'DONE',
                     cast(j.value ->> 3 as bigint), j.value ->> 4, cast(j.value ->> 5 as bigint)
                 from {rows} order by j.key",
            json(&rows),
        ));
    }
    for (text, rows) in statements {
        sqlx::query(&text).bind(rows).execute(&mut *conn).await?;
    }
    Ok(())
}

/// An order's columns, in the order the insert statement reads them.
type OrderValues = (
    i64,
    i64,
    &'static str,
    Option<i64>,
    i64,
    i64,
    i64,
    i64,
    Option<i64>,
    i64,
    Option<i64>,
);

fn order_values(r: &OrderRow) -> OrderValues {
    let o = &r.order;
    (
        o.id.0,
        o.user_id.0,
        o.status.as_str(),
        o.user_coupon_id.map(|c| c.0),
        o.total_amount.0,
        o.discount_amount.0,
        o.final_amount.0,
        to_millis(o.created_at),
        o.paid_at.map(to_millis),
        to_millis(o.expires_at),
        r.cancelled_at,
    )
}
