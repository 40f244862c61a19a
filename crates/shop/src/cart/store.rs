//! Carts in the database. Reads take any connection; writes run in the writer's
//! transaction (`Writer::transact`), the cart's row locked first so that two changes
//! of one cart take turns (on PostgreSQL; SQLite has one writer).

use sqlx::{AnyConnection, FromRow};

use super::{Cart, CartError, CartItem, MAX_LINES};
use crate::clock::from_millis;
use crate::ids::{ProductId, UserId, VariantId};
use crate::money::Won;
use crate::product::{Image, OptionValues, ProductStatus};

use crate::db::corrupt;

#[derive(FromRow)]
struct LineRecord {
    variant_id: i64,
    quantity: i64,
    product_id: i64,
    price: i64,
    stock: i64,
    options: String,
    name: String,
    status: String,
    images: String,
}

impl TryFrom<LineRecord> for CartItem {
    type Error = sqlx::Error;

    fn try_from(r: LineRecord) -> Result<Self, sqlx::Error> {
        let options: OptionValues =
            serde_json::from_str(&r.options).map_err(|e| corrupt("a variant's options", e))?;
        let images: Vec<Image> =
            serde_json::from_str(&r.images).map_err(|e| corrupt("a product's images", e))?;
        let status = ProductStatus::parse(&r.status)
            .ok_or_else(|| corrupt("an unknown product status", &r.status))?;
        Ok(CartItem {
            product_id: ProductId(r.product_id),
            variant_id: VariantId(r.variant_id),
            name: r.name,
            options,
            image: images.into_iter().next().map(|i| i.url),
            unit_price: Won(r.price),
            quantity: r.quantity,
            amount: Won(r.price.saturating_mul(r.quantity)),
            available: status == ProductStatus::Active && r.stock >= r.quantity,
        })
    }
}

/// The user's cart at current prices (empty when never used).
pub async fn get(conn: &mut AnyConnection, user: UserId) -> Result<Cart, CartError> {
    let updated_at: Option<i64> =
        sqlx::query_scalar("select updated_at from carts where user_id = $1")
            .bind(user.0)
            .fetch_optional(&mut *conn)
            .await?;
    let lines: Vec<LineRecord> = sqlx::query_as(
        "select ci.variant_id, ci.quantity, v.product_id, v.price, v.stock, v.options,
                p.name, p.status, p.images
         from cart_items ci
             join variants v on v.id = ci.variant_id
             join products p on p.id = v.product_id
         where ci.user_id = $1
         order by ci.added_at, ci.variant_id",
    )
    .bind(user.0)
    .fetch_all(&mut *conn)
    .await?;
    let items = lines
        .into_iter()
        .map(CartItem::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    let total = items
        .iter()
        .fold(0i64, |sum, i| sum.saturating_add(i.amount.0));
    Ok(Cart {
        user_id: user,
        items,
        total_amount: Won(total),
        updated_at: updated_at.map(from_millis),
    })
}

/// Takes the cart's row (creating it), so changes of one cart take turns.
async fn touch(conn: &mut AnyConnection, user: UserId, now_ms: i64) -> Result<(), CartError> {
    let exists: Option<i64> = sqlx::query_scalar("select id from users where id = $1")
        .bind(user.0)
        .fetch_optional(&mut *conn)
        .await?;
    if exists.is_none() {
        return Err(CartError::UserNotFound(user));
    }
    sqlx::query(
        "insert into carts (user_id, updated_at) values ($1, $2)
         on conflict (user_id) do update set updated_at = excluded.updated_at",
    )
    .bind(user.0)
    .bind(now_ms)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Sets a line's quantity, adding the line if absent. A new line must be of a product
/// on sale, and the cart must have room for it.
pub async fn set_line(
    conn: &mut AnyConnection,
    user: UserId,
    variant: VariantId,
    quantity: i64,
    now_ms: i64,
) -> Result<Cart, CartError> {
    let status: Option<(i64, String)> = sqlx::query_as(
        "select p.id, p.status from variants v join products p on p.id = v.product_id
         where v.id = $1",
    )
    .bind(variant.0)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((product, status)) = status else {
        return Err(CartError::VariantNotFound(variant));
    };
    touch(conn, user, now_ms).await?;
    let updated =
        sqlx::query("update cart_items set quantity = $3 where user_id = $1 and variant_id = $2")
            .bind(user.0)
            .bind(variant.0)
            .bind(quantity)
            .execute(&mut *conn)
            .await?
            .rows_affected();
    if updated == 0 {
        if ProductStatus::parse(&status) != Some(ProductStatus::Active) {
            return Err(CartError::ProductNotAvailable(ProductId(product)));
        }
        let lines: i64 = sqlx::query_scalar("select count(*) from cart_items where user_id = $1")
            .bind(user.0)
            .fetch_one(&mut *conn)
            .await?;
        if lines >= MAX_LINES {
            return Err(CartError::Full);
        }
        sqlx::query(
            "insert into cart_items (user_id, variant_id, quantity, added_at)
             values ($1, $2, $3, $4)",
        )
        .bind(user.0)
        .bind(variant.0)
        .bind(quantity)
        .bind(now_ms)
        .execute(&mut *conn)
        .await?;
    }
    get(conn, user).await
}

/// Removes a line (a line not in the cart is already removed).
pub async fn remove_line(
    conn: &mut AnyConnection,
    user: UserId,
    variant: VariantId,
    now_ms: i64,
) -> Result<Cart, CartError> {
    touch(conn, user, now_ms).await?;
    sqlx::query("delete from cart_items where user_id = $1 and variant_id = $2")
        .bind(user.0)
        .bind(variant.0)
        .execute(&mut *conn)
        .await?;
    get(conn, user).await
}

/// Removes every line.
pub async fn clear(conn: &mut AnyConnection, user: UserId, now_ms: i64) -> Result<Cart, CartError> {
    touch(conn, user, now_ms).await?;
    sqlx::query("delete from cart_items where user_id = $1")
        .bind(user.0)
        .execute(&mut *conn)
        .await?;
    get(conn, user).await
}
