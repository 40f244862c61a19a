//! SQL for products and stock.

use sqlx::{Any, AnyConnection, Executor};

use super::{Product, ProductError};
use crate::http::Paging;
use crate::ids::ProductId;
use crate::money::Won;

const COLUMNS: &str = "id, name, price, stock";

pub async fn create(
    conn: &mut AnyConnection,
    name: &str,
    price: Won,
    stock: i64,
    now_ms: i64,
) -> Result<Product, sqlx::Error> {
    let product: Product = sqlx::query_as(&format!(
        "insert into products (name, price, stock, created_at, updated_at)
         values ($1, $2, $3, $4, $4) returning {COLUMNS}"
    ))
    .bind(name)
    .bind(price.0)
    .bind(stock)
    .bind(now_ms)
    .fetch_one(&mut *conn)
    .await?;
    record_adjustment(conn, product.id, stock, now_ms).await?;
    Ok(product)
}

async fn record_adjustment(
    conn: &mut AnyConnection,
    product: ProductId,
    delta: i64,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into stock_adjustments (product_id, delta, created_at) values ($1, $2, $3)",
    )
    .bind(product.0)
    .bind(delta)
    .bind(now_ms)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn get(
    ex: impl Executor<'_, Database = Any>,
    id: ProductId,
) -> Result<Product, ProductError> {
    sqlx::query_as(&format!("select {COLUMNS} from products where id = $1"))
        .bind(id.0)
        .fetch_optional(ex)
        .await?
        .ok_or(ProductError::NotFound(id))
}

/// Products in id order (`limit + 1` rows).
pub async fn list(
    ex: impl Executor<'_, Database = Any>,
    paging: Paging,
) -> Result<Vec<Product>, sqlx::Error> {
    sqlx::query_as(&format!(
        "select {COLUMNS} from products where id > $1 order by id limit $2"
    ))
    .bind(paging.after.unwrap_or(0))
    .bind(paging.limit + 1)
    .fetch_all(ex)
    .await
}

/// Renames and/or reprices. Orders already placed keep the price they were placed at.
pub async fn update(
    conn: &mut AnyConnection,
    id: ProductId,
    name: Option<&str>,
    price: Option<Won>,
    now_ms: i64,
) -> Result<Product, ProductError> {
    sqlx::query_as(&format!(
        "update products set name = coalesce($1, name), price = coalesce($2, price), updated_at = $3
         where id = $4 returning {COLUMNS}"
    ))
    .bind(name)
    .bind(price.map(|p| p.0))
    .bind(now_ms)
    .bind(id.0)
    .fetch_optional(conn)
    .await?
    .ok_or(ProductError::NotFound(id))
}
