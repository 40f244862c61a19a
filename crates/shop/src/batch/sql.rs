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

use super::rules::{Ids, OrderRow, State, StockTarget, UserCouponRow, UserRow, VariantRow, Work};
use crate::clock::{from_millis, to_millis};
use crate::coupon::Coupon;
use crate::coupon::store::CouponRow;
use crate::db::Backend;
use crate::ids::{CouponId, OrderId, ProductId, UserCouponId, UserId, VariantId};
use crate::money::{DiscountType, Won};
use crate::order::Order;
use crate::outbox::Event;
use crate::product::{ProductRow, ProductStatus};

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
        let sql = backend.rows_as_json(columns, &expand(backend, inner));
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

use crate::order::store::{OrderRecord, order_columns};

impl OrderRecord {
    fn into_row(self) -> Result<OrderRow, sqlx::Error> {
        let cancelled_at = self.cancelled_at;
        Ok(OrderRow {
            order: Order::try_from(self)?,
            cancelled_at,
        })
    }
}

/// id, coupon, user, issued at, expires at, order, used at, discount type, value,
/// minimum order, product
type UserCouponRecord = (
    i64,
    i64,
    i64,
    i64,
    i64,
    Option<i64>,
    Option<i64>,
    String,
    i64,
    i64,
    Option<i64>,
);

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
    let mut adjusted_variants = BTreeSet::new();
    let mut cart_users = BTreeSet::new();
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
            Work::Checkout {
                user, user_coupon, ..
            } => {
                places += 1;
                cart_users.insert(*user);
                user_ids.insert(*user);
                user_coupon_ids.extend(*user_coupon);
            }
            Work::Pay { order, caller } | Work::Cancel { order, caller } => {
                order_ids.insert(*order);
                user_ids.insert(*caller);
            }
            Work::Ship { order, .. } | Work::Deliver { order } => {
                order_ids.insert(*order);
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
            Work::AdjustStock { target, .. } => match target {
                StockTarget::Product(p) => {
                    product_ids.insert(*p);
                }
                StockTarget::Variant(v) => {
                    adjusted_variants.insert(*v);
                }
            },
            Work::ExpireDue { limit } => expire_limit += limit,
        }
    }

    // First what the jobs name: stored answers, carts, orders (those paid, cancelled
    // or shipped, then those due to expire: taken with SKIP LOCKED, so instances share
    // the expiry work and it never waits), and the products of variants adjusted.
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
    if !cart_users.is_empty() {
        let lock = match backend {
            Backend::Sqlite => "",
            Backend::Postgres => " for update of ci",
        };
        first.push(Stmt::read(
            backend,
            "t.user_id, t.variant_id, t.quantity, t.product_id",
            &format!(
                "select ci.user_id, ci.variant_id, ci.quantity, v.product_id
                 from cart_items ci join variants v on v.id = ci.variant_id
                 where ci.user_id in (select cast(j.value ->> 0 as bigint) from {{rows}})
                 order by ci.user_id, ci.added_at, ci.variant_id{lock}"
            ),
            vec![Param::Text(id_rows(&cart_users))],
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
    if !adjusted_variants.is_empty() {
        first.push(Stmt::read(
            backend,
            "t.product_id",
            "select product_id from variants
             where id in (select cast(j.value ->> 0 as bigint) from {rows})",
            vec![Param::Text(id_rows(&adjusted_variants))],
        ));
    }
    let mut texts = read_all(conn, backend, &first).await?.into_iter();
    let mut next = || texts.next().unwrap_or_default();
    let stored: HashMap<(String, String), StoredKey> = if keys.is_empty() {
        HashMap::new()
    } else {
        let rows: Vec<StoredKey> = decode(&next(), "stored keys")?;
        rows.into_iter()
            .map(|k| ((k.scope.clone(), k.idem_key.clone()), k))
            .collect()
    };
    let mut carts: HashMap<UserId, Vec<(VariantId, i64)>> = HashMap::new();
    if !cart_users.is_empty() {
        for (user, variant, quantity, product) in
            decode::<Vec<(i64, i64, i64, i64)>>(&next(), "carts")?
        {
            carts
                .entry(UserId(user))
                .or_default()
                .push((VariantId(variant), quantity));
            product_ids.insert(ProductId(product));
        }
    }
    let mut records: Vec<OrderRecord> = Vec::new();
    if !order_ids.is_empty() {
        records.extend(decode::<Vec<OrderRecord>>(&next(), "orders")?);
    }
    let mut due = Vec::new();
    if expire_limit > 0 {
        for r in decode::<Vec<OrderRecord>>(&next(), "due orders")? {
            due.push(OrderId(r.id));
            if !order_ids.contains(&OrderId(r.id)) {
                records.push(r);
            }
        }
    }
    if !adjusted_variants.is_empty() {
        for (product,) in decode::<Vec<(i64,)>>(&next(), "adjusted variants")? {
            product_ids.insert(ProductId(product));
        }
    }
    let mut orders = HashMap::new();
    for r in records {
        let row = r.into_row()?;
        let order = &row.order;
        // What paying, cancelling or expiring it touches.
        product_ids.extend(order.items.iter().map(|i| i.product_id));
        user_coupon_ids.extend(order.user_coupon_id);
        user_ids.insert(order.user_id);
        orders.insert(order.id, row);
    }

    // Then what those rows name, in the lock order: every variant of each product
    // (locked), the products (read after their variants' locks, so a status change
    // that took those locks first is seen), coupons, user coupons, users.
    let mut second = Vec::new();
    if !product_ids.is_empty() {
        second.push(Stmt::read(
            backend,
            "t.id, t.product_id, t.sku, t.options, t.price, t.stock",
            "select id, product_id, sku, options, price, stock from variants
             where product_id in (select cast(j.value ->> 0 as bigint) from {rows})
             order by id{lock}",
            vec![Param::Text(id_rows(&product_ids))],
        ));
        second.push(Stmt::read(
            backend,
            "t.id, t.name, t.description, t.status, t.options, t.images, t.created_at, \
             t.updated_at",
            "select id, name, description, status, options, images, created_at, updated_at
             from products where id in (select cast(j.value ->> 0 as bigint) from {rows})",
            vec![Param::Text(id_rows(&product_ids))],
        ));
    }
    if !coupon_ids.is_empty() {
        let columns = crate::coupon::store::COUPON_COLUMNS;
        second.push(Stmt::read(
            backend,
            &columns
                .split(',')
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
            "t.id, t.coupon_id, t.user_id, t.issued_at, t.expires_at, t.order_id, t.used_at, \
             t.discount_type, t.discount_value, t.min_order_amount, t.product_id",
            &format!(
                "select uc.id, uc.coupon_id, uc.user_id, uc.issued_at, uc.expires_at, uc.order_id,
                        uc.used_at, c.discount_type, c.discount_value, c.min_order_amount,
                        c.product_id
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
            "t.id, t.balance, t.charge_day, t.charged_today",
            "select id, balance, charge_day, charged_today from users
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
        type VariantRecord = (i64, i64, Option<String>, String, i64, i64);
        for (id, product, sku, options, price, stock) in
            decode::<Vec<VariantRecord>>(&next(), "variants")?
        {
            state.variants.insert(
                VariantId(id),
                VariantRow {
                    product: ProductId(product),
                    sku,
                    options: decode(&options, "a variant's options")?,
                    price: Won(price),
                    stock,
                },
            );
            state
                .product_variants
                .entry(ProductId(product))
                .or_default()
                .push(VariantId(id));
        }
        type ProductRecord = (i64, String, String, String, String, String, i64, i64);
        for (id, name, description, status, options, images, created, updated) in
            decode::<Vec<ProductRecord>>(&next(), "products")?
        {
            let status =
                ProductStatus::parse(&status).ok_or_else(|| unknown("product status", &status))?;
            state.products.insert(
                ProductId(id),
                ProductRow {
                    id: ProductId(id),
                    name,
                    description,
                    status,
                    options: decode(&options, "a product's options")?,
                    images: decode(&images, "a product's images")?,
                    created_at: from_millis(created),
                    updated_at: from_millis(updated),
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
                DiscountType::parse(&r.7).ok_or_else(|| unknown("discount type", &r.7))?;
            state.user_coupons.insert(
                UserCouponId(r.0),
                UserCouponRow {
                    coupon: CouponId(r.1),
                    user: UserId(r.2),
                    issued_at: r.3,
                    expires_at: r.4,
                    order: r.5.map(OrderId),
                    used_at: r.6,
                    discount_type,
                    discount_value: r.8,
                    min_order_amount: Won(r.9),
                    product: r.10.map(ProductId),
                },
            );
        }
    }
    if !user_ids.is_empty() {
        for (id, balance, day, charged) in
            decode::<Vec<(i64, i64, Option<i64>, i64)>>(&next(), "users")?
        {
            state.users.insert(
                UserId(id),
                UserRow {
                    balance: Won(balance),
                    charge_day: day,
                    charged_today: Won(charged),
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
    state.carts = carts;
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
                 discount_amount, final_amount, created_at, paid_at, expires_at, cancelled_at,
                 shipped_at, delivered_at, tracking_number)
             select cast(j.value ->> 0 as bigint), cast(j.value ->> 1 as bigint), j.value ->> 2,
                 cast(j.value ->> 3 as bigint), cast(j.value ->> 4 as bigint),
                 cast(j.value ->> 5 as bigint), cast(j.value ->> 6 as bigint),
                 cast(j.value ->> 7 as bigint), cast(j.value ->> 8 as bigint),
                 cast(j.value ->> 9 as bigint), cast(j.value ->> 10 as bigint),
                 cast(j.value ->> 11 as bigint), cast(j.value ->> 12 as bigint), j.value ->> 13
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
                        i.variant_id.0,
                        i.name.as_str(),
                        json(&i.options),
                        i.unit_price.0,
                        i.quantity,
                        i.amount.0,
                    )
                })
            })
            .collect();
        stmts.push(over(
            "insert into order_items (order_id, product_id, variant_id, name, options, unit_price,
                 quantity, amount)
             select cast(j.value ->> 0 as bigint), cast(j.value ->> 1 as bigint),
                 cast(j.value ->> 2 as bigint), j.value ->> 3, j.value ->> 4,
                 cast(j.value ->> 5 as bigint), cast(j.value ->> 6 as bigint),
                 cast(j.value ->> 7 as bigint)
             from {rows} order by j.key",
            json(&items),
        ));
    }
    if !c.orders.is_empty() {
        let rows: Vec<_> = c
            .orders
            .iter()
            .map(|id| order_values(&state.orders[id]))
            .collect();
        stmts.push(over(
            "update orders set status = j.value ->> 2, paid_at = cast(j.value ->> 8 as bigint),
                 cancelled_at = cast(j.value ->> 10 as bigint),
                 shipped_at = cast(j.value ->> 11 as bigint),
                 delivered_at = cast(j.value ->> 12 as bigint), tracking_number = j.value ->> 13
             from {rows} where orders.id = cast(j.value ->> 0 as bigint)",
            json(&rows),
        ));
    }
    // Stock moved per variant, and `updated_at` of the variants and products an admin
    // adjusted: one update per row (a statement of PostgreSQL may not update a row
    // twice).
    let adjusted: BTreeSet<VariantId> = c.adjustments.iter().map(|(v, _, _)| *v).collect();
    let stock: Vec<(i64, i64, Option<i64>)> = c
        .stock
        .iter()
        .filter(|(v, d)| **d != 0 || adjusted.contains(v))
        .map(|(v, d)| (v.0, *d, adjusted.contains(v).then_some(now_ms)))
        .collect();
    if !stock.is_empty() {
        stmts.push(over(
            "update variants set stock = variants.stock + cast(j.value ->> 1 as bigint),
                 updated_at = coalesce(cast(j.value ->> 2 as bigint), variants.updated_at)
             from {rows} where variants.id = cast(j.value ->> 0 as bigint)",
            json(&stock),
        ));
    }
    if !c.adjustments.is_empty() {
        let rows: Vec<_> = c
            .adjustments
            .iter()
            .map(|(v, p, d)| (v.0, p.0, *d, now_ms))
            .collect();
        stmts.push(over(
            "insert into stock_adjustments (variant_id, product_id, delta, created_at)
             select cast(j.value ->> 0 as bigint), cast(j.value ->> 1 as bigint),
                 cast(j.value ->> 2 as bigint), cast(j.value ->> 3 as bigint)
             from {rows} order by j.key",
            json(&rows),
        ));
        let products: BTreeSet<i64> = c.adjustments.iter().map(|(_, p, _)| p.0).collect();
        let rows: Vec<_> = products.iter().map(|p| (*p, now_ms)).collect();
        stmts.push(over(
            "update products set updated_at = cast(j.value ->> 1 as bigint)
             from {rows} where products.id = cast(j.value ->> 0 as bigint)",
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
                    uc.used_at,
                )
            })
            .collect();
        stmts.push(over(
            "insert into user_coupons (id, coupon_id, user_id, issued_at, expires_at, order_id,
                 used_at)
             select cast(j.value ->> 0 as bigint), cast(j.value ->> 1 as bigint),
                 cast(j.value ->> 2 as bigint), cast(j.value ->> 3 as bigint),
                 cast(j.value ->> 4 as bigint), cast(j.value ->> 5 as bigint),
                 cast(j.value ->> 6 as bigint)
             from {rows} order by j.key",
            json(&rows),
        ));
    }
    let held: Vec<_> = c
        .user_coupons
        .iter()
        .filter(|id| !c.new_user_coupons.contains(id))
        .map(|id| {
            let uc = &state.user_coupons[id];
            (id.0, uc.order.map(|o| o.0), uc.used_at)
        })
        .collect();
    if !held.is_empty() {
        stmts.push(over(
            "update user_coupons set order_id = cast(j.value ->> 1 as bigint),
                 used_at = cast(j.value ->> 2 as bigint)
             from {rows} where user_coupons.id = cast(j.value ->> 0 as bigint)",
            json(&held),
        ));
    }
    if !c.history.is_empty() {
        let rows: Vec<_> = c
            .history
            .iter()
            .map(|(uc, action, order)| (uc.0, action.as_str(), order.map(|o| o.0), now_ms))
            .collect();
        stmts.push(over(
            "insert into coupon_history (user_coupon_id, action, order_id, at)
             select cast(j.value ->> 0 as bigint), j.value ->> 1, cast(j.value ->> 2 as bigint),
                 cast(j.value ->> 3 as bigint)
             from {rows} order by j.key",
            json(&rows),
        ));
    }
    // Each user's balance and day's charges, in one update per row.
    let users: BTreeSet<UserId> = c
        .balances
        .iter()
        .filter(|(_, d)| **d != 0)
        .map(|(u, _)| *u)
        .chain(c.daily.iter().copied())
        .collect();
    if !users.is_empty() {
        let rows: Vec<_> = users
            .iter()
            .map(|u| {
                let row = &state.users[u];
                let daily = c.daily.contains(u);
                (
                    u.0,
                    c.balances.get(u).copied().unwrap_or(0),
                    daily.then_some(row.charge_day).flatten(),
                    daily.then_some(row.charged_today.0),
                )
            })
            .collect();
        stmts.push(over(
            "update users set balance = users.balance + cast(j.value ->> 1 as bigint),
                 charge_day = coalesce(cast(j.value ->> 2 as bigint), users.charge_day),
                 charged_today = coalesce(cast(j.value ->> 3 as bigint), users.charged_today)
             from {rows} where users.id = cast(j.value ->> 0 as bigint)",
            json(&rows),
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
                    e.balance_after.0 - e.amount.0,
                    e.balance_after.0,
                    e.order.map(|o| o.0),
                    now_ms,
                )
            })
            .collect();
        stmts.push(over(
            "insert into balance_ledger (user_id, kind, amount, balance_before, balance_after,
                 order_id, created_at)
             select cast(j.value ->> 0 as bigint), j.value ->> 1, cast(j.value ->> 2 as bigint),
                 cast(j.value ->> 3 as bigint), cast(j.value ->> 4 as bigint),
                 cast(j.value ->> 5 as bigint), cast(j.value ->> 6 as bigint)
             from {rows} order by j.key",
            json(&rows),
        ));
    }
    if !c.payments.is_empty() {
        let rows: Vec<_> = c
            .payments
            .iter()
            .map(|p| {
                (
                    p.order.0,
                    p.status.as_str(),
                    p.amount.0,
                    p.failure_code,
                    now_ms,
                )
            })
            .collect();
        stmts.push(over(
            "insert into payments (order_id, status, amount, failure_code, at)
             select cast(j.value ->> 0 as bigint), j.value ->> 1, cast(j.value ->> 2 as bigint),
                 j.value ->> 3, cast(j.value ->> 4 as bigint)
             from {rows} order by j.key",
            json(&rows),
        ));
    }
    if !c.carts_ordered.is_empty() {
        let lines: Vec<_> = c.carts_ordered.iter().map(|(u, v)| (u.0, v.0)).collect();
        stmts.push(over(
            "delete from cart_items
             where (user_id, variant_id) in
                 (select cast(j.value ->> 0 as bigint), cast(j.value ->> 1 as bigint) from {rows})",
            json(&lines),
        ));
        let users: BTreeSet<UserId> = c.carts_ordered.iter().map(|(u, _)| *u).collect();
        let rows: Vec<_> = users.iter().map(|u| (u.0, now_ms)).collect();
        stmts.push(over(
            "update carts set updated_at = cast(j.value ->> 1 as bigint)
             from {rows} where carts.user_id = cast(j.value ->> 0 as bigint)",
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
    let sales: Vec<(i64, i64, i64, i64)> = c
        .sales
        .iter()
        .map(|((hour, p), (q, won))| (*hour, p.0, *q, *won))
        .collect();
    if !sales.is_empty() {
        stmts.push(over(
            "insert into product_sales_hourly (hour, product_id, quantity, amount)
             select cast(j.value ->> 0 as bigint), cast(j.value ->> 1 as bigint),
                 cast(j.value ->> 2 as bigint), cast(j.value ->> 3 as bigint)
             from {rows} where true order by j.key
             on conflict (hour, product_id)
             do update set quantity = product_sales_hourly.quantity + excluded.quantity,
                 amount = product_sales_hourly.amount + excluded.amount",
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

/// An order's columns, in the order the statements read them.
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
    Option<i64>,
    Option<i64>,
    Option<String>,
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
        o.shipped_at.map(to_millis),
        o.delivered_at.map(to_millis),
        o.tracking_number.clone(),
    )
}
