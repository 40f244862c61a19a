//! SQL for balances and the ledger.

use sqlx::{Any, Executor, FromRow};

use super::{Balance, BalanceError, LedgerEntry, LedgerKind};
use crate::clock::from_millis;
use crate::http::Paging;
use crate::ids::{LedgerId, OrderId, UserId};
use crate::money::Won;

pub async fn user_exists(
    ex: impl Executor<'_, Database = Any>,
    user: UserId,
) -> Result<bool, sqlx::Error> {
    let row: Option<(i64,)> = sqlx::query_as("select id from users where id = $1")
        .bind(user.0)
        .fetch_optional(ex)
        .await?;
    Ok(row.is_some())
}

pub async fn balance(
    ex: impl Executor<'_, Database = Any>,
    user: UserId,
) -> Result<Balance, BalanceError> {
    let row: Option<(i64,)> = sqlx::query_as("select balance from users where id = $1")
        .bind(user.0)
        .fetch_optional(ex)
        .await?;
    match row {
        Some((b,)) => Ok(Balance {
            user_id: user,
            balance: Won(b),
        }),
        None => Err(BalanceError::UserNotFound(user)),
    }
}

#[derive(FromRow)]
struct LedgerRow {
    id: i64,
    kind: String,
    amount: i64,
    balance_before: i64,
    balance_after: i64,
    order_id: Option<i64>,
    created_at: i64,
}

/// A page of the ledger, newest first (`limit + 1` rows, for the page builder).
pub async fn history(
    ex: impl Executor<'_, Database = Any>,
    user: UserId,
    paging: Paging,
) -> Result<Vec<LedgerEntry>, sqlx::Error> {
    let rows: Vec<LedgerRow> = sqlx::query_as(
        "select id, kind, amount, balance_before, balance_after, order_id, created_at
         from balance_ledger
         where user_id = $1 and id < $2 order by id desc limit $3",
    )
    .bind(user.0)
    .bind(paging.after.unwrap_or(i64::MAX))
    .bind(paging.limit + 1)
    .fetch_all(ex)
    .await?;
    rows.into_iter()
        .map(|r| {
            let kind = LedgerKind::parse(&r.kind).ok_or_else(|| {
                sqlx::Error::Decode(format!("unknown ledger kind `{}`", r.kind).into())
            })?;
            Ok(LedgerEntry {
                id: LedgerId(r.id),
                kind,
                amount: Won(r.amount),
                balance_before: Won(r.balance_before),
                balance_after: Won(r.balance_after),
                order_id: r.order_id.map(OrderId),
                created_at: from_millis(r.created_at),
            })
        })
        .collect()
}
