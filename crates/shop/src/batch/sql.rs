//! The batch's SQL. The cost of a batch is its round trips, so they are few:
//!
//! - Lists travel as one JSON parameter per statement (an array of rows, each an array
//!   of values), expanded by `json_each` on SQLite and `jsonb_array_elements` on
//!   PostgreSQL: every statement text is fixed (prepared once) whatever the batch's
//!   size, and the same text serves both backends.
//! - Every read returns one row: its rows aggregated into one JSON array.
//! - On SQLite, whose writer holds the database's write lock for the whole batch, the
//!   reads go in two round trips (what the jobs name, then what those rows name) and
//!   every write in one. On PostgreSQL the rows are read `FOR UPDATE` one table after
//!   another in one global order (orders, products, coupons, user coupons, users, each
//!   by id; then keys and new rows): a batch never waits for a lock out of that order,
//!   so batches of many instances cannot deadlock and run side by side unless they
//!   touch the same rows. Its writes go in one statement (data-modifying `WITH`).

use std::collections::{BTreeSet, HashMap, VecDeque};

use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::AnyConnection;

use super::rules::{Ids, OrderRow, ProductRow, State, UserCouponRow, UserRow, Work};
use crate::clock::{from_millis, to_millis};
use crate::coupon::Coupon;
use crate::coupon::store::CouponRow;
use crate::db::Backend;
use crate::ids::{CouponId, OrderId, ProductId, UserCouponId, UserId};
use crate::money::{DiscountType, Won};
use crate::order::{Order, OrderItem, OrderStatus};
use crate::outbox::Event;

/// A stored idempotent answer, as read.
#[derive(Debug, Clone, serde::Deserialize)]
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

/// Fills a statement template for a backend: `{rows}` is the JSON list in parameter
/// `{p}` as a table `j` with columns `value` (one row, a JSON array) and `key` (its
/// position); `{lock}` locks the rows read on PostgreSQL. A lone statement's `{p}` is
/// `$1`.
pub fn sql(backend: Backend, template: &str) -> String {
    expand(backend, template).replace("{p}", "$1")
}

fn expand(backend: Backend, template: &str) -> String {
    let (rows, lock) = match backend {
        Backend::Sqlite => ("json_each({p}) as j", ""),
        Backend::Postgres => (
            "jsonb_array_elements(cast({p} as jsonb)) with ordinality as j(value, key)",
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

/// A value bound to a statement.
#[derive(Debug, Clone)]
enum Param {
    Text(String),
    Int(i64),
}

/// One statement of a batch: its text (parameters written `{p}`, `{p2}`, ...) and
/// values.
struct Stmt {
    sql: String,
    params: Vec<Param>,
}

impl Stmt {
    /// A statement over the JSON list `rows` (parameter `{p}`).
    fn over(backend: Backend, template: &str, rows: String) -> Stmt {
        Stmt {
            sql: expand(backend, template),
            params: vec![Param::Text(rows)],
        }
    }

    /// A read of `columns` of the rows `inner` selects, aggregated into one JSON array.
    fn read(backend: Backend, columns: &str, inner: &str, params: Vec<Param>) -> Stmt {
        let inner = expand(backend, inner);
        let sql = match backend {
            Backend::Sqlite => {
                format!("select json_group_array(json_array({columns})) from ({inner}) as t")
            }
            Backend::Postgres => format!(
                "select cast(coalesce(json_agg(json_build_array({columns})), '[]') as text) \
                 from ({inner}) as t"
            ),
        };
        Stmt { sql, params }
    }

    /// The text with its parameters numbered from `first`.
    fn numbered(&self, first: usize) -> String {
        let mut sql = self.sql.clone();
        for k in (1..=self.params.len()).rev() {
            let name = if k == 1 {
                "{p}".to_string()
            } else {
                format!("{{p{k}}}")
            };
            sql = sql.replace(&name, &format!("${}", first + k - 1));
        }
        sql
    }
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

fn bind_all<'q>(mut query: Query<'q>, stmts: &'q [Stmt]) -> Query<'q> {
    for stmt in stmts {
        for p in &stmt.params {
            query = match p {
                Param::Text(t) => query.bind(t.as_str()),
                Param::Int(i) => query.bind(*i),
            };
        }
    }
    query
}

/// Runs reads, each answering one JSON text, and returns the texts in order: on SQLite
/// in one round trip, on PostgreSQL one statement after another (the lock order).
async fn read_all(
    conn: &mut AnyConnection,
    backend: Backend,
    stmts: &[Stmt],
) -> Result<Vec<String>, sqlx::Error> {
    use sqlx::Row;
    match backend {
        Backend::Sqlite => {
            let mut first = 1;
            let text: Vec<String> = stmts
                .iter()
                .map(|s| {
                    let t = s.numbered(first);
                    first += s.params.len();
                    t
                })
                .collect();
            let text = text.join(";\n");
            let rows = bind_all(sqlx::query(&text), stmts)
                .fetch_all(&mut *conn)
                .await?;
            rows.iter().map(|r| r.try_get::<String, _>(0)).collect()
        }
        Backend::Postgres => {
            let mut out = Vec::with_capacity(stmts.len());
            for stmt in stmts {
                let text = stmt.numbered(1);
                let row = bind_all(sqlx::query(&text), std::slice::from_ref(stmt))
                    .fetch_one(&mut *conn)
                    .await?;
                out.push(row.try_get::<String, _>(0)?);
            }
            Ok(out)
        }
    }
}

/// Runs writes in one round trip: statements in a row on SQLite, one statement of
/// data-modifying `WITH`s on PostgreSQL (they touch disjoint rows).
async fn write_all(
    conn: &mut AnyConnection,
    backend: Backend,
    stmts: &[Stmt],
) -> Result<(), sqlx::Error> {
    if stmts.is_empty() {
        return Ok(());
    }
    let mut first = 1;
    let parts: Vec<String> = stmts
        .iter()
        .map(|s| {
            let t = s.numbered(first);
            first += s.params.len();
            t
        })
        .collect();
    let text = match backend {
        Backend::Sqlite => parts.join(";\n"),
        Backend::Postgres => {
            let with: Vec<String> = parts
                .iter()
                .enumerate()
                .map(|(i, t)| format!("w{i} as ({t})"))
                .collect();
            format!("with {} select 1", with.join(",\n"))
        }
    };
    bind_all(sqlx::query(&text), stmts)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

fn decode<T: DeserializeOwned>(text: &str, what: &str) -> Result<T, sqlx::Error> {
    serde_json::from_str(text)
        .map_err(|e| sqlx::Error::Decode(format!("reading {what}: {e}").into()))
}

/// A database value the code does not know: a logged 500, never a silent default.
fn unknown(what: &str, value: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("unknown {what} `{value}` in the database").into())
}

type ItemRecord = (i64, String, i64, i64, i64);
type OrderRecord = (
    i64,
    i64,
    String,
    Option<i64>,
    i64,
    i64,
    i64,
    i64,
    Option<i64>,
    i64,
    Option<i64>,
    Vec<ItemRecord>,
);
type UserCouponRecord = (i64, i64, i64, i64, i64, Option<i64>, String, i64, i64);

const ORDER_COLUMNS: &str = "t.id, t.user_id, t.status, t.user_coupon_id, t.total_amount, \
    t.discount_amount, t.final_amount, t.created_at, t.paid_at, t.expires_at, t.cancelled_at, \
    {items}";

/// The columns of orders read with their items (as a nested JSON array).
fn order_columns(backend: Backend) -> String {
    let items = match backend {
        Backend::Sqlite => {
            "(select json_group_array(json_array(i.product_id, i.name, i.unit_price, i.quantity, \
             i.amount) order by i.id) from order_items i where i.order_id = t.id)"
        }
        Backend::Postgres => {
            "(select coalesce(json_agg(json_build_array(i.product_id, i.name, i.unit_price, \
             i.quantity, i.amount) order by i.id), '[]') from order_items i where i.order_id = t.id)"
        }
    };
    let items = match backend {
        // SQLite keeps a JSON value's kind only straight out of a JSON function.
        Backend::Sqlite => format!("json({items})"),
        Backend::Postgres => items.to_string(),
    };
    ORDER_COLUMNS.replace("{items}", &items)
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

    // First what the jobs name: stored answers, orders (those paid or cancelled, then
    // those due to expire: taken with SKIP LOCKED, so instances share the expiry work
    // and it never waits).
    let mut first = Vec::new();
    if !keys.is_empty() {
        first.push(Stmt::read(
            backend,
            "t.scope, t.idem_key, t.fingerprint, t.status_code, t.body",
            "select scope, idem_key, fingerprint, status_code, body from idempotency_keys
             where (scope, idem_key) in (select j.value ->> 0, j.value ->> 1 from {rows})",
            vec![Param::Text(json(&keys))],
        ));
    }
    if !order_ids.is_empty() {
        first.push(Stmt::read(
            backend,
            &order_columns(backend),
            "select * from orders
             where id in (select cast(j.value ->> 0 as bigint) from {rows}) order by id{lock}",
            vec![Param::Text(id_rows(&order_ids))],
        ));
    }
    if expire_limit > 0 {
        let skip = match backend {
            Backend::Sqlite => "",
            Backend::Postgres => " for update skip locked",
        };
        first.push(Stmt::read(
            backend,
            &order_columns(backend),
            &format!(
                "select * from orders where status = 'PENDING' and expires_at <= {{p}}
                 order by expires_at, id limit {{p2}}{skip}"
            ),
            vec![Param::Int(now_ms), Param::Int(expire_limit)],
        ));
    }
    let mut texts = read_all(conn, backend, &first).await?.into_iter();
    let stored: HashMap<(String, String), StoredKey> = if keys.is_empty() {
        HashMap::new()
    } else {
        let rows: Vec<StoredKey> = decode(&texts.next().unwrap_or_default(), "stored keys")?;
        rows.into_iter()
            .map(|k| ((k.scope.clone(), k.idem_key.clone()), k))
            .collect()
    };
    let mut records: Vec<OrderRecord> = Vec::new();
    if !order_ids.is_empty() {
        records.extend(decode::<Vec<OrderRecord>>(
            &texts.next().unwrap_or_default(),
            "orders",
        )?);
    }
    let mut due = Vec::new();
    if expire_limit > 0 {
        for r in decode::<Vec<OrderRecord>>(&texts.next().unwrap_or_default(), "due orders")? {
            due.push(OrderId(r.0));
            if !order_ids.contains(&OrderId(r.0)) {
                records.push(r);
            }
        }
    }
    let mut orders = HashMap::new();
    for r in records {
        let status = OrderStatus::parse(&r.2).ok_or_else(|| unknown("order status", &r.2))?;
        let order = Order {
            id: OrderId(r.0),
            user_id: UserId(r.1),
            status,
            items: r
                .11
                .into_iter()
                .map(|i| OrderItem {
                    product_id: ProductId(i.0),
                    name: i.1,
                    unit_price: Won(i.2),
                    quantity: i.3,
                    amount: Won(i.4),
                })
                .collect(),
            user_coupon_id: r.3.map(UserCouponId),
            total_amount: Won(r.4),
            discount_amount: Won(r.5),
            final_amount: Won(r.6),
            created_at: from_millis(r.7),
            paid_at: r.8.map(from_millis),
            expires_at: from_millis(r.9),
        };
        // What paying, cancelling or expiring it touches.
        product_ids.extend(order.items.iter().map(|i| i.product_id));
        user_coupon_ids.extend(order.user_coupon_id);
        user_ids.insert(order.user_id);
        orders.insert(
            order.id,
            OrderRow {
                order,
                cancelled_at: r.10,
            },
        );
    }

    // Then what those rows name, in the lock order.
    let mut second = Vec::new();
    if !product_ids.is_empty() {
        second.push(Stmt::read(
            backend,
            "t.id, t.name, t.price, t.stock",
            "select id, name, price, stock from products
             where id in (select cast(j.value ->> 0 as bigint) from {rows}) order by id{lock}",
            vec![Param::Text(id_rows(&product_ids))],
        ));
    }
    if !coupon_ids.is_empty() {
        let columns = crate::coupon::store::COUPON_COLUMNS;
        second.push(Stmt::read(
            backend,
            &columns
                .split(", ")
                .map(|c| format!("t.{}", c.trim()))
                .collect::<Vec<_>>()
                .join(", "),
            &format!(
                "select {columns} from coupons
                 where id in (select cast(j.value ->> 0 as bigint) from {{rows}}) order by id{{lock}}"
            ),
            vec![Param::Text(id_rows(&coupon_ids))],
        ));
        // After the coupons' locks: what other batches issued before is visible.
        let pairs: Vec<[i64; 2]> = pairs.iter().map(|(c, u)| [c.0, u.0]).collect();
        second.push(Stmt::read(
            backend,
            "t.coupon_id, t.user_id",
            "select coupon_id, user_id from user_coupons
             where (coupon_id, user_id) in
                 (select cast(j.value ->> 0 as bigint), cast(j.value ->> 1 as bigint) from {rows})",
            vec![Param::Text(json(&pairs))],
        ));
    }
    if !user_coupon_ids.is_empty() {
        let lock = match backend {
            Backend::Sqlite => "",
            Backend::Postgres => " for update of uc",
        };
        second.push(Stmt::read(
            backend,
            "t.id, t.coupon_id, t.user_id, t.issued_at, t.expires_at, t.order_id, \
             t.discount_type, t.discount_value, t.min_order_amount",
            &format!(
                "select uc.id, uc.coupon_id, uc.user_id, uc.issued_at, uc.expires_at, uc.order_id,
                        c.discount_type, c.discount_value, c.min_order_amount
                 from user_coupons uc join coupons c on c.id = uc.coupon_id
                 where uc.id in (select cast(j.value ->> 0 as bigint) from {{rows}})
                 order by uc.id{lock}"
            ),
            vec![Param::Text(id_rows(&user_coupon_ids))],
        ));
    }
    if !user_ids.is_empty() {
        second.push(Stmt::read(
            backend,
            "t.id, t.balance",
            "select id, balance from users
             where id in (select cast(j.value ->> 0 as bigint) from {rows}) order by id{lock}",
            vec![Param::Text(id_rows(&user_ids))],
        ));
    }
    for (table, wanted) in [("orders", places), ("user_coupons", issues)] {
        if wanted > 0 {
            second.push(new_ids(backend, table, wanted));
        }
    }
    let mut texts = read_all(conn, backend, &second).await?.into_iter();
    let mut next = || texts.next().unwrap_or_default();

    let mut state = State::new(
        Ids::Reserved(VecDeque::new()),
        Ids::Reserved(VecDeque::new()),
    );
    if !product_ids.is_empty() {
        for (id, name, price, stock) in decode::<Vec<(i64, String, i64, i64)>>(&next(), "products")?
        {
            state.products.insert(
                ProductId(id),
                ProductRow {
                    name,
                    price: Won(price),
                    stock,
                },
            );
        }
    }
    if !coupon_ids.is_empty() {
        for row in decode::<Vec<CouponRow>>(&next(), "coupons")? {
            let c = Coupon::try_from(row)?;
            state.coupons.insert(c.id, c);
        }
        for (c, u) in decode::<Vec<(i64, i64)>>(&next(), "issued coupons")? {
            state.issued.insert((CouponId(c), UserId(u)));
        }
    }
    if !user_coupon_ids.is_empty() {
        for r in decode::<Vec<UserCouponRecord>>(&next(), "user coupons")? {
            let discount_type =
                DiscountType::parse(&r.6).ok_or_else(|| unknown("discount type", &r.6))?;
            state.user_coupons.insert(
                UserCouponId(r.0),
                UserCouponRow {
                    coupon: CouponId(r.1),
                    user: UserId(r.2),
                    issued_at: r.3,
                    expires_at: r.4,
                    order: r.5.map(OrderId),
                    discount_type,
                    discount_value: r.7,
                    min_order_amount: Won(r.8),
                },
            );
        }
    }
    if !user_ids.is_empty() {
        for (id, balance) in decode::<Vec<(i64, i64)>>(&next(), "users")? {
            state.users.insert(
                UserId(id),
                UserRow {
                    balance: Won(balance),
                },
            );
        }
    }
    if places > 0 {
        state.order_ids = ids(backend, &next())?;
    }
    if issues > 0 {
        state.user_coupon_ids = ids(backend, &next())?;
    }
    state.orders = orders;
    state.due = due;
    Ok((state, stored))
}

/// Where the ids of up to `wanted` new rows of `table` come from. SQLite: the next
/// after the largest (the writer holds the database's write lock). PostgreSQL: that
/// many values reserved from the table's sequence (unused ones leave gaps).
fn new_ids(backend: Backend, table: &str, wanted: usize) -> Stmt {
    match backend {
        Backend::Sqlite => Stmt::read(
            backend,
            "t.next",
            &format!("select coalesce(max(id), 0) + 1 as next from {table}"),
            Vec::new(),
        ),
        Backend::Postgres => Stmt::read(
            backend,
            "t.next",
            &format!(
                "select nextval(pg_get_serial_sequence('{table}', 'id')) as next
                 from generate_series(1, cast({{p}} as bigint))"
            ),
            vec![Param::Int(wanted as i64)],
        ),
    }
}

fn ids(backend: Backend, text: &str) -> Result<Ids, sqlx::Error> {
    let values: Vec<(i64,)> = decode(text, "new ids")?;
    Ok(match backend {
        Backend::Sqlite => Ids::Next(values.first().map_or(1, |v| v.0)),
        Backend::Postgres => Ids::Reserved(values.into_iter().map(|v| v.0).collect()),
    })
}

/// Writes what the batch changed, and the keys' answers, in one round trip.
pub async fn write(
    conn: &mut AnyConnection,
    backend: Backend,
    state: &State,
    keys: &[NewKey],
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    let c = &state.changes;
    let over = |template: &str, rows: String| Stmt::over(backend, template, rows);
    let mut stmts: Vec<Stmt> = Vec::new();

    if !c.new_orders.is_empty() {
        let rows: Vec<_> = c
            .new_orders
            .iter()
            .map(|id| order_values(&state.orders[id]))
            .collect();
        stmts.push(over(
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
        stmts.push(over(
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
        stmts.push(over(
            "update orders set status = j.value ->> 1, paid_at = cast(j.value ->> 2 as bigint),
                 cancelled_at = cast(j.value ->> 3 as bigint)
             from {rows} where orders.id = cast(j.value ->> 0 as bigint)",
            json(&rows),
        ));
    }
    // Stock moved per product, and `updated_at` for those an admin adjusted: one
    // update per row (a statement of PostgreSQL may not update a row twice).
    let adjusted: BTreeSet<ProductId> = c.adjustments.iter().map(|(p, _)| *p).collect();
    let stock: Vec<(i64, i64, Option<i64>)> = c
        .stock
        .iter()
        .filter(|(p, d)| **d != 0 || adjusted.contains(p))
        .map(|(p, d)| (p.0, *d, adjusted.contains(p).then_some(now_ms)))
        .collect();
    if !stock.is_empty() {
        stmts.push(over(
            "update products set stock = products.stock + cast(j.value ->> 1 as bigint),
                 updated_at = coalesce(cast(j.value ->> 2 as bigint), products.updated_at)
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
        stmts.push(over(
            "insert into stock_adjustments (product_id, delta, created_at)
             select cast(j.value ->> 0 as bigint), cast(j.value ->> 1 as bigint),
                 cast(j.value ->> 2 as bigint)
             from {rows} order by j.key",
            json(&rows),
        ));
    }
    if !c.issued.is_empty() {
        let rows: Vec<(i64, i64)> = c.issued.iter().map(|(k, n)| (k.0, *n)).collect();
        stmts.push(over(
            "update coupons set issued_quantity = coupons.issued_quantity + cast(j.value ->> 1 as bigint)
             from {rows} where coupons.id = cast(j.value ->> 0 as bigint)",
            json(&rows),
        ));
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
        stmts.push(over(
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
        stmts.push(over(
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
        stmts.push(over(
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
        stmts.push(over(
            "insert into balance_ledger (user_id, kind, amount, balance_after, order_id, created_at)
             select cast(j.value ->> 0 as bigint), j.value ->> 1, cast(j.value ->> 2 as bigint),
                 cast(j.value ->> 3 as bigint), cast(j.value ->> 4 as bigint),
                 cast(j.value ->> 5 as bigint)
             from {rows} order by j.key",
            json(&rows),
        ));
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
        stmts.push(over(
            "insert into outbox_events (id, event_type, order_id, payload, created_at, attempts,
                 next_attempt_at)
             select j.value ->> 0, j.value ->> 1, cast(j.value ->> 2 as bigint), j.value ->> 3,
                 cast(j.value ->> 4 as bigint), 0, cast(j.value ->> 4 as bigint)
             from {rows} order by j.key",
            json(&rows),
        ));
    }
    // Sales that net to zero are written too: the same rows as the jobs one at a time.
    let sales: Vec<(i64, i64, i64)> = c
        .sales
        .iter()
        .map(|((hour, p), q)| (*hour, p.0, *q))
        .collect();
    if !sales.is_empty() {
        stmts.push(over(
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
        stmts.push(over(
            "insert into idempotency_keys (scope, idem_key, fingerprint, state, status_code, body,
                 created_at)
             select j.value ->> 0, j.value ->> 1, j.value ->> 2, 'DONE',
                 cast(j.value ->> 3 as bigint), j.value ->> 4, cast(j.value ->> 5 as bigint)
             from {rows} order by j.key",
            json(&rows),
        ));
    }
    write_all(conn, backend, &stmts).await
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
