//! SQL for coupons and issued (user) coupons.

use chrono::{DateTime, Utc};
use sqlx::{Any, AnyConnection, Executor, FromRow};

use super::{Coupon, CouponError, CouponStatus, UserCouponStatus, UserCouponView};
use crate::clock::{from_millis, to_millis};
use crate::http::Paging;
use crate::ids::{CouponId, OrderId, ProductId, UserCouponId, UserId};
use crate::money::{DiscountType, Won};

/// A coupon as stored (read by row, or from a JSON array of its columns in order).
#[derive(FromRow, serde::Deserialize)]
pub struct CouponRow {
    id: i64,
    name: String,
    discount_type: String,
    discount_value: i64,
    total_quantity: i64,
    issued_quantity: i64,
    min_order_amount: i64,
    issue_starts_at: Option<i64>,
    issue_ends_at: Option<i64>,
    valid_days: i64,
    status: String,
    product_id: Option<i64>,
}

pub const COUPON_COLUMNS: &str = "id, name, discount_type, discount_value, total_quantity, \
    issued_quantity, min_order_amount, issue_starts_at, issue_ends_at, valid_days, status, \
    product_id";

impl TryFrom<CouponRow> for Coupon {
    type Error = sqlx::Error;

    fn try_from(r: CouponRow) -> Result<Self, sqlx::Error> {
        let discount_type = DiscountType::parse(&r.discount_type).ok_or_else(|| {
            sqlx::Error::Decode(format!("unknown discount type `{}`", r.discount_type).into())
        })?;
        let status = CouponStatus::parse(&r.status).ok_or_else(|| {
            sqlx::Error::Decode(format!("unknown coupon status `{}`", r.status).into())
        })?;
        Ok(Coupon {
            id: CouponId(r.id),
            name: r.name,
            discount_type,
            discount_value: r.discount_value,
            total_quantity: r.total_quantity,
            issued_quantity: r.issued_quantity,
            min_order_amount: Won(r.min_order_amount),
            issue_starts_at: r.issue_starts_at.map(from_millis),
            issue_ends_at: r.issue_ends_at.map(from_millis),
            valid_days: r.valid_days,
            status,
            product_id: r.product_id.map(ProductId),
        })
    }
}

/// A coupon definition to create (validated by the caller).
pub struct NewCoupon {
    pub name: String,
    pub discount_type: DiscountType,
    pub discount_value: i64,
    pub total_quantity: i64,
    pub min_order_amount: Won,
    pub issue_starts_at: Option<DateTime<Utc>>,
    pub issue_ends_at: Option<DateTime<Utc>>,
    pub valid_days: i64,
    pub product_id: Option<ProductId>,
}

pub async fn create(
    conn: &mut AnyConnection,
    c: &NewCoupon,
    now_ms: i64,
) -> Result<Coupon, sqlx::Error> {
    let row: CouponRow = sqlx::query_as(&format!(
        "insert into coupons (name, discount_type, discount_value, total_quantity, issued_quantity,
            min_order_amount, issue_starts_at, issue_ends_at, valid_days, created_at, product_id)
         values ($1, $2, $3, $4, 0, $5, $6, $7, $8, $9, $10) returning {COUPON_COLUMNS}"
    ))
    .bind(&c.name)
    .bind(c.discount_type.as_str())
    .bind(c.discount_value)
    .bind(c.total_quantity)
    .bind(c.min_order_amount.0)
    .bind(c.issue_starts_at.map(to_millis))
    .bind(c.issue_ends_at.map(to_millis))
    .bind(c.valid_days)
    .bind(now_ms)
    .bind(c.product_id.map(|p| p.0))
    .fetch_one(conn)
    .await?;
    Coupon::try_from(row)
}

pub async fn get(
    ex: impl Executor<'_, Database = Any>,
    id: CouponId,
) -> Result<Coupon, CouponError> {
    let row: Option<CouponRow> = sqlx::query_as(&format!(
        "select {COUPON_COLUMNS} from coupons where id = $1"
    ))
    .bind(id.0)
    .fetch_optional(ex)
    .await?;
    row.map(Coupon::try_from)
        .transpose()?
        .ok_or(CouponError::NotFound(id))
}

/// Every refusal that reading can tell, in the order the write path checks them:
/// unknown coupon, unknown user, inactive, outside the issue period, already issued,
/// sold out. Run on the read pool first, a rush of refusals never waits for the
/// writer. Each is true at the moment read (an admin edit may lift some later: the
/// gates keep those only until the next edit).
pub async fn precheck(
    conn: &mut AnyConnection,
    coupon_id: CouponId,
    user: UserId,
    now: DateTime<Utc>,
) -> Result<Coupon, CouponError> {
    let coupon = get(&mut *conn, coupon_id).await?;
    if !crate::balance::store::user_exists(&mut *conn, user).await? {
        return Err(CouponError::UserNotFound(user));
    }
    if coupon.status != CouponStatus::Active {
        return Err(CouponError::Inactive);
    }
    if !coupon.in_issue_period(now) {
        return Err(CouponError::NotInIssuePeriod);
    }
    let held: Option<(i64,)> =
        sqlx::query_as("select id from user_coupons where coupon_id = $1 and user_id = $2")
            .bind(coupon_id.0)
            .bind(user.0)
            .fetch_optional(&mut *conn)
            .await?;
    if held.is_some() {
        return Err(CouponError::AlreadyIssued);
    }
    if coupon.issued_quantity >= coupon.total_quantity {
        return Err(CouponError::SoldOut);
    }
    Ok(coupon)
}

#[derive(FromRow)]
struct UserCouponRow {
    id: i64,
    coupon_id: i64,
    user_id: i64,
    issued_at: i64,
    expires_at: i64,
    order_id: Option<i64>,
    used_at: Option<i64>,
    name: String,
    discount_type: String,
    discount_value: i64,
    min_order_amount: i64,
    product_id: Option<i64>,
}

impl UserCouponRow {
    fn view(self, now: DateTime<Utc>) -> Result<UserCouponView, sqlx::Error> {
        let order_id = self.order_id.map(OrderId);
        let expires_at = from_millis(self.expires_at);
        let discount_type = DiscountType::parse(&self.discount_type).ok_or_else(|| {
            sqlx::Error::Decode(format!("unknown discount type `{}`", self.discount_type).into())
        })?;
        Ok(UserCouponView {
            id: UserCouponId(self.id),
            coupon_id: CouponId(self.coupon_id),
            user_id: UserId(self.user_id),
            status: UserCouponStatus::of(order_id, expires_at, now),
            name: self.name,
            discount_type,
            discount_value: self.discount_value,
            min_order_amount: Won(self.min_order_amount),
            issued_at: from_millis(self.issued_at),
            expires_at,
            used_at: self.used_at.map(from_millis),
            order_id,
            product_id: self.product_id.map(ProductId),
        })
    }
}

const USER_COUPON_SELECT: &str = "select uc.id, uc.coupon_id, uc.user_id, uc.issued_at, \
    uc.expires_at, uc.order_id, uc.used_at, c.name, c.discount_type, c.discount_value, \
    c.min_order_amount, c.product_id from user_coupons uc join coupons c on c.id = uc.coupon_id";

/// A user's coupons, newest first (`limit + 1` rows).
pub async fn list_for_user(
    ex: impl Executor<'_, Database = Any>,
    user: UserId,
    paging: Paging,
    now: DateTime<Utc>,
) -> Result<Vec<UserCouponView>, sqlx::Error> {
    let rows: Vec<UserCouponRow> = sqlx::query_as(&format!(
        "{USER_COUPON_SELECT} where uc.user_id = $1 and uc.id < $2 order by uc.id desc limit $3"
    ))
    .bind(user.0)
    .bind(paging.after.unwrap_or(i64::MAX))
    .bind(paging.limit + 1)
    .fetch_all(ex)
    .await?;
    rows.into_iter().map(|r| r.view(now)).collect()
}

/// Who holds `coupon`, or `None` when more than `max` do.
pub async fn holders(
    ex: impl Executor<'_, Database = Any>,
    coupon: CouponId,
    max: usize,
) -> Result<Option<std::sync::Arc<std::collections::HashSet<UserId>>>, sqlx::Error> {
    let rows: Vec<(i64,)> =
        sqlx::query_as("select user_id from user_coupons where coupon_id = $1 limit $2")
            .bind(coupon.0)
            .bind(max as i64 + 1)
            .fetch_all(ex)
            .await?;
    if rows.len() > max {
        return Ok(None);
    }
    Ok(Some(std::sync::Arc::new(
        rows.into_iter().map(|(u,)| UserId(u)).collect(),
    )))
}

/// Coupons, newest first (`limit + 1` rows): every one, or (`open_at`) only those that
/// can be issued at that moment: ACTIVE, within the issue period, not sold out.
pub async fn list(
    ex: impl Executor<'_, Database = Any>,
    open_at: Option<DateTime<Utc>>,
    paging: Paging,
) -> Result<Vec<Coupon>, sqlx::Error> {
    let open = if open_at.is_some() {
        " and status = 'ACTIVE' and issued_quantity < total_quantity
          and (issue_starts_at is null or issue_starts_at <= $3)
          and (issue_ends_at is null or issue_ends_at > $3)"
    } else {
        ""
    };
    let sql = format!(
        "select {COUPON_COLUMNS} from coupons where id < $1{open} order by id desc limit $2"
    );
    let mut query = sqlx::query_as::<_, CouponRow>(&sql)
        .bind(paging.after.unwrap_or(i64::MAX))
        .bind(paging.limit + 1);
    if let Some(at) = open_at {
        query = query.bind(to_millis(at));
    }
    query
        .fetch_all(ex)
        .await?
        .into_iter()
        .map(Coupon::try_from)
        .collect()
}

/// What an admin edit changes; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct CouponChanges {
    pub name: Option<String>,
    pub status: Option<CouponStatus>,
    pub total_quantity: Option<i64>,
    /// `Some(None)`: issue never closes.
    pub issue_ends_at: Option<Option<DateTime<Utc>>>,
}

/// Applies an admin edit in the caller's transaction. The coupon row is locked first
/// (`FOR UPDATE` on PostgreSQL, in the same order as the write path's batches take
/// it; SQLite's writer holds the database's write lock), so the issued count it checks
/// the new total against cannot move before the commit.
pub async fn update(
    conn: &mut AnyConnection,
    backend: crate::db::Backend,
    id: CouponId,
    changes: &CouponChanges,
) -> Result<Coupon, CouponError> {
    let lock = match backend {
        crate::db::Backend::Sqlite => "",
        crate::db::Backend::Postgres => " for update",
    };
    let row: Option<CouponRow> = sqlx::query_as(&format!(
        "select {COUPON_COLUMNS} from coupons where id = $1{lock}"
    ))
    .bind(id.0)
    .fetch_optional(&mut *conn)
    .await?;
    let mut coupon = Coupon::try_from(row.ok_or(CouponError::NotFound(id))?)?;
    super::apply_changes(&mut coupon, changes)?;
    // The coupon as stored (timestamps in milliseconds, as every read answers them).
    let row: CouponRow = sqlx::query_as(&format!(
        "update coupons set name = $1, status = $2, total_quantity = $3, issue_ends_at = $4
         where id = $5 returning {COUPON_COLUMNS}"
    ))
    .bind(&coupon.name)
    .bind(coupon.status.as_str())
    .bind(coupon.total_quantity)
    .bind(coupon.issue_ends_at.map(to_millis))
    .bind(id.0)
    .fetch_one(&mut *conn)
    .await?;
    Ok(Coupon::try_from(row)?)
}

/// Whether product `id` exists.
pub async fn product_exists(conn: &mut AnyConnection, id: ProductId) -> Result<bool, sqlx::Error> {
    let row: Option<(i64,)> = sqlx::query_as("select id from products where id = $1")
        .bind(id.0)
        .fetch_optional(conn)
        .await?;
    Ok(row.is_some())
}

/// The history of `user`'s coupon `id`, oldest first (EXPIRED derived at `now`);
/// someone else's coupon is not found, as a missing one.
pub async fn history(
    conn: &mut AnyConnection,
    user: UserId,
    id: UserCouponId,
    now: DateTime<Utc>,
) -> Result<Vec<super::HistoryEntry>, CouponError> {
    let row: Option<(i64, Option<i64>)> = sqlx::query_as(
        "select expires_at, order_id from user_coupons where id = $1 and user_id = $2",
    )
    .bind(id.0)
    .bind(user.0)
    .fetch_optional(&mut *conn)
    .await?;
    let (expires_at, order) = row.ok_or(CouponError::UserCouponNotFound(id))?;
    let rows: Vec<(String, Option<i64>, i64)> = sqlx::query_as(
        "select action, order_id, at from coupon_history where user_coupon_id = $1 order by id",
    )
    .bind(id.0)
    .fetch_all(&mut *conn)
    .await?;
    let recorded = rows
        .into_iter()
        .map(|(action, order, at)| {
            Ok(super::HistoryEntry {
                action: super::CouponAction::parse(&action).ok_or_else(|| {
                    sqlx::Error::Decode(format!("unknown coupon action `{action}`").into())
                })?,
                order_id: order.map(OrderId),
                at: from_millis(at),
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(super::history(
        recorded,
        order.is_some(),
        from_millis(expires_at),
        now,
    ))
}
